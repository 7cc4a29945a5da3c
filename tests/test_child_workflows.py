"""Sub-workflows through the API: calls only to one's own workflows, no cycles, bounded depth,
and a child run that is a run of its own (its own logs, pointing at its parent)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from blueprint_engine.services import run_service
from blueprint_engine.store.accounts import LOCAL_USER_ID
from tests.support import Peer, execute, wait_for_run


def _calling(workflow_id: str, node: str = "call") -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": node, "type": "workflow", "workflow_id": workflow_id, "input": {"n": 1}},
        ],
        "edges": [{"source": "start", "target": node}],
    }


LEAF = {
    "nodes": [
        {"id": "start", "type": "trigger"},
        {"id": "done", "type": "end", "output": {"got": "{{ trigger_data.n }}"}},
    ],
    "edges": [{"source": "start", "target": "done"}],
}


def _save(client: TestClient, blueprint: dict[str, Any], *, activate: bool = True) -> str:
    response = client.post("/workflows", json={"name": "w", "blueprint": blueprint})
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    if activate:
        assert client.post(f"/workflows/{workflow_id}/activate").status_code == 200
    return workflow_id


def test_a_child_run_has_its_own_logs_and_its_output_flows_back(client: TestClient) -> None:
    leaf = _save(client, LEAF)
    run_id = execute(client, _calling(leaf))
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["output"] == {"call": {"got": 1}}
    children = client.get("/runs", params={"workflow_id": leaf}).json()["runs"]
    assert len(children) == 1
    child_logs = client.get(f"/runs/{children[0]['id']}/logs").json()["logs"]
    assert {row["node_id"] for row in child_logs} == {"start", "done"}


def test_a_call_without_input_and_a_null_item_give_the_child_empty_trigger_data(
    client: TestClient,
) -> None:
    """``input`` is optional and a loop item may be null: the child's trigger data is then
    ``{}`` (as an omitted payload is), not a null its row cannot hold (which failed every pass
    until the run ended in ``engine_error``)."""
    leaf = _save(
        client,
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "done", "type": "end", "output": {"got": "{{ trigger_data }}"}},
            ],
            "edges": [{"source": "start", "target": "done"}],
        },
    )
    blueprint = _calling(leaf)
    del blueprint["nodes"][1]["input"]
    blueprint["nodes"].append(
        {"id": "each", "type": "foreach", "items": [None], "workflow": {"workflow_id": leaf}}
    )
    blueprint["edges"].append({"source": "call", "target": "each"})
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "succeeded", run["error"]
    nodes = {node["id"]: node for node in run["nodes"]}
    assert nodes["call"]["output"] == {"got": {}}
    assert nodes["each"]["output"]["results"] == [{"got": {}}]


def test_calling_a_missing_or_inactive_workflow_is_refused_or_fails(client: TestClient) -> None:
    response = client.post(
        "/workflow/execute",
        json={"blueprint": _calling("00000000-0000-0000-0000-00000000beef"), "payload": {}},
    )
    assert response.status_code == 422
    [issue] = response.json()["error"]["details"]
    assert issue["loc"] == ["nodes", 1, "workflow_id"] and "not one of yours" in issue["message"]

    inactive = _save(client, LEAF, activate=False)
    run = wait_for_run(client, execute(client, _calling(inactive)))
    assert run["status"] == "failed"
    assert run["error"]["code"] == "workflow_not_active"


def test_a_call_in_a_loop_body_is_refused_at_its_own_node(client: TestClient) -> None:
    """The issue names the body node that makes the call and its field, not the loop (which
    has no ``workflow`` field when it has a body)."""
    missing = "00000000-0000-0000-0000-00000000beef"
    call = {"id": "call", "type": "workflow", "workflow_id": missing}
    inner = {"id": "inner", "type": "foreach", "items": [1], "body": {"nodes": [call]}}
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "outer",
                "type": "foreach",
                "items": [1],
                "body": {
                    "nodes": [
                        {"id": "ok", "type": "end"},
                        inner,
                    ]
                },
            },
        ],
        "edges": [{"source": "start", "target": "outer"}],
    }
    response = client.post("/workflows", json={"name": "w", "blueprint": blueprint})
    assert response.status_code == 422, response.text
    [issue] = response.json()["error"]["details"]
    assert issue["loc"] == ["nodes", 1, "body", "nodes", 1, "body", "nodes", 0, "workflow_id"]
    assert issue["node_id"] == "call" and "not one of yours" in issue["message"]


def test_workflows_calling_each_other_in_a_cycle_are_refused(client: TestClient) -> None:
    first = _save(client, LEAF)
    second = _save(client, _calling(first))
    response = client.put(f"/workflows/{first}", json={"blueprint": _calling(second)})
    assert response.status_code == 422, response.text
    [issue] = response.json()["error"]["details"]
    assert issue["loc"] == ["nodes", 1, "workflow_id"]
    assert "cycle" in issue["message"] and second in issue["message"]
    calling_itself = client.put(f"/workflows/{second}", json={"blueprint": _calling(second)})
    assert calling_itself.status_code == 422


def test_a_chain_deeper_than_the_limit_fails_at_run_time(client: TestClient) -> None:
    depth = client.app.state.settings.subworkflow_max_depth  # type: ignore[attr-defined]
    target = _save(client, LEAF)
    for _ in range(depth):
        target = _save(client, _calling(target))
    run = wait_for_run(client, execute(client, _calling(target)))
    assert run["status"] == "failed"
    # the deepest parent reports the refusal; each level above reports its child's failure
    assert run["error"]["code"] == "child_failed"
    assert "workflow_depth_exceeded" in str(run["error"])


def test_a_runs_children_are_listed_with_the_step_that_started_them(client: TestClient) -> None:
    """``GET /runs?parent_run_id=`` lists a run's children (a workflow node's and a foreach's
    items over a saved workflow), each naming its parent and step; the child says the same."""
    leaf = _save(client, LEAF)
    blueprint = _calling(leaf)
    blueprint["nodes"].append(
        {
            "id": "each",
            "type": "foreach",
            "items": [{"n": 1}, {"n": 2}],
            "workflow": {"workflow_id": leaf},
        }
    )
    blueprint["edges"].append({"source": "call", "target": "each"})
    run_id = execute(client, blueprint)
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["parent_run_id"] is None and run["parent_step_id"] is None

    response = client.get("/runs", params={"parent_run_id": run_id})
    assert response.status_code == 200, response.text
    children = response.json()["runs"]
    assert sorted(c["parent_step_id"] for c in children) == ["call", "each.0", "each.1"]
    assert {c["parent_run_id"] for c in children} == {run_id}
    assert {c["workflow_id"] for c in children} == {leaf}
    child = client.get(f"/runs/{children[0]['id']}").json()
    assert child["parent_run_id"] == run_id
    assert child["parent_step_id"] == children[0]["parent_step_id"]
    # a run without children, and an unknown run
    assert client.get("/runs", params={"parent_run_id": child["id"]}).json()["runs"] == []
    missing = client.get("/runs", params={"parent_run_id": "00000000-0000-0000-0000-0000000000aa"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_cancelling_a_parent_cancels_its_waiting_child(client: TestClient) -> None:
    slow = _save(
        client,
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "hold", "type": "delay", "duration": "1h"},
            ],
            "edges": [{"source": "start", "target": "hold"}],
        },
    )
    parent = execute(client, _calling(slow))
    wait_for_run(client, parent, {"waiting"})
    children = client.get("/runs", params={"parent_run_id": parent}).json()["runs"]
    assert len(children) == 1
    wait_for_run(client, children[0]["id"], {"waiting"})
    assert client.post(f"/runs/{parent}/cancel").status_code == 200
    assert wait_for_run(client, children[0]["id"])["status"] == "cancelled"
    assert wait_for_run(client, parent)["status"] == "cancelled"


def test_a_sandboxed_run_stays_sandboxed_on_any_worker_and_in_its_children(
    client: TestClient, peer: Peer
) -> None:
    """``wf run --sandbox`` queues its run with the flag: the API's own worker, which is not in
    sandbox mode, executes it (and the child it starts) without calling out."""
    hit = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "call",
                "type": "action",
                "service": "http",
                "task": "request",
                "params": {"url": f"{peer.url}/hit", "method": "POST"},
            },
        ],
        "edges": [{"source": "start", "target": "call"}],
    }
    child = _save(client, hit)
    parent = {
        "nodes": [*hit["nodes"], {"id": "sub", "type": "workflow", "workflow_id": child}],
        "edges": [*hit["edges"], {"source": "call", "target": "sub"}],
    }
    app: Any = client.app

    async def start() -> UUID:
        run_id, _ = await run_service.start(
            app.state.pool,
            app.state.dispatcher,
            workflow_id=None,
            version=None,
            blueprint=parent,
            payload={},
            idempotency_key=None,
            owner=LOCAL_USER_ID,
            sandbox=True,
        )
        return run_id

    run_id = client.portal.call(start)  # type: ignore[attr-defined]
    run = wait_for_run(client, str(run_id))
    assert run["status"] == "succeeded", run["error"]
    assert run["sandbox"] is True
    assert run["output"]["sub"]["call"]["sandbox"] is True
    assert peer.hits["/hit"] == 0


def test_retrying_a_parent_retries_its_failed_child_from_its_failed_step(
    client: TestClient, peer: Peer
) -> None:
    peer.script["/flaky"] = [400, 200]
    child = _save(
        client,
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "first",
                    "type": "action",
                    "service": "http",
                    "task": "request",
                    "params": {"url": f"{peer.url}/first", "method": "POST"},
                },
                {
                    "id": "flaky",
                    "type": "action",
                    "service": "http",
                    "task": "request",
                    "retry": {"max_attempts": 1},
                    "params": {"url": f"{peer.url}/flaky", "method": "POST"},
                },
            ],
            "edges": [
                {"source": "start", "target": "first"},
                {"source": "first", "target": "flaky"},
            ],
        },
    )
    parent = wait_for_run(client, execute(client, _calling(child)))
    assert parent["status"] == "failed" and parent["error"]["code"] == "child_failed"

    assert client.post(f"/runs/{parent['id']}/retry").status_code == 200
    parent = wait_for_run(client, parent["id"])
    assert parent["status"] == "succeeded", parent["error"]
    [run] = client.get("/runs", params={"parent_run_id": parent["id"]}).json()["runs"]
    assert run["status"] == "succeeded"
    assert (peer.hits["/first"], peer.hits["/flaky"]) == (1, 2), "only the failed step again"


def test_a_child_that_outlives_its_timeout_is_cancelled_and_a_retry_starts_anew(
    client: TestClient,
) -> None:
    slow = _save(
        client,
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "hold", "type": "delay", "duration": "1h"},
            ],
            "edges": [{"source": "start", "target": "hold"}],
        },
    )
    blueprint = _calling(slow)
    blueprint["nodes"][1]["timeout"] = "1s"
    parent = wait_for_run(client, execute(client, blueprint))
    assert parent["error"]["code"] == "child_timed_out"
    [first] = client.get("/runs", params={"parent_run_id": parent["id"]}).json()["runs"]
    assert first["status"] == "cancelled", "nobody waits for it any more"

    assert client.post(f"/runs/{parent['id']}/retry").status_code == 200
    assert wait_for_run(client, parent["id"])["error"]["code"] == "child_timed_out"
    runs = client.get("/runs", params={"parent_run_id": parent["id"]}).json()["runs"]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"cancelled"}
