"""Engine behaviours that need more than a scenario file: concurrency, durable timers,
replay, retry of a failed run, cancellation, idempotent execution, two workers."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.integrations import ToolResources
from blueprint_engine.services import run_service
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import steps as steps_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import open_pool
from blueprint_engine.store.logs import LogRow
from blueprint_engine.store.steps import Lease
from blueprint_engine.workflows.runners import EmbeddedDispatcher
from blueprint_engine.workflows.runners.embedded import EmbeddedRunner
from tests.conftest import make_settings
from tests.support import Peer, execute, node_status, wait_for_run


def _http(node_id: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "action",
        "service": "http",
        "task": "request",
        "params": {"url": "{{ trigger_data.peer }}" + path},
        **extra,
    }


def _chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    all_nodes = [{"id": "start", "type": "trigger"}, *nodes]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(all_nodes)]
    return {"nodes": all_nodes, "edges": edges}


def test_independent_branches_run_concurrently(client: TestClient, peer: Peer) -> None:
    """Both branch requests must be in flight at once: each handler waits for the other at a
    barrier, which breaks (-> HTTP 500, run fails) if the engine ran them one after another."""
    barrier = threading.Barrier(2, timeout=5)

    def meet(_: Any) -> tuple[int, Any]:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return 500, {"error": "the other branch never arrived"}
        return 200, {"ok": True}

    peer.handlers["/left"] = peer.handlers["/right"] = meet
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            _http("left", "/left", retry={"max_attempts": 1}),
            _http("right", "/right", retry={"max_attempts": 1}),
        ],
        "edges": [{"source": "start", "target": "left"}, {"source": "start", "target": "right"}],
    }
    run = wait_for_run(client, execute(client, blueprint, {"peer": peer.url}))
    assert run["status"] == "succeeded", run["error"]


def test_delay_parks_the_run_without_holding_a_worker(
    client: TestClient, settings: Settings
) -> None:
    blueprint = _chain(
        {"id": "pause", "type": "delay", "duration": "1s"}, {"id": "done", "type": "end"}
    )
    run_id = execute(client, blueprint)
    waiting = wait_for_run(client, run_id, {"waiting"})
    assert node_status(waiting)["pause"] == "waiting"
    with psycopg.connect(settings.database_url) as conn:
        owner, wake_at = conn.execute(
            "select lease_owner, wake_at from workflow_runs where id = %s", (run_id,)
        ).fetchone()  # type: ignore[misc]
        timers = conn.execute("select kind from run_waits where run_id = %s", (run_id,)).fetchall()
    assert owner is None and wake_at is not None, "a parked run holds no lease"
    assert timers == [("sleep",)]
    assert wait_for_run(client, run_id)["status"] == "succeeded"


def test_replay_after_a_wait_does_not_repeat_finished_steps(client: TestClient, peer: Peer) -> None:
    """The event resumes the run by replaying it from the start; the HTTP step before the wait
    returns its checkpoint (stable step id) instead of calling the peer again."""
    blueprint = _chain(
        _http("before", "/before"),
        {"id": "wait", "type": "wait_for_event", "event": "test/go", "timeout": "1h"},
        _http("after", "/after"),
    )
    run_id = execute(client, blueprint, {"peer": peer.url})
    wait_for_run(client, run_id, {"waiting"})
    assert client.post("/events", json={"name": "test/go", "data": {}}).status_code == 202
    assert wait_for_run(client, run_id)["status"] == "succeeded"
    assert peer.hits == {"/before": 1, "/after": 1}


def test_failed_run_resumes_from_the_failed_step(client: TestClient, peer: Peer) -> None:
    peer.script["/fails"] = [500]
    blueprint = _chain(_http("ok", "/ok"), _http("fails", "/fails", retry={"max_attempts": 1}))
    run_id = execute(client, blueprint, {"peer": peer.url})
    assert wait_for_run(client, run_id)["status"] == "failed"

    peer.script["/fails"] = [500, 200]
    response = client.post(f"/runs/{run_id}/retry")
    assert response.status_code == 200, response.text
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded"
    assert peer.hits == {"/ok": 1, "/fails": 2}
    again = client.post(f"/runs/{run_id}/retry")
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_not_failed"


def test_cancelled_run_is_not_resumed(client: TestClient, peer: Peer) -> None:
    blueprint = _chain(
        {"id": "wait", "type": "wait_for_event", "event": "test/go", "timeout": "1h"},
        _http("after", "/after"),
    )
    run_id = execute(client, blueprint, {"peer": peer.url})
    wait_for_run(client, run_id, {"waiting"})
    response = client.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    client.post("/events", json={"name": "test/go", "data": {}})
    assert wait_for_run(client, run_id)["status"] == "cancelled"
    assert peer.hits["/after"] == 0
    second = client.post(f"/runs/{run_id}/cancel")
    assert second.status_code == 409 and second.json()["error"]["code"] == "run_finished"


def test_idempotency_key_returns_the_first_run(client: TestClient) -> None:
    blueprint = _chain({"id": "done", "type": "end", "output": 1})
    body = {"blueprint": blueprint, "payload": {}, "idempotency_key": "order-42"}
    first = client.post("/workflow/execute", json=body)
    second = client.post("/workflow/execute", json=body)
    assert first.status_code == 202 and first.json()["created"] is True
    assert second.status_code == 200 and second.json()["created"] is False
    assert first.json()["run_id"] == second.json()["run_id"]


def test_tool_calls_carry_the_step_idempotency_key(client: TestClient, peer: Peer) -> None:
    run_id = execute(client, _chain(_http("call", "/call")), {"peer": peer.url})
    assert wait_for_run(client, run_id)["status"] == "succeeded"
    assert peer.headers["/call"][0]["Idempotency-Key"] == f"{run_id}:call"


def test_two_workers_never_run_the_same_step(settings: Settings, peer: Peer) -> None:
    """Two runners with their own pools share one database: SKIP LOCKED claims and lease-fenced
    step writes mean every step of every run calls the peer exactly once."""
    blueprint = _chain(
        _http("a", "/{{ run.id }}/a"), _http("b", "/{{ run.id }}/b"), _http("c", "/{{ run.id }}/c")
    )
    runs = 30

    async def scenario() -> list[str]:
        pools = [await open_pool(settings.database_url, min_size=1, max_size=8) for _ in range(2)]
        try:
            run_ids = [
                str(
                    (
                        await run_service.start(
                            pools[0],
                            EmbeddedDispatcher(),
                            workflow_id=None,
                            version=None,
                            blueprint=blueprint,
                            payload={"peer": peer.url},
                            idempotency_key=None,
                            owner=LOCAL_USER_ID,
                        )
                    )[0]
                )
                for _ in range(runs)
            ]
            tools = [ToolResources(settings, pool.connection) for pool in pools]
            runners = [
                EmbeddedRunner(pool, settings, tools=resources)
                for pool, resources in zip(pools, tools, strict=True)
            ]
            try:
                await asyncio.gather(*(runner.drain() for runner in runners))
            finally:
                for resources in tools:
                    await resources.aclose()
            return run_ids
        finally:
            for pool in pools:
                await pool.close()

    run_ids = asyncio.run(scenario())
    with psycopg.connect(settings.database_url) as conn:
        statuses = conn.execute(
            "select status, count(*) from workflow_runs group by status"
        ).fetchall()
    assert statuses == [("succeeded", runs)]
    assert len(peer.hits) == 3 * runs
    assert set(peer.hits.values()) == {1}
    assert {path.split("/")[1] for path in peer.hits} == set(run_ids)


def test_shutdown_hands_unfinished_runs_back(database_url: str, peer: Peer) -> None:
    """Stopping the API waits SHUTDOWN_GRACE_SECONDS for steps in flight, then cancels them and
    re-queues the run (no lease left behind), so the next process resumes it at once."""
    release = threading.Event()
    peer.handlers["/slow"] = lambda _: (200, {"released": release.wait(timeout=10)})
    blueprint = _chain(_http("first", "/first"), _http("slow", "/slow"), _http("last", "/last"))
    settings = make_settings(database_url, shutdown_grace_seconds=0.2)
    with TestClient(create_app(settings)) as client:
        run_id = execute(client, blueprint, {"peer": peer.url})
        deadline = time.monotonic() + 10
        while peer.hits["/slow"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select status, lease_owner from workflow_runs where id = %s", (run_id,)
        ).fetchone()
    assert row == ("queued", None)
    release.set()
    with TestClient(create_app(make_settings(database_url))) as client:
        assert wait_for_run(client, run_id)["status"] == "succeeded"
    assert peer.hits == {"/first": 1, "/slow": 2, "/last": 1}


def test_a_batched_step_write_skips_only_the_runs_no_longer_held(settings: Settings) -> None:
    """One statement carries the step writes of several runs (group commit): a write whose
    claim lost its run records nothing and counts no attempt, and the others commit."""
    blueprint = _chain(
        {
            "id": "a",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {}},
        }
    )

    async def scenario() -> tuple[list[Any], UUID]:
        pool = await open_pool(settings.database_url, min_size=1, max_size=2)
        try:
            for _ in range(2):
                await run_service.start(
                    pool,
                    EmbeddedDispatcher(),
                    workflow_id=None,
                    version=None,
                    blueprint=blueprint,
                    payload={},
                    idempotency_key=None,
                    owner=LOCAL_USER_ID,
                )
            async with pool.connection() as conn:
                held, lost = await runs_store.claim(conn, "test-worker", 2, 30)
                now = datetime.now(UTC)
                done = await steps_store.write(
                    conn,
                    [
                        steps_store.Write(
                            run_id,
                            Lease(token, 30),
                            [LogRow.succeeded("start", 1, now, finished=now, output={})],
                            start="a",
                        )
                        for run_id, token in (
                            (held["id"], held["lease_token"]),
                            (lost["id"], uuid4()),  # a stale claim
                        )
                    ],
                )
            return done, held["id"]
        finally:
            await pool.close()

    done, held_id = asyncio.run(scenario())
    assert done == [steps_store.Written(frozenset({"start"}), 1), None]
    with psycopg.connect(settings.database_url) as conn:
        for table in ("step_checkpoints", "workflow_logs", "step_attempts"):
            rows = conn.execute(f"select run_id from {table}").fetchall()
            assert rows == [(held_id,)], table
