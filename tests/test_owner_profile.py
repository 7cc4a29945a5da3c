"""The run owner's profile in templates (``{{ owner.phone }}``), through the API.

A run sees its owner's profile as it was when the run was queued: a snapshot on the run, so a
run parked on a wait while the user edits the profile replays, on either runner, with what its
first steps saw. A field the profile lacks fails the step that uses it with a message naming the
field and ``PATCH /me``; a retry takes a fresh snapshot. Dry runs see the profile as it is now.
WhatsApp runs in sandbox mode here: a step's output shows the request Twilio would get.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.workflows.runners.inngest import RUN_REQUESTED, WAIT_RESOLVED
from tests.conftest import InngestApp
from tests.support import InngestServer, execute, node_status, wait_for_run

FIRST_PHONE = "+919876543210"
NEW_PHONE = "+14155550123"


def _alert(node_id: str, body: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "action",
        "service": "whatsapp",
        "task": "send_message",
        "params": {"to": "{{ owner.phone }}", "body": body},
    }


#: Alert the owner that an order was placed, wait until it is paid, alert them again.
ALERT_TWICE: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "trigger"},
        _alert("placed", "Hi {{ owner.display_name }}, order {{ trigger_data.order }} placed"),
        {
            "id": "paid",
            "type": "wait_for_event",
            "event": "shop/paid",
            "match": "event.data.order == trigger_data.order",
            "timeout": "1d",
        },
        _alert("thanks", "Hi {{ owner.display_name }}, order {{ trigger_data.order }} paid"),
        {
            "id": "done",
            "type": "end",
            "output": {
                "placed_to": "{{ steps.placed.output.request.body.To }}",
                "thanks_to": "{{ steps.thanks.output.request.body.To }}",
                "thanks_body": "{{ steps.thanks.output.request.body.Body }}",
            },
        },
    ],
    "edges": [
        {"source": "start", "target": "placed"},
        {"source": "placed", "target": "paid"},
        {"source": "paid", "target": "thanks"},
        {"source": "thanks", "target": "done"},
    ],
}

#: Both alerts went to the phone the profile had when the run was queued, as a WhatsApp
#: address (``whatsapp:+E164``), greeting the name it had then.
SENT_TO_FIRST_PHONE = {
    "placed_to": f"whatsapp:{FIRST_PHONE}",
    "thanks_to": f"whatsapp:{FIRST_PHONE}",
    "thanks_body": "Hi Asha, order o-7 paid",
}


def _set_profile(client: TestClient, **fields: str) -> None:
    response = client.patch("/me", json=fields)
    assert response.status_code == 200, response.text


def _change_profile(client: TestClient) -> None:
    _set_profile(client, phone=NEW_PHONE, display_name="Someone else")


def test_a_parked_embedded_run_keeps_the_profile_it_started_with(client: TestClient) -> None:
    """Embedded runner: the run is parked on the wait (its pass ended) while the profile
    changes; the next pass replays the run and its second alert still goes to the first
    phone, greeting the first name."""
    _set_profile(client, phone=FIRST_PHONE, display_name="Asha")
    run_id = execute(client, ALERT_TWICE, {"order": "o-7"})
    assert wait_for_run(client, run_id, {"waiting", "failed"})["status"] == "waiting"
    _change_profile(client)
    response = client.post("/events", json={"name": "shop/paid", "data": {"order": "o-7"}})
    assert response.json()["resumed_run_ids"] == [run_id]

    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    assert run["output"] == SENT_TO_FIRST_PHONE
    nodes = {n["id"]: n for n in run["nodes"]}
    assert nodes["placed"]["input"]["to"] == FIRST_PHONE
    assert nodes["thanks"]["input"]["to"] == FIRST_PHONE


def test_a_parked_inngest_run_keeps_the_profile_it_started_with(inngest_app: InngestApp) -> None:
    """Inngest runner, driven over ``/api/inngest`` as the Inngest server does: every request
    replays the function; the profile changes while the run waits for its event, and the
    requests after that still see the profile of the run's start."""
    client = inngest_app.client
    _set_profile(client, phone=FIRST_PHONE, display_name="Asha")
    run_id = execute(client, ALERT_TWICE, {"order": "o-7"})
    server = InngestServer(client, inngest_app.events(RUN_REQUESTED)[0])

    def answer(op: dict[str, Any]) -> Any:
        assert wait_for_run(client, run_id, {"waiting"})["status"] == "waiting"
        _change_profile(client)
        client.post("/events", json={"name": "shop/paid", "data": {"order": "o-7"}})
        [resolved] = inngest_app.events(WAIT_RESOLVED)
        return resolved

    assert server.drive(on_wait=answer) == SENT_TO_FIRST_PHONE
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded" and run["engine"] == "inngest"
    assert {n["id"]: n for n in run["nodes"]}["thanks"]["input"]["to"] == FIRST_PHONE


def test_the_profile_is_taken_when_the_run_is_queued(inngest_app: InngestApp) -> None:
    """A change between queuing and the first step (Inngest has not called back yet) does not
    reach the run either: the run is the request as it was made."""
    client = inngest_app.client
    _set_profile(client, phone=FIRST_PHONE, display_name="Asha")
    run_id = execute(client, ALERT_TWICE, {"order": "o-7"})
    _change_profile(client)
    server = InngestServer(client, inngest_app.events(RUN_REQUESTED)[0])

    def answer(op: dict[str, Any]) -> Any:
        client.post("/events", json={"name": "shop/paid", "data": {"order": "o-7"}})
        return inngest_app.events(WAIT_RESOLVED)[0]

    assert server.drive(on_wait=answer) == SENT_TO_FIRST_PHONE
    assert wait_for_run(client, run_id)["status"] == "succeeded"


def test_a_missing_phone_fails_the_step_with_how_to_set_it(client: TestClient) -> None:
    """No phone in the profile: the step that sends to ``owner.phone`` fails with
    ``expression_error`` naming the field and ``PATCH /me`` (nothing is sent to "None");
    once the phone is set, retrying the run sends to it."""
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            _alert("alert", "Payment of {{ trigger_data.amount }} received"),
        ],
        "edges": [{"source": "start", "target": "alert"}],
    }
    run_id = execute(client, blueprint, {"amount": 500})
    run = wait_for_run(client, run_id)
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "alert"
    assert run["error"]["code"] == "expression_error"
    message = run["error"]["message"]
    assert "owner.phone is not set" in message and "PATCH /me" in message, message

    _set_profile(client, phone=FIRST_PHONE)
    assert client.post(f"/runs/{run_id}/retry").status_code == 200
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    assert run["output"]["alert"]["request"]["body"]["To"] == f"whatsapp:{FIRST_PHONE}"


def test_a_condition_can_ask_whether_a_field_is_set(client: TestClient) -> None:
    """``owner.email is defined`` is false for a profile without an email (a missing field is
    undefined, not the text "None"), so a router can route around it."""
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "route",
                "type": "router",
                "conditions": [{"branch": "email", "when": "owner.email is defined"}],
                "default": "whatsapp",
            },
            {"id": "by_email", "type": "end", "output": "{{ owner.email }}"},
            {"id": "by_whatsapp", "type": "end", "output": "{{ owner.phone }}"},
        ],
        "edges": [
            {"source": "start", "target": "route"},
            {"source": "route", "target": "by_email", "branch": "email"},
            {"source": "route", "target": "by_whatsapp", "branch": "whatsapp"},
        ],
    }
    _set_profile(client, phone=FIRST_PHONE)
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "succeeded" and run["output"] == FIRST_PHONE
    assert node_status(run)["by_email"] == "skipped"


def test_a_dry_run_uses_the_profile_as_it_is_now(client: TestClient) -> None:
    saved = client.post("/workflows", json={"blueprint": ALERT_TWICE})
    assert saved.status_code == 201, saved.text
    _set_profile(client, phone=FIRST_PHONE, display_name="Asha")
    response = client.post(
        f"/workflows/{saved.json()['id']}/dry-run",
        json={"payload": {"order": "o-7"}, "events": {"paid": {"order": "o-7"}}},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded"
    assert result["output"] == SENT_TO_FIRST_PHONE


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ owner.phone_number }}", "uses owner.phone_number, which a profile does not have"),
        ("{{ owner['mobile'] }}", "uses owner.mobile, which a profile does not have"),
    ],
)
def test_a_field_a_profile_does_not_have_is_refused_when_saved(
    client: TestClient, template: str, message: str
) -> None:
    blueprint = {
        "nodes": [{"id": "start", "type": "trigger"}, _alert("alert", "hi")],
        "edges": [{"source": "start", "target": "alert"}],
    }
    blueprint["nodes"][1]["params"]["to"] = template
    response = client.post("/workflows", json={"blueprint": blueprint})
    assert response.status_code == 422, response.text
    [problem] = response.json()["error"]["details"]
    assert problem["loc"] == ["nodes", 1, "params", "to"] and problem["node_id"] == "alert"
    assert message in problem["message"]
    assert "owner.phone" in problem["message"], "the message lists the fields there are"
