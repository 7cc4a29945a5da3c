"""Engine semantics as data: each ``scenarios/*.json`` is a blueprint, a payload, optional
peer responses and events, and the expected run (status, node states, side-effect counts).

Every scenario runs through the real entry point (``POST /workflow/execute``) on the embedded
runner against PostgreSQL; the same files are meant to drive every runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import Peer, execute, node_status, wait_for_run

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))


def _logs(client: TestClient, run_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/runs/{run_id}/logs")
    assert response.status_code == 200
    logs: list[dict[str, Any]] = response.json()["logs"]
    return logs


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, client: TestClient, peer: Peer) -> None:
    scenario = json.loads(path.read_text())
    expect = scenario["expect"]
    peer.script.update(scenario.get("peer", {}))
    payload = {**scenario.get("payload", {}), "peer": peer.url}

    run_id = execute(client, scenario["blueprint"], payload)
    for event in scenario.get("events", []):
        wait_for_run(client, run_id, {"waiting", "succeeded", "failed"})
        response = client.post("/events", json=event)
        assert response.status_code == 202, response.text
    run = wait_for_run(client, run_id)

    assert run["status"] == expect["status"], run
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

    logs = _logs(client, run_id)
    for node_id, statuses in expect.get("log_statuses", {}).items():
        assert [row["status"] for row in logs if row["node_id"] == node_id] == statuses
    for node_id, count in expect.get("log_rows", {}).items():
        assert sum(row["node_id"] == node_id for row in logs) == count
    for node in run["nodes"]:
        if node["status"] not in ("pending", "skipped"):
            assert node["finished_at"] >= node["started_at"]
