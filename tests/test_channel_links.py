"""Channels with identity, through the API with Supabase Auth configured: a WhatsApp number acts
for a user only after the user linked it with a one-time code sent from it; unlinked senders
are told how to link (rarely) and nothing runs; sessions belong to their owner.

Twilio webhooks are signed with the SDK's ``RequestValidator`` (``test_channels.whatsapp``); the
model is the local OpenAI-compatible peer (``test_channels.FakeOpenAI``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import ALICE, BOB
from tests.support import JWT_SECRET, REMINDER_INTENT, as_user, assert_plain_words
from tests.test_channels import USER, FakeOpenAI, _settings, count, whatsapp

NUMBER = USER.removeprefix("whatsapp:")  # +919876543210
STRANGER = "whatsapp:+14155550123"


@pytest.fixture
def llm(peer: Any) -> FakeOpenAI:
    return FakeOpenAI(peer)


@pytest.fixture
def api(database_url: str, llm: FakeOpenAI) -> Iterator[TestClient]:
    """WhatsApp and the model configured, and Supabase Auth: requests need a token."""
    settings = _settings(
        database_url,
        llm,
        supabase_jwt_secret=JWT_SECRET,
        tools={"twilio": {"whatsapp_from": "+14155238886"}},
    )
    with TestClient(create_app(settings)) as client:
        yield client


def ask_code(api: TestClient, user: str, number: str = NUMBER) -> str:
    response = api.post("/me/channels/whatsapp", json={"number": number}, headers=as_user(user))
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


def linked(api: TestClient, user: str) -> list[str]:
    me = api.get("/me", headers=as_user(user))
    assert me.status_code == 200, me.text
    return [c["number"] for c in me.json()["channels"]]


def reply(response: Any) -> str:
    """The text of a TwiML answer ('' when it has no message)."""
    assert response.status_code == 200, response.text
    found = re.search(r"<Message>(.*)</Message>", response.text, re.S)
    return found.group(1) if found else ""


def link(api: TestClient, user: str, sender: str = USER) -> None:
    code = ask_code(api, user, sender.removeprefix("whatsapp:"))
    answer = reply(whatsapp(api, f"link {code}", f"SMlink-{user}-{code}", From=sender))
    assert answer.startswith("Linked"), answer


def test_linking_by_code_end_to_end(api: TestClient, database_url: str) -> None:
    api.patch("/me", json={"display_name": "Asha"}, headers=as_user(ALICE))
    response = api.post(
        "/me/channels/whatsapp", json={"number": "098765 43210"}, headers=as_user(ALICE)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    code = body["code"]
    assert re.fullmatch(r"\d{6}", code)
    assert body["number"] == NUMBER and body["text"] == f"link {code}"
    assert body["send_to"] == "+14155238886" and body["channel"] == "whatsapp"
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select * from channel_link_codes").fetchall()
        [(ttl,)] = conn.execute(
            "select extract(epoch from expires_at - now()) from channel_link_codes"
        ).fetchall()
    assert len(rows) == 1 and code not in json.dumps(rows, default=str), "stored hashed"
    assert 590 < ttl <= 600
    assert linked(api, ALICE) == []

    answer = reply(whatsapp(api, f"Link {code[:3]} {code[3:]}", "SM1"))
    assert answer == "Linked: this number now acts for Asha. Tell me what you need."
    me = api.get("/me", headers=as_user(ALICE)).json()
    assert [(c["channel"], c["number"]) for c in me["channels"]] == [("whatsapp", NUMBER)]
    assert linked(api, BOB) == []
    assert count(database_url, "channel_link_codes") == 0, "a code works once"
    assert count(database_url, "sessions") == 0, "linking is not a conversation"

    again = api.post("/me/channels/whatsapp", json={"number": NUMBER}, headers=as_user(ALICE))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_linked"


def test_asking_for_a_code_checks_the_number(api: TestClient) -> None:
    bad = api.post("/me/channels/whatsapp", json={"number": "12"}, headers=as_user(ALICE))
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["body", "number"]
    none = api.post("/me/channels/whatsapp", headers=as_user(ALICE))
    assert none.status_code == 422, "no number and no profile phone"
    api.patch("/me", json={"phone": "+91 98765 43210"}, headers=as_user(ALICE))
    mine = api.post("/me/channels/whatsapp", json={}, headers=as_user(ALICE))
    assert mine.status_code == 201 and mine.json()["number"] == NUMBER
    assert api.post("/me/channels/whatsapp", json={"number": NUMBER}).status_code == 401


def test_wrong_expired_reused_and_misdirected_codes_link_nothing(
    api: TestClient, database_url: str
) -> None:
    code = ask_code(api, ALICE)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answer = reply(whatsapp(api, f"link {wrong}", "SMw"))
    assert answer == "That code doesn't match. Check it and send it again (4 tries left)."

    from_elsewhere = reply(whatsapp(api, f"link {code}", "SMo", From=STRANGER))
    assert from_elsewhere.startswith("There's no link code waiting for this number")
    assert linked(api, ALICE) == []

    with psycopg.connect(database_url) as conn:
        conn.execute("update channel_link_codes set expires_at = now() - interval '1 second'")
    expired = reply(whatsapp(api, f"link {code}", "SMe"))
    assert expired.startswith("There's no link code waiting for this number")
    assert linked(api, ALICE) == []

    code = ask_code(api, ALICE)
    assert reply(whatsapp(api, f"link {code}", "SMok")).startswith("Linked")
    assert api.delete(f"/me/channels/whatsapp/{NUMBER}", headers=as_user(ALICE)).status_code == 204
    reused = reply(whatsapp(api, f"link {code}", "SMreuse"))
    assert reused == "", "no code waiting, and this sender was told how to link within the hour"
    assert linked(api, ALICE) == []


def test_guessing_a_code_is_bounded(api: TestClient) -> None:
    code = ask_code(api, ALICE)
    guesses = [f"{(int(code) + n) % 10**6:06d}" for n in range(1, 6)]
    answers = [reply(whatsapp(api, f"link {g}", f"SMg{n}")) for n, g in enumerate(guesses)]
    assert answers[0].endswith("(4 tries left).") and answers[3].endswith("(1 try left).")
    assert "last try" in answers[4]
    for answer in answers:
        assert_plain_words(answer)
    right = reply(whatsapp(api, f"link {code}", "SMright"))
    assert right.startswith("There's no link code waiting"), "the code stopped working"
    assert reply(whatsapp(api, f"link {code}", "SMright2")) == "", "and that is said once"
    assert linked(api, ALICE) == []


def test_an_unlinked_sender_cannot_refund(
    api: TestClient, llm: FakeOpenAI, database_url: str
) -> None:
    """The issue's finding: two correctly signed messages from an unknown number, "refund
    pay_…" then "yes", refunded a payment. Now the first gets one line on how to link, the
    second nothing; the model is never asked and nothing is stored in anyone's session."""
    llm.say("REFUND_PAYMENT", payment_id="pay_29QQoUBi66xm2f")
    llm.say(None, confirmation="yes")
    first = reply(whatsapp(api, "refund pay_29QQoUBi66xm2f", "SMr1", From=STRANGER))
    second = reply(whatsapp(api, "yes", "SMr2", From=STRANGER))
    assert first.startswith("This number isn't linked to an account yet") and "link" in first
    assert_plain_words(first)
    assert second == "", "told once per hour, not at every message"
    assert llm.prompts == [], "nothing was read, so nothing could run"
    assert count(database_url, "workflow_runs") == 0
    assert count(database_url, "sessions") == 0 and count(database_url, "session_messages") == 0

    with psycopg.connect(database_url) as conn:  # an hour later, they are told again
        conn.execute("update channel_hints set hinted_at = now() - interval '61 minutes'")
    assert reply(whatsapp(api, "hello?", "SMr3", From=STRANGER)).startswith("This number isn't")


def activate(api: TestClient, user: str, intent: str) -> str:
    blueprint = json.loads(json.dumps(REMINDER_INTENT).replace("SEND_REMINDER", intent))
    created = api.post("/workflows", json={"blueprint": blueprint}, headers=as_user(user))
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["id"]
    activated = api.post(f"/workflows/{workflow_id}/activate", headers=as_user(user))
    assert activated.status_code == 200, activated.text
    return workflow_id


def test_a_linked_sender_acts_as_their_user_until_unlinked(
    api: TestClient, llm: FakeOpenAI, database_url: str
) -> None:
    alices = activate(api, ALICE, "SEND_REMINDER")
    activate(api, BOB, "CHASE_BOB_INVOICES")
    link(api, ALICE)

    llm.say("SEND_REMINDER")
    assert reply(whatsapp(api, "send a reminder", "SMa1")) == "Whose number?"
    catalog = llm.prompts[-1]
    assert "SEND_REMINDER" in catalog and "CHASE_BOB_INVOICES" not in catalog, "her catalog"
    llm.say("SEND_REMINDER", phone="9876500000")
    whatsapp(api, "9876500000", "SMa2")

    with psycopg.connect(database_url) as conn:
        [(trace_id,)] = conn.execute(
            "select trace_id from session_messages where provider_message_id = 'SMa2'"
        ).fetchall()
    [run] = api.get("/runs", params={"trace_id": trace_id}, headers=as_user(ALICE)).json()["runs"]
    assert run["workflow_id"] == alices
    assert api.get(f"/runs/{run['id']}", headers=as_user(BOB)).status_code == 404
    assert (
        api.get("/runs", params={"trace_id": trace_id}, headers=as_user(BOB)).json()["runs"] == []
    )
    [session] = api.get("/sessions", headers=as_user(ALICE)).json()["sessions"]
    assert session["channel"] == "whatsapp" and session["user_ref"] == USER
    assert api.get("/sessions", headers=as_user(BOB)).json()["sessions"] == []

    assert api.delete(f"/me/channels/whatsapp/{NUMBER}", headers=as_user(BOB)).status_code == 404
    assert api.delete(f"/me/channels/whatsapp/{NUMBER}", headers=as_user(ALICE)).status_code == 204
    assert linked(api, ALICE) == []
    prompts = len(llm.prompts)
    after = reply(whatsapp(api, "send a reminder", "SMa3"))
    assert after.startswith("This number isn't linked"), after
    assert len(llm.prompts) == prompts, "unlinked: nothing is read or run"


def test_one_number_belongs_to_one_user(api: TestClient) -> None:
    link(api, ALICE)
    bobs = ask_code(api, BOB)  # asking never says whether someone else has the number
    taken = reply(whatsapp(api, f"link {bobs}", "SMb1"))
    assert taken.startswith("This number is linked to another account. Unlink it there first")
    assert linked(api, ALICE) == [NUMBER] and linked(api, BOB) == []
    api.delete(f"/me/channels/whatsapp/{NUMBER}", headers=as_user(ALICE))
    assert reply(whatsapp(api, f"link {bobs}", "SMb2")).startswith("Linked")
    assert linked(api, BOB) == [NUMBER] and linked(api, ALICE) == []


def test_another_users_session_id_is_a_fresh_session_of_yours(
    api: TestClient, llm: FakeOpenAI
) -> None:
    llm.say("CREATE_INVOICE")
    alice = api.post(
        "/intent-parser",
        json={"session_id": "kiosk", "text": "create an invoice"},
        headers=as_user(ALICE),
    ).json()
    assert alice["status"] == "needs_input"
    llm.say(None, customer_name="Acme", amount="5000 INR")
    bob = api.post(
        "/intent-parser",
        json={"session_id": "kiosk", "text": "Acme, 5000 rupees"},
        headers=as_user(BOB),
    ).json()
    assert bob["session_id"] != alice["session_id"]
    assert bob["status"] == "no_action", "Alice's pending invoice is not Bob's to finish"
    assert api.get(f"/sessions/{alice['session_id']}", headers=as_user(BOB)).status_code == 404

    [mine] = api.get("/sessions", headers=as_user(ALICE)).json()["sessions"]
    assert mine["id"] == alice["session_id"] and mine["user_ref"] == "kiosk"
    assert mine["pending_intent"] == "CREATE_INVOICE" and mine["awaiting"] == "slots"
    assert mine["last_message"]["direction"] == "out"
    assert mine["last_message"]["text"] == "Who should the invoice be for?"
    [his] = api.get("/sessions", headers=as_user(BOB)).json()["sessions"]
    assert his["id"] == bob["session_id"] and his["pending_intent"] is None


def test_sessions_are_listed_latest_activity_first_a_page_at_a_time(
    api: TestClient, llm: FakeOpenAI
) -> None:
    for name in ("first", "second", "third", "first"):
        llm.say(None)
        api.post("/intent-parser", json={"session_id": name, "text": "hi"}, headers=as_user(ALICE))
    page = api.get("/sessions", params={"limit": 2}, headers=as_user(ALICE)).json()
    assert [s["user_ref"] for s in page["sessions"]] == ["first", "third"]
    assert page["next_cursor"]
    rest = api.get(
        "/sessions", params={"limit": 2, "cursor": page["next_cursor"]}, headers=as_user(ALICE)
    ).json()
    assert [s["user_ref"] for s in rest["sessions"]] == ["second"]
    assert rest["next_cursor"] is None
    bad = api.get("/sessions", params={"cursor": "nope"}, headers=as_user(ALICE))
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["query", "cursor"]
