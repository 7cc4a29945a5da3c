"""Invalid blueprints never start a run: 422 with every problem's node id and field path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import wait_for_run

BASE: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "trigger"},
        {
            "id": "send",
            "type": "action",
            "service": "whatsapp",
            "task": "send_message",
            "params": {"to": "{{ trigger_data.phone }}", "body": "hi"},
        },
        {"id": "route", "type": "router", "conditions": [{"branch": "yes", "when": "true"}]},
        {"id": "done", "type": "end"},
    ],
    "edges": [
        {"source": "start", "target": "send"},
        {"source": "send", "target": "route"},
        {"source": "route", "target": "done", "branch": "yes"},
    ],
}


def _node(bp: dict[str, Any], node_id: str) -> dict[str, Any]:
    node: dict[str, Any] = next(n for n in bp["nodes"] if n["id"] == node_id)
    return node


def _set(node_id: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda bp: _node(bp, node_id).update(fields)


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str | None, list[Any], str]] = [
    (
        "unknown_service",
        _set("send", service="telegram"),
        "send",
        ["nodes", 1, "service"],
        "unknown service 'telegram'",
    ),
    ("unknown_task", _set("send", task="call"), "send", ["nodes", 1, "task"], "no task 'call'"),
    (
        "bad_literal_param",
        _set("send", params={"to": "12345", "body": "hi"}),
        "send",
        ["nodes", 1, "params", "to"],
        "E.164",
    ),
    (
        "unknown_param",
        _set("send", params={"to": "+919876543210", "body": "x", "cc": "y"}),
        "send",
        ["nodes", 1, "params", "cc"],
        "Extra inputs",
    ),
    (
        "missing_param",
        _set("send", params={"to": "+919876543210"}),
        "send",
        ["nodes", 1, "params", "body"],
        "Field required",
    ),
    (
        "reference_to_later_node",
        _set("send", params={"to": "{{ steps.done.output.x }}", "body": "hi"}),
        "send",
        ["nodes", 1, "params", "to"],
        "does not run before",
    ),
    (
        "reference_to_missing_node",
        _set("send", params={"to": "{{ steps.ghost.output }}", "body": "hi"}),
        "send",
        ["nodes", 1, "params", "to"],
        "unknown node 'ghost'",
    ),
    (
        "unknown_top_level_name",
        _set("send", params={"to": "{{ trigger.phone }}", "body": "hi"}),
        "send",
        ["nodes", 1, "params", "to"],
        "unknown name 'trigger'",
    ),
    (
        "template_syntax",
        _set("send", params={"to": "{{ trigger_data. }}", "body": "hi"}),
        "send",
        ["nodes", 1, "params", "to"],
        "invalid",
    ),
    (
        "router_condition_syntax",
        _set("route", conditions=[{"branch": "yes", "when": "a ==="}]),
        "route",
        ["nodes", 2, "conditions", 0, "when"],
        "invalid expression",
    ),
    ("unknown_node_type", _set("done", type="sleep"), "done", ["nodes", 3], "type must be one of"),
    (
        "bad_duration",
        lambda bp: bp["nodes"].append({"id": "d", "type": "delay", "duration": "soon"}),
        "d",
        ["nodes", 4, "duration"],
        "not a duration",
    ),
    ("bad_node_id", _set("done", id="has-dash"), "has-dash", ["nodes", 3, "id"], "pattern"),
    (
        "two_triggers",
        lambda bp: bp["nodes"].append({"id": "t2", "type": "trigger"}),
        None,
        ["nodes"],
        "exactly one trigger",
    ),
    (
        "unreachable",
        lambda bp: bp["nodes"].append({"id": "orphan", "type": "end"}),
        "orphan",
        ["nodes", 4],
        "not reachable",
    ),
    (
        "cycle",
        lambda bp: bp["edges"].append({"source": "route", "target": "send", "branch": "yes"}),
        "send",
        ["edges"],
        "cycle",
    ),
    (
        "edge_to_missing_node",
        lambda bp: bp["edges"].append({"source": "done", "target": "nowhere"}),
        None,
        ["edges", 3, "target"],
        "is not a node",
    ),
    (
        "router_edge_without_branch",
        lambda bp: bp["edges"][2].pop("branch"),
        "route",
        ["edges", 2, "branch"],
        "needs a branch label",
    ),
    (
        "branch_on_plain_edge",
        lambda bp: bp["edges"][0].update(branch="x"),
        "start",
        ["edges", 0, "branch"],
        "carry no branch label",
    ),
    (
        "event_trigger_without_event",
        _set("start", trigger="event"),
        "start",
        ["nodes", 0, "event"],
        "needs an event name",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "node_id", "loc", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_blueprint_is_rejected_with_node_and_field(
    client: TestClient, mutate: Any, node_id: str | None, loc: list[Any], text: str
) -> None:
    blueprint = copy.deepcopy(BASE)
    mutate(blueprint)
    response = client.post("/workflows", json={"blueprint": blueprint})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_blueprint"
    matching = [d for d in error["details"] if d["loc"] == loc and text in d["message"]]
    assert matching, error["details"]
    assert matching[0]["node_id"] == node_id
    runs = client.post("/workflow/execute", json={"blueprint": blueprint})
    assert runs.status_code == 422, "an invalid blueprint never starts a run"


def test_valid_base_is_accepted(client: TestClient) -> None:
    assert client.post("/workflows", json={"blueprint": BASE}).status_code == 201


def test_templated_params_are_checked_again_at_run_time(client: TestClient) -> None:
    """A template passes static validation; the resolved value is validated by the task model
    when the step runs, and the failure names the param."""
    response = client.post(
        "/workflow/execute", json={"blueprint": BASE, "payload": {"phone": "12"}}
    )
    run_id = response.json()["run_id"]
    run = wait_for_run(client, run_id)
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "send" and run["error"]["code"] == "invalid_params"
    assert run["error"]["details"]["errors"][0]["loc"] == ["params", "to"]


@pytest.mark.parametrize(
    ("to", "accepted"),
    [
        ("+91 98765-43210", True),
        ("+1 (415) 555-2671", True),  # a regex of digits refused this
        ("whatsapp:+14155552671", True),
        ("+1234567", False),  # '+' and 7 digits, but no such number
        ("+999 1234 5678", False),  # no country 999
        ("919876543210", False),  # no '+' country code
    ],
)
def test_whatsapp_numbers_are_what_libphonenumber_accepts(
    client: TestClient, to: str, accepted: bool
) -> None:
    blueprint = copy.deepcopy(BASE)
    _node(blueprint, "send")["params"] = {"to": to, "body": "hi"}
    response = client.post("/workflows", json={"blueprint": blueprint})
    if accepted:
        assert response.status_code == 201, response.text
        return
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["loc"] == ["nodes", 1, "params", "to"] and detail["node_id"] == "send"
    assert "is not an E.164 phone number" in detail["message"]


@pytest.mark.parametrize(
    ("email", "accepted"),
    [
        ("Asha@Example.com", True),
        ("用户@例子.广告", True),
        ("asha..k@example.com", False),  # a regex of '@' and '.' let these through
        ("asha@-bad.com", False),
        ("nope", False),
    ],
)
def test_customer_emails_are_what_email_validator_accepts(
    client: TestClient, email: str, accepted: bool
) -> None:
    blueprint = copy.deepcopy(BASE)
    _set(
        "send",
        service="razorpay",
        task="create_payment_link",
        params={"amount": 50000, "customer": {"name": "Asha", "email": email}},
    )(blueprint)
    response = client.post("/workflows", json={"blueprint": blueprint})
    if accepted:
        assert response.status_code == 201, response.text
        return
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_blueprint"
    [detail] = error["details"]
    assert detail["loc"] == ["nodes", 1, "params", "customer", "email"]
    assert detail["node_id"] == "send" and "not a valid email address" in detail["message"]
