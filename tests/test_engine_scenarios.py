"""Engine semantics as data, on both runners.

Each ``scenarios/*.json`` is a blueprint, a payload, optional peer responses and events, and the
expected run (status, node states, side-effect counts). The run is created through
``POST /workflow/execute`` and checked through ``GET /runs/{id}`` against PostgreSQL.

- embedded: the API's embedded runner executes it; events are posted to ``POST /events``.
- inngest: the API (ENGINE=inngest) queues it and sends ``workflow/run_requested``; the run is
  executed by the Inngest SDK's own harness, ``inngest.experimental.mocked.trigger``. That
  harness cannot pause for a live event, so each wait is stubbed with the first scenario event
  whose ``match`` holds (evaluated by the same expression code), else ``mocked.Timeout``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import inngest
import pytest
from fastapi.testclient import TestClient
from inngest.experimental import mocked

from backend.app.workflows import expressions
from backend.app.workflows.runners.inngest import RUN_REQUESTED, WAIT_RESOLVED
from tests.conftest import InngestApp
from tests.support import Peer, execute, node_status, wait_for_run

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))
RUNNERS = ["embedded", "inngest"]


def _run_embedded(client: TestClient, scenario: dict[str, Any], payload: Any) -> str:
    run_id = execute(client, scenario["blueprint"], payload)
    for event in scenario.get("events", []):
        wait_for_run(client, run_id, {"waiting", "succeeded", "failed"})
        response = client.post("/events", json=event)
        assert response.status_code == 202, response.text
    return run_id


def _wait_stubs(scenario: dict[str, Any], payload: Any, run_id: str) -> dict[str, object]:
    stubs: dict[str, object] = {}
    for node in scenario["blueprint"]["nodes"]:
        if node["type"] != "wait_for_event":
            continue
        stubs[node["id"]] = mocked.Timeout
        for i, event in enumerate(scenario.get("events", [])):
            candidate = {"id": f"evt-{i}", "name": event["name"], "data": event["data"]}
            context = {"event": candidate, "trigger_data": payload, "steps": {}, "run": {}}
            if event["name"] == node["event"] and (
                not node.get("match") or expressions.evaluate(node["match"], context)
            ):
                stubs[node["id"]] = {
                    "name": WAIT_RESOLVED,
                    "data": {"run_id": run_id, "step_id": node["id"], "event": candidate},
                }
                break
    return stubs


def _run_inngest(app: InngestApp, scenario: dict[str, Any], payload: Any) -> str:
    run_id = execute(app.client, scenario["blueprint"], payload)
    [requested] = [e for e in app.events(RUN_REQUESTED) if e["data"]["run_id"] == run_id]
    assert set(requested["data"]) == {"run_id", "workflow_id", "version", "user_id", "dispatch"}
    mocked.trigger(
        app.function,
        inngest.Event(name=RUN_REQUESTED, data=requested["data"], id=requested["id"]),
        mocked.Inngest(app_id="test"),
        step_stubs=_wait_stubs(scenario, payload, run_id),
    )
    return run_id


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, runner: str, peer: Peer, request: pytest.FixtureRequest) -> None:
    scenario = json.loads(path.read_text())
    expect = scenario["expect"]
    peer.script.update(scenario.get("peer", {}))
    payload = {**scenario.get("payload", {}), "peer": peer.url}

    if runner == "embedded":
        client: TestClient = request.getfixturevalue("client")
        run_id = _run_embedded(client, scenario, payload)
    else:
        app: InngestApp = request.getfixturevalue("inngest_app")
        client = app.client
        run_id = _run_inngest(app, scenario, payload)
    run = wait_for_run(client, run_id)

    assert run["status"] == expect["status"], run
    assert run["engine"] == runner
    states = node_status(run)
    for node_id, status in expect.get("nodes", {}).items():
        assert states[node_id] == status, (node_id, run)
    if "output" in expect:
        assert run["output"] == expect["output"]
    for key, value in expect.get("error", {}).items():
        assert run["error"][key] == value, run["error"]
    for route, count in expect.get("hits", {}).items():
        assert peer.hits[route] == count, (route, dict(peer.hits))
    nodes = {node["id"]: node for node in run["nodes"]}
    for node_id, attempts in expect.get("attempts", {}).items():
        assert nodes[node_id]["attempt"] == attempts, nodes[node_id]

    logs = client.get(f"/runs/{run_id}/logs").json()["logs"]
    for node_id, statuses in expect.get("log_statuses", {}).items():
        assert [row["status"] for row in logs if row["node_id"] == node_id] == statuses
    for node_id, count in expect.get("log_rows", {}).items():
        assert sum(row["node_id"] == node_id for row in logs) == count
    for node in run["nodes"]:
        if node["status"] not in ("pending", "skipped"):
            assert node["finished_at"] >= node["started_at"]
