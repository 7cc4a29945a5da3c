"""Tools through a run: the vendors' SDKs run for real, HTTP is mocked at the transport
(``aioresponses`` under the Twilio SDK's asyncio client, ``responses`` under the Razorpay SDK),
sandbox mode, and the http tool's guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from aioresponses import aioresponses
from fastapi.testclient import TestClient
from yarl import URL

from blueprint_engine.app import create_app
from tests.conftest import make_settings
from tests.support import Peer, execute, wait_for_run

TWILIO_SID = "ACtest0000000000000000000000000000"
TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


@pytest.fixture
def live_client(database_url: str) -> Iterator[TestClient]:
    """The API with vendor credentials configured (calls reach the mocked transport)."""
    settings = make_settings(
        database_url,
        tools={
            "twilio": {
                "account_sid": TWILIO_SID,
                "auth_token": "twilio-token",
                "whatsapp_from": "+14155238886",
            },
            "razorpay": {"key_id": "rzp_test_key", "key_secret": "rzp_test_secret"},
        },
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def vendor() -> Iterator[responses.RequestsMock]:
    # Only the vendors' hosts are mocked; the test client and peer use httpx / sockets.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def twilio_api() -> Iterator[aioresponses]:
    """Twilio's API as the SDK's asyncio client reaches it: aiohttp requests are answered here
    (anything else through aiohttp fails)."""
    with aioresponses() as mock:
        yield mock


def _one_step(service: str, task: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "step",
                "type": "action",
                "service": service,
                "task": task,
                "params": params,
                **extra,
            },
        ],
        "edges": [{"source": "start", "target": "step"}],
    }


def _step(run: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = next(n for n in run["nodes"] if n["id"] == "step")
    return node


def test_whatsapp_message_goes_through_the_twilio_sdk(
    live_client: TestClient, twilio_api: aioresponses
) -> None:
    twilio_api.post(
        TWILIO_URL,
        status=201,
        payload={
            "sid": "SM0123456789abcdef0123456789abcdef",
            "status": "queued",
            "to": "whatsapp:+919876543210",
            "from": "whatsapp:+14155238886",
            "body": "Paid ₹10",
        },
    )
    blueprint = _one_step(
        "whatsapp",
        "send_message",
        {"to": "+91 98765 43210", "body": "Paid ₹10", "media_url": ["https://example.com/r.pdf"]},
    )
    run = wait_for_run(live_client, execute(live_client, blueprint))
    assert run["status"] == "succeeded", run["error"]
    assert _step(run)["output"] == {
        "sid": "SM0123456789abcdef0123456789abcdef",
        "status": "queued",
        "to": "whatsapp:+919876543210",
    }
    [call] = twilio_api.requests[("POST", URL(TWILIO_URL))]
    assert call.kwargs["data"] == {
        "To": "whatsapp:+919876543210",
        "From": "whatsapp:+14155238886",
        "Body": "Paid ₹10",
        "MediaUrl": ["https://example.com/r.pdf"],
    }
    auth = call.kwargs["auth"]
    assert (auth.login, auth.password) == (TWILIO_SID, "twilio-token")


def test_twilio_server_errors_are_retried_client_errors_are_not(
    live_client: TestClient, twilio_api: aioresponses
) -> None:
    twilio_api.post(TWILIO_URL, status=503, payload={"code": 20503, "message": "Unavailable"})
    twilio_api.post(TWILIO_URL, status=201, payload={"sid": "SMok", "status": "queued", "to": "x"})
    blueprint = _one_step("whatsapp", "send_message", {"to": "+919876543210", "body": "hi"})
    run = wait_for_run(live_client, execute(live_client, blueprint))
    assert run["status"] == "succeeded" and _step(run)["attempt"] == 2
    assert len(twilio_api.requests[("POST", URL(TWILIO_URL))]) == 2

    twilio_api.clear()
    twilio_api.post(
        TWILIO_URL, status=400, payload={"code": 21211, "message": "Invalid 'To' Phone Number"}
    )
    run = wait_for_run(live_client, execute(live_client, blueprint))
    assert run["status"] == "failed"
    assert run["error"]["code"] == "twilio_error" and run["error"]["attempts"] == 1
    assert run["error"]["details"] == {"status": 400, "twilio_code": 21211}
    assert "Invalid 'To' Phone Number" in run["error"]["message"]


def test_razorpay_payment_link_and_idempotent_refund(
    live_client: TestClient, vendor: responses.RequestsMock
) -> None:
    vendor.post(
        "https://api.razorpay.com/v1/payment_links",
        json={
            "id": "plink_Ex1",
            "short_url": "https://rzp.io/i/abc",
            "status": "created",
            "amount": 50000,
            "reference_id": "r",
        },
    )
    vendor.post(
        "https://api.razorpay.com/v1/payments/pay_Ex1/refund",
        json={"id": "rfnd_Ex1", "payment_id": "pay_Ex1", "amount": 50000, "status": "processed"},
    )
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "link",
                "type": "action",
                "service": "razorpay",
                "task": "create_payment_link",
                "params": {
                    "amount": "{{ trigger_data.amount }}",
                    "description": "Order 7",
                    "customer": {"name": "Asha", "contact": "+919876543210"},
                },
            },
            {
                "id": "refund",
                "type": "action",
                "service": "razorpay",
                "task": "refund_payment",
                "params": {"payment_id": "pay_Ex1", "amount": 50000},
            },
        ],
        "edges": [{"source": "start", "target": "link"}, {"source": "link", "target": "refund"}],
    }
    run_id = execute(live_client, blueprint, {"amount": 50000})
    run = wait_for_run(live_client, run_id)
    assert run["status"] == "succeeded", run["error"]
    link_call, refund_call = vendor.calls
    sent = json.loads(link_call.request.body)  # type: ignore[arg-type]
    assert sent["amount"] == 50000 and sent["customer"] == {
        "name": "Asha",
        "contact": "+919876543210",
    }
    assert sent["reference_id"].startswith("wf_") and len(sent["reference_id"]) <= 40
    assert refund_call.request.headers["X-Refund-Idempotency"] == f"{run_id}_refund"
    assert json.loads(refund_call.request.body) == {"amount": 50000, "speed": "normal"}  # type: ignore[arg-type]


def test_razorpay_bad_request_fails_without_retry(
    live_client: TestClient, vendor: responses.RequestsMock
) -> None:
    vendor.get(
        "https://api.razorpay.com/v1/payments/pay_missing",
        status=400,
        json={
            "error": {"code": "BAD_REQUEST_ERROR", "description": "The id provided does not exist"}
        },
    )
    run = wait_for_run(
        live_client,
        execute(live_client, _one_step("razorpay", "fetch_payment", {"payment_id": "pay_missing"})),
    )
    assert run["status"] == "failed"
    assert run["error"]["code"] == "razorpay_bad_request"
    assert "does not exist" in run["error"]["message"] and len(vendor.calls) == 1


def test_without_credentials_tools_run_in_sandbox(client: TestClient) -> None:
    run = wait_for_run(
        client,
        execute(
            client,
            _one_step(
                "razorpay",
                "create_invoice",
                {
                    "customer": {"name": "Acme", "email": "ap@acme.example"},
                    "line_items": [{"name": "Consulting", "amount": 500000, "quantity": 2}],
                },
            ),
        ),
    )
    assert run["status"] == "succeeded"
    output = _step(run)["output"]
    assert output["sandbox"] is True and output["amount"] == 1000000
    assert output["request"]["method"] == "POST"
    assert output["request"]["url"] == "https://api.razorpay.com/v1/invoices"
    assert output["request"]["body"]["line_items"][0] == {
        "name": "Consulting",
        "amount": 500000,
        "quantity": 2,
    }


def test_http_tool_refuses_internal_addresses_unless_allow_listed(
    database_url: str, peer: Peer
) -> None:
    settings = make_settings(database_url, http_allow_hosts=[])
    with TestClient(create_app(settings)) as client:
        run = wait_for_run(
            client,
            execute(
                client,
                _one_step(
                    "http", "request", {"url": f"{peer.url}/secret"}, retry={"max_attempts": 3}
                ),
            ),
        )
    assert run["status"] == "failed"
    assert run["error"]["code"] == "destination_blocked" and run["error"]["attempts"] == 1
    assert "HTTP_ALLOW_HOSTS" in run["error"]["message"]
    assert peer.hits["/secret"] == 0
