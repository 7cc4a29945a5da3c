"""Live progress over server-sent events: one LISTEN per process fanned out to every watcher,
replay then live with no gap and no duplicate, resume by Last-Event-ID or ?last_id=, streams
of a workflow's runs, slow watchers dropped with a retry hint."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.services.progress_hub import DROPPED_FRAME, ProgressHub, SessionTopic
from blueprint_engine.store import logs as logs_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import open_pool
from tests.conftest import make_settings
from tests.support import Reader, execute, read_events

ROOT = Path(__file__).resolve().parents[1]

BLUEPRINT = {
    "nodes": [
        {"id": "start", "type": "trigger"},
        {"id": "pause", "type": "delay", "duration": "300ms"},
        {
            "id": "shape",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {"ok": True}},
        },
    ],
    "edges": [{"source": "start", "target": "pause"}, {"source": "pause", "target": "shape"}],
}


def chain(delays: int, duration: str = "50ms") -> dict[str, Any]:
    """trigger -> ``delays`` delays -> a transform step: 2 rows a delay, 1 each for the rest."""
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "trigger"}]
    nodes += [{"id": f"d{i}", "type": "delay", "duration": duration} for i in range(delays)]
    nodes.append(
        {
            "id": "shape",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {"ok": True}},
        }
    )
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": nodes, "edges": edges}


def logs_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(e["data"]) for e in events if e.get("event") == "log"]


def statuses_of(events: list[dict[str, Any]]) -> list[str]:
    return [json.loads(e["data"])["status"] for e in events if e.get("event") == "run"]


def table_log_ids(client: TestClient, run_id: str) -> list[int]:
    logs = client.get(f"/runs/{run_id}/logs", params={"limit": 1000}).json()["logs"]
    return [row["id"] for row in logs]


def test_stream_shows_every_step_then_ends_and_resumes(client: TestClient) -> None:
    run_id = execute(client, BLUEPRINT)
    events = read_events(client, f"/runs/{run_id}/stream")
    logs = logs_of(events)
    assert [(row["node_id"], row["status"]) for row in logs] == [
        ("start", "succeeded"),
        ("pause", "waiting"),
        ("pause", "succeeded"),
        ("shape", "succeeded"),
    ]
    assert [int(e["id"]) for e in events if e["event"] == "log"] == [row["id"] for row in logs]
    assert statuses_of(events)[-1] == "succeeded"

    resumed = read_events(client, f"/runs/{run_id}/stream", **{"Last-Event-ID": str(logs[1]["id"])})
    assert [row["node_id"] for row in logs_of(resumed)] == ["pause", "shape"]
    by_query = read_events(client, f"/runs/{run_id}/stream?last_id={logs[2]['id']}")
    assert [row["node_id"] for row in logs_of(by_query)] == ["shape"]


def test_stream_of_unknown_run_is_404(client: TestClient) -> None:
    for kind in ("runs", "workflows", "sessions"):
        response = client.get(f"/{kind}/{uuid.uuid4()}/stream")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_bad_resume_cursor_is_a_clear_400_or_422(client: TestClient) -> None:
    """Every stream, with a cursor that is not one: a 400 or 422 naming it, never a 500 (the
    API fuzzing leaves the endless streams out)."""
    run_id = execute(client, BLUEPRINT)
    workflow_id = client.get(f"/runs/{run_id}").json()["workflow_id"]
    for url in (f"/runs/{run_id}/stream", f"/workflows/{workflow_id}/stream", "/runs/stream"):
        for value in ("abc", "-1", "1e3", "99999999999999999999"):
            header = client.get(url, headers={"Last-Event-ID": value})
            assert header.status_code == 400, (url, value, header.text)
            assert header.json()["error"]["code"] == "invalid_header"
            query = client.get(url, params={"last_id": value})
            assert query.status_code == 422, (url, value, query.text)
            assert query.json()["error"]["details"][0]["loc"] == ["query", "last_id"]


def test_watchers_see_every_row_once_in_order_live_and_across_a_resume(
    client: TestClient,
) -> None:
    run_id = execute(client, chain(6))
    watchers = [Reader(client, f"/runs/{run_id}/stream") for _ in range(8)]
    # One client goes away after three rows and comes back with the last id it saw.
    early = Reader(client, f"/runs/{run_id}/stream", stop=lambda ev: len(logs_of(ev)) >= 3)
    for reader in [*watchers, early]:
        reader.start()
    first_part = logs_of(early.finish())
    resumed = Reader(
        client, f"/runs/{run_id}/stream", **{"Last-Event-ID": str(first_part[-1]["id"])}
    )
    resumed.start()
    rest = resumed.finish()

    expected = table_log_ids(client, run_id)
    assert len(expected) == 1 + 2 * 6 + 1
    for reader in watchers:
        events = reader.finish()
        assert [row["id"] for row in logs_of(events)] == expected
        assert statuses_of(events)[-1] == "succeeded"
    assert [row["id"] for row in first_part + logs_of(rest)] == expected
    assert statuses_of(rest)[-1] == "succeeded"


def test_watchers_share_one_read_per_change_instead_of_polling(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each watcher reads the table once (its replay); live rows are read once for all."""
    calls = 0
    real_logs = logs_store.page

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real_logs(*args, **kwargs)

    monkeypatch.setattr(logs_store, "page", counted)
    run_id = execute(client, chain(5, "150ms"))
    readers = [Reader(client, f"/runs/{run_id}/stream") for _ in range(20)]
    for reader in readers:
        reader.start()
    for reader in readers:
        assert statuses_of(reader.finish())[-1] == "succeeded"
    rows = len(table_log_ids(client, run_id))
    # Polling every 250 ms for the ~1 s run would be about 20 x 5 reads.
    assert calls <= len(readers) + rows + 2, (calls, rows)


@pytest.fixture
def api_without_runner(database_url: str) -> Any:
    settings = make_settings(database_url, run_worker=False, run_scheduler=False)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_a_run_executed_by_another_process_is_seen_live(
    api_without_runner: tuple[TestClient, Settings],
) -> None:
    client, settings = api_without_runner
    run_id = execute(client, chain(3))
    reader = Reader(client, f"/runs/{run_id}/stream")
    reader.start()
    deadline = time.monotonic() + 10
    while statuses_of(reader.events) != ["queued"]:
        assert time.monotonic() < deadline, "the stream did not start"
        time.sleep(0.02)
    assert logs_of(reader.events) == []  # nothing has run: all that follows arrives live

    worker = subprocess.Popen(
        [sys.executable, "-m", "blueprint_engine.cli", "worker"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": settings.database_url, "WORKER_POLL_SECONDS": "0.05"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        events = reader.finish()
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert [row["id"] for row in logs_of(events)] == table_log_ids(client, run_id)
    assert statuses_of(events)[0] == "queued" and statuses_of(events)[-1] == "succeeded"


def test_workflow_stream_shows_its_runs_as_they_start_and_finish(client: TestClient) -> None:
    created = client.post("/workflows", json={"blueprint": BLUEPRINT, "name": "Watched"})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    def finished(runs: set[str]) -> Callable[[list[dict[str, Any]]], bool]:
        def done(events: list[dict[str, Any]]) -> bool:
            final = {json.loads(e["data"])["id"]: json.loads(e["data"])["status"] for e in events}
            return len(runs) == 2 and all(final.get(run) == "succeeded" for run in runs)

        return done

    run_ids: set[str] = set()
    reader = Reader(client, f"/workflows/{workflow_id}/stream?last_id=0", stop=finished(run_ids))
    reader.start()
    for _ in range(2):
        started = client.post("/workflow/execute", json={"workflow_id": workflow_id})
        run_ids.add(started.json()["run_id"])
    events = reader.finish()
    seen = [json.loads(e["data"]) for e in events]
    assert {row["id"] for row in seen} == run_ids
    ids = [int(e["id"]) for e in events]
    # Each change once. Events come in commit order: two runs' changes committed the other way
    # round from the order their change_seq was drawn arrive with ids out of numeric order.
    assert len(set(ids)) == len(ids)
    for run in run_ids:
        statuses = [row["status"] for row in seen if row["id"] == run]
        assert statuses[-1] == "succeeded"

    # Resuming from before the earliest change seen: every run that changed since, once, as
    # it is now.
    replay = Reader(
        client,
        f"/workflows/{workflow_id}/stream",
        stop=lambda ev: len(ev) >= 2,
        **{"Last-Event-ID": str(min(ids) - 1)},
    )
    replay.start()
    again = [json.loads(e["data"]) for e in replay.finish()]
    assert sorted(row["id"] for row in again) == sorted(run_ids)
    assert {row["status"] for row in again} == {"succeeded"}


def test_a_slow_watcher_is_dropped_with_a_retry_hint(database_url: str) -> None:
    """A watcher that falls ``buffer`` events behind gets a ``retry:`` frame and its stream
    ends, while the hub carries on (and forgets it)."""

    async def scenario() -> None:
        pool = await open_pool(database_url, min_size=1, max_size=4, acquire_timeout=5)
        hub = ProgressHub(pool, database_url, buffer=3)
        await hub.start()
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "insert into sessions (owner_id, channel, user_ref) values (%s, 'voice', %s)"
                    " returning id",
                    (LOCAL_USER_ID, f"slow-{uuid.uuid4()}"),
                )
                row = await cur.fetchone()
                assert row is not None
            session_id = row["id"]
            stream = hub.stream(SessionTopic(session_id), 0)
            first = asyncio.ensure_future(anext(stream))
            await asyncio.sleep(0.2)  # subscribed, nothing to replay
            assert hub.watchers == 1

            async def say(count: int) -> None:
                async with pool.connection() as conn:
                    for n in range(count):
                        await conn.execute(
                            "insert into session_messages (owner_id, session_id, direction, text)"
                            " values (%s, %s, 'in', %s)",
                            (LOCAL_USER_ID, session_id, f"message {n}"),
                        )

            await say(1)
            frame = await asyncio.wait_for(first, 5)
            assert b"event: message" in frame and b"message 0" in frame
            await say(10)  # not read: the watcher falls behind
            await asyncio.sleep(0.5)
            assert await asyncio.wait_for(anext(stream), 5) == DROPPED_FRAME
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
            assert hub.watchers == 0
        finally:
            await hub.stop()
            await pool.close()

    asyncio.run(scenario())


def test_database_announcements_reach_a_hub_in_commit_order(database_url: str) -> None:
    """The triggers: a message's insert and each update are announced, in commit order."""
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("listen workflow_progress")
        with psycopg.connect(database_url, autocommit=True) as conn:
            session_id = conn.execute(
                "insert into sessions (owner_id, channel, user_ref) values (%s, 'voice', %s)"
                " returning id",
                (LOCAL_USER_ID, f"order-{uuid.uuid4()}"),
            ).fetchone()[0]  # type: ignore[index]
            message_id = conn.execute(
                "insert into session_messages (owner_id, session_id, direction)"
                " values (%s, %s, 'out') returning id",
                (LOCAL_USER_ID, session_id),
            ).fetchone()[0]  # type: ignore[index]
            conn.execute(
                "update session_messages set text = 'hi', delivery = 'inline' where id = %s",
                (message_id,),
            )
        notices = [json.loads(n.payload) for n in listener.notifies(timeout=1, stop_after=2)]
    assert [n["message"] for n in notices] == [message_id, message_id]
    assert notices[0]["session"] == str(session_id)
    assert notices[0]["seq"] < notices[1]["seq"]
