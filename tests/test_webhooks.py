"""Razorpay webhooks: signature first, dedupe on the event id and the signed body, events start
and resume runs."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.config import Settings
from tests.conftest import WEBHOOK_SECRET
from tests.support import node_status, wait_for_run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str, file: str) -> Any:
    return json.loads((EXAMPLES / name / file).read_text())


def _post(
    client: TestClient,
    payload: Any,
    *,
    event_id: str | None,
    secret: str = WEBHOOK_SECRET,
    signature: str | None = None,
) -> Any:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-razorpay-signature": signature if signature is not None else digest,
    }
    if event_id is not None:
        headers["x-razorpay-event-id"] = event_id
    return client.post("/webhooks/razorpay", content=body, headers=headers)


def _count(settings: Settings, table: str) -> int:
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()
    assert row is not None
    return int(row[0])


def _activate_receipt_workflow(client: TestClient) -> str:
    wf = client.post(
        "/workflows", json={"blueprint": _example("payment_receipt", "blueprint.json")}
    )
    assert wf.status_code == 201, wf.text
    workflow_id: str = wf.json()["id"]
    assert client.post(f"/workflows/{workflow_id}/activate").status_code == 200
    return workflow_id


def test_payment_captured_runs_the_active_receipt_workflow(client: TestClient) -> None:
    workflow_id = _activate_receipt_workflow(client)
    response = _post(client, _example("payment_receipt", "payload.json"), event_id="evt_1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event"] == "razorpay/payment.captured" and body["duplicate"] is False
    [run_id] = body["started_run_ids"]
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["workflow_id"] == workflow_id
    send = next(n for n in run["nodes"] if n["id"] == "send_receipt")
    assert send["output"]["sandbox"] is True
    assert send["output"]["request"]["body"] == {
        "To": "whatsapp:+919876543210",
        "From": "whatsapp:+14155238886",
        "Body": "Thank you! We received ₹2499.00 for Annual plan. Payment id: pay_DESlfW9H8K9uqM.",
    }
    assert run["output"]["amount_rupees"] == "2499.00"


def test_duplicate_delivery_starts_exactly_one_run(client: TestClient, settings: Settings) -> None:
    _activate_receipt_workflow(client)
    payload = _example("payment_receipt", "payload.json")
    first = _post(client, payload, event_id="evt_dup")
    second = _post(client, payload, event_id="evt_dup")
    assert first.status_code == 200 and second.status_code == 200
    assert second.json()["duplicate"] is True and second.json()["started_run_ids"] == []
    assert _count(settings, "workflow_runs") == 1
    assert _count(settings, "webhook_deliveries") == 1


@pytest.mark.parametrize(
    "first_id, replay_id",
    [("evt_1", "evt_forged"), (None, "evt_forged"), ("evt_1", None)],
    ids=["new-event-id", "event-id-added", "event-id-dropped"],
)
def test_a_signed_body_replayed_under_other_headers_runs_once(
    client: TestClient, settings: Settings, first_id: str | None, replay_id: str | None
) -> None:
    """Razorpay signs only the body; the event id header is not covered. Whoever holds one
    signed delivery must not start its runs again by changing the header (the body's hash
    is deduped as well as the event id). Another event still runs."""
    _activate_receipt_workflow(client)
    payload = _example("payment_receipt", "payload.json")
    first = _post(client, payload, event_id=first_id)
    replay = _post(client, payload, event_id=replay_id)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    assert replay.status_code == 200, replay.text
    assert replay.json()["duplicate"] is True and replay.json()["started_run_ids"] == []
    assert _count(settings, "workflow_runs") == 1
    assert _count(settings, "events") == 1
    other = json.loads(json.dumps(payload))
    other["payload"]["payment"]["entity"]["id"] = "pay_other"
    assert _post(client, other, event_id="evt_2").json()["duplicate"] is False
    assert _count(settings, "workflow_runs") == 2


def test_bad_signature_is_400_and_stores_nothing(client: TestClient, settings: Settings) -> None:
    _activate_receipt_workflow(client)
    payload = _example("payment_receipt", "payload.json")
    for response in (
        _post(client, payload, event_id="evt_bad", secret="wrong-secret"),
        _post(client, payload, event_id="evt_bad", signature=""),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_signature"
    assert _count(settings, "webhook_deliveries") == 0
    assert _count(settings, "events") == 0
    assert _count(settings, "workflow_runs") == 0


def test_signed_body_that_is_not_an_event_is_400(client: TestClient) -> None:
    response = _post(client, {"hello": "world"}, event_id="evt_x")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"


def test_webhook_without_secret_configured_is_503(database_url: str) -> None:
    from blueprint_engine.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(
        database_url, tools={"razorpay": {"webhook_secret": None}}, run_worker=False
    )
    with TestClient(create_app(settings)) as client:
        response = _post(client, {"event": "payment.captured"}, event_id="evt_n")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhook_not_configured"


def test_payment_link_paid_webhook_resumes_the_waiting_run(client: TestClient) -> None:
    """The follow-up example waits for razorpay/payment_link.paid matching its link id; a signed
    webhook for that link resumes it down the thank-you branch (the reminder is skipped)."""
    blueprint = _example("payment_link_followup", "blueprint.json")
    for node in blueprint["nodes"]:
        if node["id"] == "wait_paid":
            node["timeout"] = "1h"
    payload = _example("payment_link_followup", "payload.json")
    run_id = client.post(
        "/workflow/execute", json={"blueprint": blueprint, "payload": payload}
    ).json()["run_id"]
    waiting = wait_for_run(client, run_id, {"waiting"})
    while node_status(waiting)["wait_paid"] != "waiting":
        waiting = wait_for_run(client, run_id, {"waiting"})
    link = next(n for n in waiting["nodes"] if n["id"] == "create_link")["output"]
    assert link["sandbox"] is True and link["id"].startswith("plink_sandbox_")

    other = {
        "event": "payment_link.paid",
        "payload": {"payment_link": {"entity": {"id": "plink_other"}}},
    }
    assert _post(client, other, event_id="evt_other").json()["resumed_run_ids"] == []
    paid = {
        "event": "payment_link.paid",
        "payload": {"payment_link": {"entity": {"id": link["id"]}}},
    }
    assert _post(client, paid, event_id="evt_paid").json()["resumed_run_ids"] == [run_id]

    run = wait_for_run(client, run_id)
    states = node_status(run)
    assert run["status"] == "succeeded", run["error"]
    assert states["thank_you"] == "succeeded" and states["reminder"] == "skipped"
    # ₹15,000 is under the ₹1 lakh threshold: the alert is skipped and the delay, a join of the
    # router's "small" edge and the alert, still runs.
    assert states["alert_team"] == "skipped" and states["grace"] == "succeeded"
