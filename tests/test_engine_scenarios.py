"""Engine semantics as data, on both runners.

Each ``scenarios/*.json`` is a blueprint, a payload, optional peer responses and events, and the
expected run (status, node states, side-effect counts). The run is created through
``POST /workflow/execute`` — or, with ``"start": "hook"``, saved, activated and started through
its hook, ``POST /hooks/{id}/{token}``, with the payload as the body (``"hook": {"form": true,
"query", "headers"}`` say how it is sent; a delivery with an ``Idempotency-Key`` is sent twice
and must start one run) — and checked through ``GET /runs/{id}`` against PostgreSQL.

- embedded: the API's embedded runner executes it; events are posted to ``POST /events``.
- inngest: the API (ENGINE=inngest) queues it and sends ``workflow/run_requested``; the run is
  executed over HTTP through ``/api/inngest`` by :class:`tests.support.InngestServer`, which
  plays the Inngest executor request by request (planned steps targeted one per request, each
  with its own attempt counter; sleeps and waits on a virtual clock; discovery after each step
  in the parallel mode the runner asks for). When the run waits, the scenario's events are
  posted to ``POST /events``; a wait the API resolves gets that ``workflow/wait_resolved``,
  the others time out.
- inngest-sdk-harness: the same run executed by the SDK's own harness,
  ``inngest.experimental.mocked.trigger`` (an independent reading of the protocol, marked not
  stable). It differs from a server, and the scenarios here are the ones it can still judge:
  its attempt counter is one per run and never reset (a step after a retried step starts at a
  later attempt: ``test_inngest.test_the_sdk_harness_never_resets_the_attempt`` pins this),
  every sleep ends at once, and it runs one planned step per request, ignoring the parallel
  mode. It cannot pause for a live event, so each wait is stubbed with the first scenario
  event whose ``match`` holds (evaluated by the same expression code), else ``mocked.Timeout``;
  nor run a child function, so scenarios with other ``workflows`` are skipped there.

A scenario's ``workflows`` (name -> blueprint) are saved and activated first; the string
``"$workflow:<name>"`` anywhere in it stands for that workflow's id (``workflow`` nodes). The
test Inngest server plays ``InvokeFunction`` by running the child function to its end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import inngest
import pytest
from fastapi.testclient import TestClient
from inngest.experimental import mocked

from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.runners.inngest import RUN_REQUESTED, WAIT_RESOLVED
from tests.conftest import InngestApp
from tests.support import TIMED_OUT, InngestServer, Peer, execute, node_status, wait_for_run

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.json"))
RUNNERS = ["embedded", "inngest", "inngest-sdk-harness"]


def _start(client: TestClient, scenario: dict[str, Any], payload: Any) -> str:
    """Queue the scenario's run as its ``start`` says: ``execute`` (default) or ``hook``."""
    if scenario.get("start", "execute") == "execute":
        return execute(client, scenario["blueprint"], payload)
    saved = client.post("/workflows", json={"blueprint": scenario["blueprint"]})
    assert saved.status_code == 201, saved.text
    workflow = saved.json()
    assert client.post(f"/workflows/{workflow['id']}/activate").status_code == 200
    how = scenario.get("hook", {})
    send: dict[str, Any] = {"data": payload} if how.get("form") else {"json": payload}
    headers = how.get("headers", {})

    def deliver() -> Any:
        answer = client.post(
            workflow["hook"]["path"], params=how.get("query"), headers=headers, **send
        )
        assert answer.status_code == 202, answer.text
        return answer.json()

    first = deliver()
    if "Idempotency-Key" in headers:
        again = deliver()
        assert (again["run_id"], again["created"]) == (first["run_id"], False)
    run_id: str = first["run_id"]
    return run_id


def _run_embedded(client: TestClient, scenario: dict[str, Any], payload: Any) -> str:
    run_id = _start(client, scenario, payload)
    for event in scenario.get("events", []):
        wait_for_run(client, run_id, {"waiting", "succeeded", "failed"})
        response = client.post("/events", json=event)
        assert response.status_code == 202, response.text
    return run_id


def _trigger_data(client: TestClient, run_id: str) -> Any:
    run = client.get(f"/runs/{run_id}")
    assert run.status_code == 200, run.text
    return run.json()["trigger_data"]


def _wait_stubs(scenario: dict[str, Any], trigger_data: Any, run_id: str) -> dict[str, object]:
    stubs: dict[str, object] = {}
    for node in scenario["blueprint"]["nodes"]:
        if node["type"] != "wait_for_event":
            continue
        stubs[node["id"]] = mocked.Timeout
        for i, event in enumerate(scenario.get("events", [])):
            candidate = {"id": f"evt-{i}", "name": event["name"], "data": event["data"]}
            context = {"event": candidate, "trigger_data": trigger_data, "steps": {}, "run": {}}
            if event["name"] == node["event"] and (
                not node.get("match") or expressions.evaluate(node["match"], context)
            ):
                stubs[node["id"]] = {
                    "name": WAIT_RESOLVED,
                    "data": {"run_id": run_id, "step_id": node["id"], "event": candidate},
                }
                break
    return stubs


def _queue_on_inngest(app: InngestApp, scenario: dict[str, Any], payload: Any) -> tuple[str, Any]:
    run_id = _start(app.client, scenario, payload)
    [requested] = [e for e in app.events(RUN_REQUESTED) if e["data"]["run_id"] == run_id]
    assert set(requested["data"]) == {"run_id", "workflow_id", "version", "user_id", "dispatch"}
    return run_id, requested


def _run_inngest(app: InngestApp, scenario: dict[str, Any], payload: Any) -> str:
    run_id, requested = _queue_on_inngest(app, scenario, payload)
    retries = app.client.app.state.inngest.settings.inngest_retries  # type: ignore[attr-defined]
    server = InngestServer(app.client, requested, max_attempts=retries + 1)
    posted = False

    def on_wait(op: dict[str, Any]) -> Any:
        nonlocal posted
        if not posted:  # like the embedded run: every event once, when the run first waits
            wait_for_run(app.client, run_id, {"waiting"})
            for event in scenario.get("events", []):
                response = app.client.post("/events", json=event)
                assert response.status_code == 202, response.text
            posted = True
        mine = (run_id, op["displayName"])
        for resolved in app.events(WAIT_RESOLVED):
            if (resolved["data"]["run_id"], resolved["data"]["step_id"]) == mine:
                return resolved
        return TIMED_OUT

    server.drive(on_wait=on_wait)
    return run_id


def _run_inngest_sdk_harness(app: InngestApp, scenario: dict[str, Any], payload: Any) -> str:
    run_id, requested = _queue_on_inngest(app, scenario, payload)
    mocked.trigger(
        app.function,
        inngest.Event(name=RUN_REQUESTED, data=requested["data"], id=requested["id"]),
        mocked.Inngest(app_id="test"),
        # the run's own trigger data: a hook's wraps the payload ({"body", "headers", ...})
        step_stubs=_wait_stubs(scenario, _trigger_data(app.client, run_id), run_id),
    )
    return run_id


def _save_workflows(client: TestClient, scenario: dict[str, Any]) -> dict[str, Any]:
    """Save and activate the scenario's other ``workflows`` (name -> blueprint); return the
    scenario with each ``"$workflow:<name>"`` string replaced by that workflow's id."""
    ids: dict[str, str] = {}
    for name, blueprint in scenario.get("workflows", {}).items():
        response = client.post("/workflows", json={"name": name, "blueprint": blueprint})
        assert response.status_code == 201, response.text
        ids[f"$workflow:{name}"] = workflow_id = response.json()["id"]
        response = client.post(f"/workflows/{workflow_id}/activate")
        assert response.status_code == 200, response.text

    def swap(value: Any) -> Any:
        if isinstance(value, str):
            return ids.get(value, value)
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [swap(item) for item in value]
        return value

    swapped: dict[str, Any] = swap(scenario)
    return swapped


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, runner: str, peer: Peer, request: pytest.FixtureRequest) -> None:
    scenario = json.loads(path.read_text())
    if runner == "inngest-sdk-harness" and "workflows" in scenario:
        pytest.skip("the SDK harness runs one function: it cannot play a child's invoke")
    expect = scenario["expect"]
    peer.script.update(scenario.get("peer", {}))
    payload = {**scenario.get("payload", {}), "peer": peer.url}

    if runner == "embedded":
        client: TestClient = request.getfixturevalue("client")
        scenario = _save_workflows(client, scenario)
        run_id = _run_embedded(client, scenario, payload)
    else:
        app: InngestApp = request.getfixturevalue("inngest_app")
        client = app.client
        scenario = _save_workflows(client, scenario)
        drive = _run_inngest if runner == "inngest" else _run_inngest_sdk_harness
        run_id = drive(app, scenario, payload)
    run = wait_for_run(client, run_id)

    assert run["status"] == expect["status"], (run["error"], run["nodes"])
    assert run["engine"] == runner.removesuffix("-sdk-harness")
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
