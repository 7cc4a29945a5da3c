"""What WhatsApp and voice users are told, through the API against real Postgres.

A slot value is checked against the task's params model as soon as the command's details are
complete, before any confirmation: a bad one is dropped and asked for again in plain words. A
failed action and an engine outage are told in plain words too (the technical detail stays in
the run and the server log), and leave no pending request behind that could only fail again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
import responses
from aioresponses import CallbackResult, aioresponses
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.integrations import public_tools
from tests.support import Peer, assert_plain_words
from tests.test_channels import USER, FakeOpenAI, _settings, whatsapp

PAYMENT_URL = "https://api.razorpay.com/v1/payments/pay_29QQoUBi66xm2f"
REFUND_URL = f"{PAYMENT_URL}/refund"
#: Razorpay's payment entity (GET /v1/payments/{id}), as the refund's lookup reads it.
PAYMENT = {
    "id": "pay_29QQoUBi66xm2f",
    "entity": "payment",
    "amount": 249900,
    "currency": "INR",
    "status": "captured",
    "amount_refunded": 0,
    "contact": "+919876543210",
    "email": "asha@example.com",
}
TWILIO_URL = "https://api.twilio.com/2010-04-01/Accounts/ACtest/Messages.json"
UNREACHABLE = requests.ConnectionError(
    "HTTPSConnectionPool(host='api.razorpay.com', port=443): Max retries exceeded with url: "
    "/v1/payments/pay_29QQoUBi66xm2f/refund (Caused by NewConnectionError('Connection refused'))"
)


@pytest.fixture
def llm(peer: Peer) -> FakeOpenAI:
    return FakeOpenAI(peer)


@pytest.fixture
def api(database_url: str, llm: FakeOpenAI) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(database_url, llm))) as client:
        yield client


def command_runs(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from workflow_runs where trace_id is not null"
        ).fetchone()
    assert row is not None
    return int(row[0])


def pending(api: TestClient, session_id: str) -> Any:
    return api.get(f"/sessions/{session_id}").json()["pending"]


def test_refund_with_a_bad_payment_id_is_asked_again_never_confirmed(
    api: TestClient, llm: FakeOpenAI, database_url: str
) -> None:
    llm.say("REFUND_PAYMENT", payment_id="Asha's payment from Tuesday")
    first = whatsapp(api, "refund Asha's payment from Tuesday", "SMr1")
    assert "Refund" not in first.text
    assert "That doesn't look like a Razorpay payment id — they start with pay_." in first.text
    assert "Which payment should I refund" in first.text
    assert_plain_words(first.text)

    llm.say(None, confirmation="yes")  # "yes" is no answer to the question
    second = whatsapp(api, "yes", "SMr2")
    assert "Which payment should I refund" in second.text
    assert command_runs(database_url) == 0

    llm.say("REFUND_PAYMENT", payment_id="pay_29QQoUBi66xm2f")
    third = whatsapp(api, "pay_29QQoUBi66xm2f", "SMr3")
    # Sandboxed, the lookup cannot see the payment's amount: the confirmation says "in full".
    assert "Refund payment pay_29QQoUBi66xm2f in full?" in third.text
    assert command_runs(database_url) == 1, "the lookup"

    llm.say(None, confirmation="yes")
    done = whatsapp(api, "yes", "SMr4")
    assert "Done — I've refunded payment pay_29QQoUBi66xm2f in full;" in done.text
    assert "\nRefund id: rfnd_sandbox_" in done.text
    assert command_runs(database_url) == 2, "the lookup and the refund"


def test_a_message_too_long_for_whatsapp_is_asked_again(
    api: TestClient, llm: FakeOpenAI, database_url: str
) -> None:
    llm.say("SEND_WHATSAPP", to="+919812345678", message="blah " * 400)
    body = api.post("/intent-parser", json={"session_id": "k", "text": "send a long one"}).json()
    assert body["status"] == "needs_input" and body["analysis"]["missing_slots"] == ["message"]
    assert body["reply"] == (
        "That's too long — at most 1600 characters. What should the message say?"
    )
    assert "message" not in pending(api, body["session_id"])["slots"]
    assert command_runs(database_url) == 0

    llm.say("SEND_WHATSAPP", message="The shop opens at ten")
    sent = api.post("/intent-parser", json={"session_id": "k", "text": "opens at ten"}).json()
    assert sent["status"] == "completed", sent
    assert sent["reply"] == "Sent your WhatsApp message to +91 98123 45678."


def test_a_failed_action_is_told_in_plain_words_and_yes_does_not_repeat_it(
    database_url: str, llm: FakeOpenAI
) -> None:
    settings = _settings(
        database_url, llm, tools={"razorpay": {"key_id": "rzp_test_key", "key_secret": "secret"}}
    )
    with (
        responses.RequestsMock() as vendor,
        TestClient(create_app(settings)) as api,
    ):
        vendor.add("GET", PAYMENT_URL, json=PAYMENT)
        vendor.add("POST", REFUND_URL, body=UNREACHABLE)
        llm.say("REFUND_PAYMENT", payment_id="pay_29QQoUBi66xm2f")
        asked = api.post("/intent-parser", json={"session_id": "v", "text": "refund it"}).json()
        assert asked["reply"].startswith("Refund the full ₹2,499 of payment pay_29QQoUBi66xm2f?")
        llm.say(None, confirmation="yes")
        failed = api.post("/intent-parser", json={"session_id": "v", "text": "yes"}).json()
        assert failed["status"] == "failed", failed
        assert failed["reply"] == (
            "Sorry, I couldn't refund the full ₹2,499 of payment pay_29QQoUBi66xm2f: the service"
            " it needs could not be reached; please try again in a few minutes."
        )
        assert_plain_words(failed["reply"])
        run = api.get(f"/runs/{failed['run_id']}").json()
        assert "HTTPSConnectionPool" in run["error"]["message"], "the detail stays in the run"
        assert pending(api, failed["session_id"]) is None

        llm.say(None, confirmation="yes")
        again = api.post("/intent-parser", json={"session_id": "v", "text": "yes"}).json()
        assert again["status"] == "no_action"
        assert command_runs(database_url) == 2, "the lookup and the one refund"


def test_a_late_failure_is_sent_in_plain_words(database_url: str, llm: FakeOpenAI) -> None:
    """The webhook could not wait for the refund; the run's own reply step tells the user."""
    settings = _settings(
        database_url,
        llm,
        channel_reply_wait_seconds=0.3,
        tools={
            "razorpay": {"key_id": "rzp_test_key", "key_secret": "secret"},
            "twilio": {"account_sid": "ACtest", "whatsapp_from": "+14155238886"},
        },
    )
    sent: list[str] = []

    def slow_and_down(request: Any) -> Any:
        time.sleep(0.2)
        raise UNREACHABLE

    def twilio(url: Any, **request: Any) -> CallbackResult:
        sent.append(request["data"]["Body"])
        return CallbackResult(status=201, payload={"sid": f"SM{len(sent)}", "status": "queued"})

    with (
        responses.RequestsMock(assert_all_requests_are_fired=False) as vendor,
        aioresponses() as twilio_api,
        TestClient(create_app(settings)) as api,
    ):
        vendor.add("GET", PAYMENT_URL, json=PAYMENT)
        vendor.add_callback("POST", REFUND_URL, callback=slow_and_down)
        twilio_api.post(TWILIO_URL, callback=twilio, repeat=True)
        llm.say("REFUND_PAYMENT", payment_id="pay_29QQoUBi66xm2f")
        asked = whatsapp(api, "refund pay_29QQoUBi66xm2f", "SMl1").text
        assert "Refund the full ₹2,499 of payment pay_29QQoUBi66xm2f?" in asked
        llm.say(None, confirmation="yes")
        assert "working on it" in whatsapp(api, "yes", "SMl2").text
        deadline = time.monotonic() + 15
        while not sent and time.monotonic() < deadline:
            time.sleep(0.1)
    [late] = sent
    assert late == (
        "Sorry, I couldn't refund the full ₹2,499 of payment pay_29QQoUBi66xm2f: the service"
        " it needs could not be reached; please try again in a few minutes."
    )
    assert_plain_words(late)


def test_an_engine_outage_is_told_in_plain_words(database_url: str, llm: FakeOpenAI) -> None:
    settings = _settings(
        database_url, llm, engine="inngest", inngest_dev="1", inngest_base_url="http://127.0.0.1:1"
    )
    with TestClient(create_app(settings)) as api:
        llm.say("SEND_WHATSAPP", to="+919812345678", message="Stock arrives Monday")
        response = api.post("/intent-parser", json={"session_id": "e", "text": "tell them"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "failed" and body["reply"].startswith("Sorry")
        assert_plain_words(body["reply"])
        assert pending(api, body["session_id"]) is None

        llm.say("SEND_WHATSAPP", to="+919812345678", message="Stock arrives Monday")
        answer = whatsapp(api, "tell +919812345678 stock arrives Monday", "SMe1")
        assert answer.status_code == 200 and "<Message>Sorry" in answer.text
        assert "Inngest" not in answer.text and "INNGEST" not in answer.text
        assert_plain_words(answer.text.split("<Message>")[1])
    with psycopg.connect(database_url) as conn:
        outs = conn.execute(
            "select m.text from session_messages m join sessions s on s.id = m.session_id"
            " where s.user_ref = %s and m.direction = 'out'",
            (USER,),
        ).fetchall()
    assert len(outs) == 1 and outs[0][0].startswith("Sorry"), "the apology is on record"


def test_a_failed_spoken_reply_still_gives_the_text_reply(
    api: TestClient, llm: FakeOpenAI, peer: Peer
) -> None:
    peer.handlers["/v1/audio/speech"] = lambda body: (500, {"error": {"message": "tts down"}})
    llm.say("CREATE_INVOICE")
    response = api.post(
        "/intent-parser", json={"session_id": "tts", "text": "an invoice", "reply_audio": True}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "Who should the invoice be for?" and body["reply_audio"] is None


def test_every_command_slot_says_where_it_lands_in_the_params() -> None:
    """A refused value is traced back to its slot through ``Slot.param``; a slot without one
    (or with a path its params model does not have) would never be asked for again."""
    for tool in public_tools().values():
        for name, task in tool.tasks.items():
            for slot in task.command.slots if task.command else ():
                assert slot.param, f"{tool.service}.{name}: slot {slot.name} has no param"
                field = slot.param.split(".")[0]
                assert field in task.params.model_fields, f"{tool.service}.{name}: {slot.param}"


def test_what_a_user_says_is_never_evaluated_as_a_template(
    api: TestClient, llm: FakeOpenAI
) -> None:
    """A command's params come from the user's words: they reach the tool as written, never
    rendered ("{{ 6*7 }}" stays itself; a stray "{{" does not fail the command)."""
    for i, words in enumerate(("meet at {{ 6*7 }}", "curly {{ braces")):
        llm.say("SEND_WHATSAPP", to="+919876543210", message=words)
        turn = api.post("/intent-parser", json={"session_id": f"kiosk-{i}", "text": words})
        body = turn.json()
        assert body["status"] == "completed", body
        act = next(
            n for n in api.get(f"/runs/{body['run_id']}").json()["nodes"] if n["id"] == "act"
        )
        assert act["output"]["request"]["body"]["Body"] == words, act["output"]
