"""foreach through the API: validation of bodies (every problem at its path), run-time limits
and bad items, a dry run that shows each item's steps, and a body that waits on a timer."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.store.logs import node_of
from tests.conftest import make_settings
from tests.support import execute, wait_for_run


def _loop(items: Any, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "each", "type": "foreach", "items": items, "body": body, **extra},
        ],
        "edges": [{"source": "start", "target": "each"}],
    }


BUILD = {
    "nodes": [
        {
            "id": "shape",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {"value": "{{ item }}", "at": "{{ index }}"}},
        }
    ]
}


def _issues(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    issues: list[dict[str, Any]] = response.json()["error"]["details"]
    return issues


@pytest.mark.parametrize(
    ("mutate", "loc", "text"),
    [
        (
            lambda bp: bp["nodes"][1]["body"]["nodes"][0].update(service="nope"),
            ["nodes", 1, "body", "nodes", 0, "service"],
            "unknown service 'nope'",
        ),
        (
            lambda bp: bp["nodes"][1]["body"]["nodes"].append({"id": "t", "type": "trigger"}),
            ["nodes", 1, "body", "nodes", 1],
            "a loop body has no trigger",
        ),
        (
            lambda bp: bp["nodes"][1]["body"]["nodes"][0].update(id="start"),
            ["nodes", 1, "body", "nodes", 0, "id"],
            "duplicate node id 'start'",
        ),
        (
            lambda bp: bp["nodes"][1]["body"]["nodes"][0]["params"]["fields"].update(
                x="{{ steps.each.output }}"
            ),
            ["nodes", 1, "body", "nodes", 0, "params", "fields", "x"],
            "does not run before",
        ),
        (
            lambda bp: bp["nodes"][1]["body"]["nodes"][0]["params"]["fields"].update(
                x="{{ itemz }}"
            ),
            ["nodes", 1, "body", "nodes", 0, "params", "fields", "x"],
            "itemz",
        ),
        (
            lambda bp: bp["nodes"][1].update(items="not a template"),
            ["nodes", 1, "items"],
            "items is a template",
        ),
        (
            lambda bp: bp["nodes"][1].update(concurrency=0),
            ["nodes", 1, "concurrency"],
            "greater than or equal to 1",
        ),
        (
            lambda bp: bp["nodes"][1].update(
                workflow={"workflow_id": "00000000-0000-0000-0000-000000000001"}
            ),
            ["nodes", 1],
            "either a body or a workflow",
        ),
        (
            lambda bp: (
                bp["nodes"][1]["body"]
                .setdefault("edges", [])
                .append({"source": "shape", "target": "x"})
            ),
            ["nodes", 1, "body", "edges", 0, "target"],
            "is not a node",
        ),
    ],
    ids=[
        "unknown_service",
        "trigger_in_body",
        "duplicate_id",
        "ref_to_loop_itself",
        "unknown_name",
        "items_literal_text",
        "concurrency_zero",
        "body_and_workflow",
        "edge_to_nowhere",
    ],
)
def test_a_bad_loop_is_refused_at_its_path(
    client: TestClient, mutate: Any, loc: list[Any], text: str
) -> None:
    blueprint = _loop("{{ trigger_data.items }}", copy.deepcopy(BUILD))
    mutate(blueprint)
    issues = _issues(client.post("/workflows", json={"blueprint": blueprint}))
    assert any(i["loc"] == loc and text in i["message"] for i in issues), issues


def test_loops_nest_at_most_three_deep(client: TestClient) -> None:
    body: dict[str, Any] = copy.deepcopy(BUILD)
    for depth in range(4):
        body = {"nodes": [{"id": f"loop{depth}", "type": "foreach", "items": [1], "body": body}]}
    issues = _issues(client.post("/workflows", json={"blueprint": _loop([1], body)}))
    assert any("nest at most 3" in i["message"] for i in issues), issues


@pytest.mark.parametrize(
    ("items", "code"),
    [("{{ trigger_data.one }}", "invalid_items"), ("{{ trigger_data.many }}", "too_many_items")],
)
def test_bad_items_fail_the_loop_at_run_time(client: TestClient, items: str, code: str) -> None:
    limit = client.app.state.settings.foreach_max_items  # type: ignore[attr-defined]
    payload = {"one": {"not": "a list"}, "many": list(range(limit + 1))}
    run = wait_for_run(client, execute(client, _loop(items, copy.deepcopy(BUILD)), payload))
    assert run["status"] == "failed"
    assert run["error"]["code"] == code and run["error"]["node_id"] == "each"


def test_a_loop_whose_results_together_are_too_large_fails_as_unstorable(
    client: TestClient,
) -> None:
    """Each item's output passes the 4 MB bound of a step's output, but the loop's output holds
    them all: it is bounded like any step's (it was stored whatever its size)."""
    body = copy.deepcopy(BUILD)
    body["nodes"][0]["params"]["fields"] = {"blob": "{{ 'x' * 1000000 }}"}
    run = wait_for_run(client, execute(client, _loop([1, 2, 3, 4, 5], body)))
    assert run["status"] == "failed"
    assert run["error"]["code"] == "output_not_storable" and run["error"]["node_id"] == "each"


def test_an_empty_list_runs_no_item(client: TestClient) -> None:
    run = wait_for_run(client, execute(client, _loop([], copy.deepcopy(BUILD))))
    assert run["status"] == "succeeded"
    assert run["output"] == {"each": {"results": [], "count": 0, "failed": 0}}


def test_a_dry_run_shows_every_items_steps(client: TestClient) -> None:
    saved = client.post("/workflows", json={"blueprint": _loop(["a", "b"], BUILD)}).json()
    result = client.post(f"/workflows/{saved['id']}/dry-run", json={"payload": {}}).json()
    assert result["status"] == "succeeded", result
    assert [(s["step_id"], s["node_id"], s["output"]) for s in result["steps"]] == [
        ("each.0.shape", "shape", {"value": "a", "at": 0}),
        ("each.1.shape", "shape", {"value": "b", "at": 1}),
    ]


def test_a_body_that_sleeps_parks_the_run_and_resumes(client: TestClient) -> None:
    body = {
        "nodes": [
            {"id": "pause", "type": "delay", "duration": "200ms"},
            {"id": "out", "type": "end", "output": "{{ item }}"},
        ],
        "edges": [{"source": "pause", "target": "out"}],
    }
    run = wait_for_run(client, execute(client, _loop(["x", "y"], body, concurrency=2)))
    assert run["status"] == "succeeded", run["error"]
    assert run["output"] == {"each": {"results": ["x", "y"], "count": 2, "failed": 0}}
    logs = client.get(f"/runs/{run['id']}/logs").json()["logs"]
    pauses = [row for row in logs if row["node_id"] == "pause"]
    assert {row["step_id"] for row in pauses} == {"each.0.pause", "each.1.pause"}
    assert {row["status"] for row in pauses} == {"waiting", "succeeded"}


def test_a_body_step_naming_a_missing_credential_is_refused_at_its_path(
    client: TestClient,
) -> None:
    body = {
        "nodes": [
            {
                "id": "call",
                "type": "action",
                "service": "http",
                "task": "request",
                "credential": "nobody_has_this",
                "params": {"url": "https://api.example.com/{{ item }}"},
            }
        ]
    }
    issues = _issues(client.post("/workflows", json={"blueprint": _loop(["a"], body)}))
    assert [i["loc"] for i in issues] == [["nodes", 1, "body", "nodes", 0, "credential"]], issues


@pytest.mark.parametrize(
    ("step_id", "node"),
    [("send", "send"), ("each.3.send", "send"), ("each.3", "each"), ("a.0.b.12.c", "c")],
)
def test_a_step_id_names_its_node(step_id: str, node: str) -> None:
    assert node_of(step_id) == node


def test_loops_in_loops_stop_at_the_runs_step_budget(database_url: str) -> None:
    """Each loop is within FOREACH_MAX_ITEMS, but nested they multiply: the run fails once it
    reaches RUN_MAX_STEPS, at the step past it, and starts nothing after."""
    inner = {"nodes": [{"id": "inner", "type": "foreach", "items": list(range(10)), "body": BUILD}]}
    blueprint = _loop(list(range(10)), inner)
    with TestClient(create_app(make_settings(database_url, run_max_steps=40))) as client:
        run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "failed"
    assert run["error"]["code"] == "item_failed"  # the outer loop's item, whose inner loop's
    assert run["error"]["details"]["error"]["details"]["error"]["code"] == "step_budget_exceeded"
    assert "RUN_MAX_STEPS" in run["error"]["message"]
