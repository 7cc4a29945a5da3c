"""Unsaved blueprints (``POST /workflow/execute`` with a blueprint) are stored once per owner
and content, inside the transaction that creates the run: no workflow without a run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.support import execute, wait_for_run

BLUEPRINT = {
    "name": "Echo",
    "nodes": [
        {"id": "start", "type": "trigger"},
        {"id": "done", "type": "end", "output": {"name": "{{ trigger_data.name }}"}},
    ],
    "edges": [{"source": "start", "target": "done"}],
}
PAYLOAD = {"name": "Asha"}


def _adhoc_workflows(database_url: str) -> list[Any]:
    """Ids of the ad-hoc workflows stored (``GET /workflows`` does not list them)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select id from workflows where origin = 'adhoc' order by id")
        return [str(row[0]) for row in rows.fetchall()]


def _run_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select count(*) from workflow_runs").fetchone()
        assert row is not None
        return int(row[0])


def _workflow_of(client: TestClient, run_id: str) -> str:
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    workflow_id: str = run["workflow_id"]
    return workflow_id


def test_concurrent_executes_with_one_key_store_one_workflow(
    client: TestClient, database_url: str
) -> None:
    barrier = threading.Barrier(20)

    def execute(_: int) -> Any:
        barrier.wait()
        return client.post(
            "/workflow/execute",
            json={"blueprint": BLUEPRINT, "payload": PAYLOAD, "idempotency_key": "k-1"},
        )

    with ThreadPoolExecutor(max_workers=20) as threads:
        responses = list(threads.map(execute, range(20)))
    assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
    assert sorted(r.json()["created"] for r in responses) == [False] * 19 + [True]
    assert len({r.json()["run_id"] for r in responses}) == 1
    assert _run_count(database_url) == 1
    [workflow_id] = _adhoc_workflows(database_url)
    assert _workflow_of(client, responses[0].json()["run_id"]) == workflow_id


def test_concurrent_executes_of_one_key_with_other_blueprints_store_only_the_runs(
    client: TestClient, database_url: str
) -> None:
    barrier = threading.Barrier(10)

    def execute(i: int) -> Any:
        barrier.wait()
        blueprint = {**BLUEPRINT, "name": f"Echo {i}"}
        body = {"blueprint": blueprint, "payload": PAYLOAD, "idempotency_key": "k-2"}
        return client.post("/workflow/execute", json=body)

    with ThreadPoolExecutor(max_workers=10) as threads:
        responses = list(threads.map(execute, range(10)))
    assert len({r.json()["run_id"] for r in responses}) == 1, [r.text for r in responses]
    [workflow_id] = _adhoc_workflows(database_url)
    assert _workflow_of(client, responses[0].json()["run_id"]) == workflow_id


def test_the_same_unsaved_blueprint_shares_one_workflow(
    client: TestClient, database_url: str
) -> None:
    first = execute(client, BLUEPRINT, PAYLOAD)
    # the same content with its keys in another order is the same blueprint
    reordered = {key: BLUEPRINT[key] for key in reversed(list(BLUEPRINT))}
    second = execute(client, reordered, PAYLOAD)
    assert first != second
    shared = _workflow_of(client, first)
    assert _workflow_of(client, second) == shared
    assert _adhoc_workflows(database_url) == [shared]
    runs = client.get(f"/workflows/{shared}/runs").json()["runs"]
    assert len(runs) == 2
    version = client.get(f"/workflows/{shared}").json()
    assert version["latest_version"] == 1 and version["origin"] == "adhoc"

    other = {**BLUEPRINT, "name": "Echo again"}
    another = _workflow_of(client, execute(client, other, PAYLOAD))
    assert another != shared
    assert sorted(_adhoc_workflows(database_url)) == sorted([shared, another])
    listed = client.get("/workflows").json()["workflows"]
    assert listed == [], "ad-hoc workflows are not listed"


def test_an_archived_copy_is_not_reused(client: TestClient, database_url: str) -> None:
    archived = _workflow_of(client, execute(client, BLUEPRINT, PAYLOAD))
    assert client.delete(f"/workflows/{archived}").status_code == 204
    fresh = _workflow_of(client, execute(client, BLUEPRINT, PAYLOAD))
    assert fresh != archived
    assert sorted(_adhoc_workflows(database_url)) == sorted([archived, fresh])
