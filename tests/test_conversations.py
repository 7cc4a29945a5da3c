"""Conversations as WhatsApp and voice users have them: one per command, in English, Hindi and
Hinglish, through ``/whatsapp`` and ``/intent-parser`` against real Postgres.

The model (which reads each message and says which language it is in), Whisper and
text-to-speech are the local OpenAI-compatible server of ``test_channels``; Razorpay and Twilio
run for real with credentials, their HTTP mocked at the transport (``responses`` under the
Razorpay SDK, ``aioresponses`` under Twilio's asyncio client), so the ids and links in the
replies are Razorpay's answers. Each scenario checks that its replies state the facts (amounts,
recipients, which workflow) and none of the tool's internal description, and that they are
what the README's conversation table shows: that table is these tests' output
(``UPDATE_README=1 pytest tests/test_conversations.py`` rewrites it; otherwise a difference
fails the test).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import psycopg
import pytest
import responses
from aioresponses import CallbackResult, aioresponses
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.integrations import public_tools
from tests.support import REMINDER_INTENT, Peer, assert_plain_words
from tests.test_channels import FakeOpenAI, _settings, wav_bytes, whatsapp

API = "https://api.razorpay.com/v1"
TWILIO = "https://api.twilio.com/2010-04-01/Accounts/ACtest/Messages.json"
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
#: What Razorpay answers (path -> JSON): the ids and links the replies pass on.
RAZORPAY = {
    ("GET", "/payments/pay_29QQoUBi66xm2f"): PAYMENT,
    ("POST", "/payment_links"): {
        "id": "plink_Ng4qzK5gDxyJ6o",
        "short_url": "https://rzp.io/i/Xk7Lq2",
        "status": "created",
    },
    ("POST", "/invoices"): {
        "id": "inv_Ng4s1cWmJ7Yz0A",
        "short_url": "https://rzp.io/i/Bn8Pk3",
        "status": "issued",
    },
    ("POST", "/payments/pay_29QQoUBi66xm2f/refund"): {
        "id": "rfnd_Ng4tYt2ZQ7k3Jp",
        "entity": "refund",
        "payment_id": "pay_29QQoUBi66xm2f",
        "status": "processed",
    },
}


@dataclass
class Vendors:
    """What the tools sent: Razorpay requests ``(method, path, body)``, Twilio message forms."""

    razorpay: list[tuple[str, str, Any]] = field(default_factory=list)
    twilio: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def llm(peer: Peer) -> FakeOpenAI:
    return FakeOpenAI(peer)


@pytest.fixture
def vendors() -> Iterator[Vendors]:
    seen = Vendors()

    def razorpay(request: Any) -> tuple[int, dict[str, str], str]:
        import json

        path = request.path_url.split("?")[0].removeprefix("/v1")
        body = json.loads(request.body) if request.body else None
        seen.razorpay.append((request.method, path, body))
        return 200, {"content-type": "application/json"}, json.dumps(RAZORPAY[request.method, path])

    async def twilio(url: Any, **request: Any) -> CallbackResult:
        form = dict(request["data"])
        seen.twilio.append(form)
        sid = f"SM{len(seen.twilio):032d}"
        return CallbackResult(
            status=201, payload={"sid": sid, "status": "queued", "to": form["To"]}
        )

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, aioresponses() as aio:
        for method, path in RAZORPAY:
            mock.add_callback(method, f"{API}{path}", callback=razorpay)
        aio.post(TWILIO, callback=twilio, repeat=True)
        yield seen


def _app(database_url: str, llm: FakeOpenAI, **extra: Any) -> TestClient:
    settings = _settings(
        database_url,
        llm,
        tools={
            "razorpay": {"key_id": "rzp_test_key", "key_secret": "secret"},
            "twilio": {"account_sid": "ACtest", "whatsapp_from": "+14155238886"},
        },
        speech_voices={"hi": "hf_alpha"},
        **extra,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def api(database_url: str, llm: FakeOpenAI, vendors: Vendors) -> Iterator[TestClient]:
    with _app(database_url, llm) as client:
        yield client


# -- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """One message: what the user sends, how the model reads it (``FakeOpenAI.say``'s
    arguments; None: a control word, read without the model), what the reply must say."""

    text: str
    model: dict[str, Any] | None
    says: tuple[str, ...] = ()
    idle: bool = False  # wait until the session has timed out before sending it


@dataclass(frozen=True)
class Scenario:
    """A conversation of the README's table (``label`` is its first cell)."""

    id: str
    label: str
    turns: tuple[Say, ...]
    voice: bool = False
    timeout: float = 3600
    #: The WhatsApp messages the command itself sends through Twilio: (to, body).
    sends: tuple[tuple[str, str], ...] = ()


def _m(intent: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"intent": intent, **kw}


SCENARIOS = (
    Scenario(
        "payment_link",
        "Create a payment link (`CREATE_PAYMENT_LINK`)",
        (
            Say(
                "payment link for 1200 rupees for Asha Rao, send it to 98765 43210",
                _m(
                    "CREATE_PAYMENT_LINK",
                    amount="1200 INR",
                    customer_name="Asha Rao",
                    customer_phone="98765 43210",
                ),
                (
                    "Create a ₹1,200 payment link for Asha Rao and text it to +91 98765 43210?",
                    "Reply YES to confirm or NO to cancel.",
                ),
            ),
            Say(
                "yes",
                _m(confirmation="yes"),
                (
                    "Done — Asha Rao's payment link for ₹1,200 is ready.",
                    "Razorpay has texted it to +91 98765 43210.",
                    "\nhttps://rzp.io/i/Xk7Lq2",
                ),
            ),
        ),
    ),
    Scenario(
        "invoice",
        "Create and send an invoice (`CREATE_INVOICE`)",
        (
            Say(
                "invoice Acme Traders",
                _m("CREATE_INVOICE", customer_name="Acme Traders"),
                ("How much should the invoice be for?",),
            ),
            Say(
                "1.5 lakh for the March stock",
                _m("CREATE_INVOICE", amount="1.5 lakh INR", description="March stock"),
                ("Invoice Acme Traders for ₹1,50,000? It's for “March stock”.",),
            ),
            Say(
                "yes",
                _m(confirmation="yes"),
                (
                    "Done — Acme Traders has been invoiced ₹1,50,000.",
                    "\ninv_Ng4s1cWmJ7Yz0A: https://rzp.io/i/Bn8Pk3",
                ),
            ),
        ),
    ),
    Scenario(
        "refund",
        "Refund a payment (`REFUND_PAYMENT`)",
        (
            Say(
                "refund pay_29QQoUBi66xm2f",
                _m("REFUND_PAYMENT", payment_id="pay_29QQoUBi66xm2f"),
                (
                    "Refund the full ₹2,499 of payment pay_29QQoUBi66xm2f?",
                    "The money goes back to +91 98765 43210.",
                ),
            ),
            Say(
                "yes",
                _m(confirmation="yes"),
                (
                    "Done — I've refunded the full ₹2,499 of payment pay_29QQoUBi66xm2f;",
                    "\nRefund id: rfnd_Ng4tYt2ZQ7k3Jp",
                ),
            ),
        ),
    ),
    Scenario(
        "partial_refund",
        "Refund part of a payment (`REFUND_PAYMENT`)",
        (
            Say(
                "refund 500 of pay_29QQoUBi66xm2f",
                _m("REFUND_PAYMENT", payment_id="pay_29QQoUBi66xm2f", amount="500 INR"),
                ("Refund ₹500 of the ₹2,499 payment pay_29QQoUBi66xm2f?",),
            ),
            Say("no", _m(confirmation="no"), ("Okay, I won't go ahead with the refund of ₹500",)),
        ),
    ),
    Scenario(
        "whatsapp",
        "Send a WhatsApp message (`SEND_WHATSAPP`)",
        (
            Say(
                "tell +91 98123 45678 the shop opens at ten tomorrow",
                _m("SEND_WHATSAPP", to="+91 98123 45678", message="The shop opens at ten tomorrow"),
                ("Sent your WhatsApp message to +91 98123 45678.",),
            ),
        ),
        sends=(("whatsapp:+919812345678", "The shop opens at ten tomorrow"),),
    ),
    Scenario(
        "workflow",
        "Your intent workflow (`SEND_REMINDER`, “Remind unpaid customers”)",
        (
            Say("send a payment reminder", _m("SEND_REMINDER"), ("Whose number?",)),
            Say(
                "98765 43210",
                _m("SEND_REMINDER", phone="98765 43210"),
                ("Done — “Remind unpaid customers” has run with phone +91 98765 43210.",),
            ),
        ),
        sends=(("whatsapp:+919876543210", "A friendly reminder to pay."),),
    ),
    Scenario(
        "help",
        "Help",
        (
            Say(
                "help",
                None,
                (
                    "Here's what I can do:\n• Send a WhatsApp message\n• Create a payment link\n"
                    "• Create and send an invoice\n• Refund a payment\n"
                    "• Run “Remind unpaid customers”\nSay “bye” when you're done.",
                ),
            ),
        ),
    ),
    Scenario(
        "bye",
        "Ending the conversation",
        (
            Say("an invoice for Acme", _m("CREATE_INVOICE", customer_name="Acme"), ("How much",)),
            Say(
                "bye",
                None,
                (
                    "Bye! I've dropped the invoice for Acme and closed our conversation — "
                    "message me any time to start again.",
                ),
            ),
        ),
    ),
    Scenario(
        "continue",
        "A request left when the conversation timed out",
        (
            Say(
                "payment link for 1200",
                _m("CREATE_PAYMENT_LINK", amount="1200 INR"),
                ("Create a payment link for ₹1,200?",),
            ),
            Say(
                "hello again",
                _m(),
                (
                    "Unfinished from earlier: the payment link for ₹1,200. Say “continue” to "
                    "pick it up.",
                ),
                idle=True,
            ),
            Say(
                "continue",
                None,
                ("Picking up where we left off.\nCreate a payment link for ₹1,200?",),
            ),
            Say("yes", _m(confirmation="yes"), ("https://rzp.io/i/Xk7Lq2",)),
        ),
        timeout=1.5,
    ),
    Scenario(
        "hindi",
        "Hindi (`CREATE_PAYMENT_LINK`)",
        (
            Say(
                "आशा राव के लिए 1.2 लाख का पेमेंट लिंक बनाओ",
                _m(
                    "CREATE_PAYMENT_LINK",
                    amount="1.2 लाख",
                    customer_name="आशा राव",
                    language="hi",
                ),
                (
                    "आशा राव के लिए ₹1,20,000 का पेमेंट लिंक बना दूँ?",
                    "पक्का करने के लिए YES (हाँ), रद्द करने के लिए NO (ना) लिखिए।",
                ),
            ),
            Say(
                "हाँ",
                _m(confirmation="yes", language="hi"),
                (
                    "हो गया — आशा राव के लिए ₹1,20,000 का पेमेंट लिंक तैयार है।",
                    "\nhttps://rzp.io/i/Xk7Lq2",
                ),
            ),
            Say("अलविदा", None, ("अलविदा! बातचीत बंद कर दी है",)),
        ),
    ),
    Scenario(
        "hinglish",
        "Hinglish (`CREATE_INVOICE`)",
        (
            Say(
                "Acme Traders ke liye 5000 ka invoice banao",
                _m(
                    "CREATE_INVOICE",
                    customer_name="Acme Traders",
                    amount="5000 INR",
                    language="hi-Latn",
                ),
                (
                    "Acme Traders ke naam ₹5,000 ka invoice bana doon?",
                    "Confirm karne ke liye YES (haan), cancel karne ke liye NO (na) likhiye.",
                ),
            ),
            Say(
                "haan",
                _m(confirmation="yes", language="hi-Latn"),
                ("Ho gaya — Acme Traders ke naam ₹5,000 ka invoice jaari ho gaya hai.",),
            ),
        ),
    ),
    Scenario(
        "french",
        "A language without a catalog (French)",
        (
            Say(
                "un lien de paiement de 1200 roupies",
                _m("CREATE_PAYMENT_LINK", amount="1200 INR", language="fr"),
                (
                    "Sorry, I can't reply in French yet, so I'll answer in English.\n\n"
                    "Create a payment link for ₹1,200?",
                ),
            ),
            Say("oui", _m(confirmation="yes", language="fr"), ("Done — the payment link",)),
        ),
    ),
    Scenario(
        "voice_hindi",
        "Voice, Hindi (`/intent-parser`)",
        (
            Say(
                "1200 रुपये का पेमेंट लिंक बनाओ",
                _m("CREATE_PAYMENT_LINK", amount="1200 INR", language="hi"),
                ("₹1,200 का पेमेंट लिंक बना दूँ? पक्का करने के लिए हाँ, रद्द करने के लिए ना कहिए।",),
            ),
            Say(
                "हाँ",
                _m(confirmation="yes", language="hi"),
                ("हो गया — ₹1,200 का पेमेंट लिंक तैयार है।\nhttps://rzp.io/i/Xk7Lq2",),
            ),
        ),
        voice=True,
    ),
)


@dataclass
class Exchange:
    """One message and its answer as sent (and, on voice, as spoken)."""

    user: str
    reply: str
    spoken: str | None = None


def _sent(response: Any) -> str:
    """The text of the TwiML message a WhatsApp webhook answered with."""
    assert response.status_code == 200, response.text
    message = ElementTree.fromstring(response.text).find("Message")
    assert message is not None and message.text, response.text
    return message.text


def _wait_closed(database_url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("select count(*) from sessions where status = 'open'").fetchone()
        if row == (0,):
            return
        time.sleep(0.1)
    raise AssertionError("the session did not time out")


def _converse(
    api: TestClient, llm: FakeOpenAI, database_url: str, scenario: Scenario, peer: Peer
) -> list[Exchange]:
    exchanges: list[Exchange] = []
    for n, turn in enumerate(scenario.turns):
        if turn.idle:
            _wait_closed(database_url)
        if turn.model is not None:
            llm.say(**turn.model)
        if scenario.voice:
            llm.transcripts.append(turn.text)
            response = api.post(
                "/intent-parser",
                data={"session_id": "kiosk-hi", "reply_audio": "true"},
                files={"audio_file": ("said.wav", wav_bytes(0.2), "audio/wav")},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            exchanges.append(Exchange(turn.text, body["reply"], body["reply_audio"]["text"]))
        else:
            exchanges.append(Exchange(turn.text, _sent(whatsapp(api, turn.text, f"SM{n}"))))
        for fact in turn.says:
            assert fact in exchanges[-1].reply, (fact, exchanges[-1].reply)
    assert not llm.extractions, "every scripted reading was used"
    return exchanges


#: Words only the tools' internals use: a reply that contains them was not written for people.
def _internal_descriptions() -> list[str]:
    found = []
    for tool in public_tools().values():
        found.append(tool.description)
        for task in tool.tasks.values():
            found.append(task.description)
            if task.command is not None:
                found.append(task.command.description)
    return found


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_conversation(
    scenario: Scenario,
    database_url: str,
    llm: FakeOpenAI,
    vendors: Vendors,
    peer: Peer,
) -> None:
    """The scenario's replies state its facts in the user's language, in plain words, without
    the tools' descriptions, and are what the README shows."""
    with _app(database_url, llm, session_timeout_seconds=scenario.timeout) as api:
        wf = api.post("/workflows", json={"blueprint": REMINDER_INTENT}).json()
        assert api.post(f"/workflows/{wf['id']}/activate").status_code == 200
        exchanges = _converse(api, llm, database_url, scenario, peer)
    assert [(m["To"], m["Body"]) for m in vendors.twilio] == list(scenario.sends)
    internal = _internal_descriptions()
    for exchange in exchanges:
        assert not [d for d in internal if d in exchange.reply], exchange.reply
        assert_plain_words(re.sub(r"https://\S+", "", exchange.reply))
    _check_readme(scenario, exchanges)


# -- what the tools were asked to do -------------------------------------------------------


def test_a_payment_link_for_a_customer_is_texted_to_them(
    api: TestClient, llm: FakeOpenAI, vendors: Vendors
) -> None:
    """Saying "text it to +91 98765 43210" is true: Razorpay is asked to send the SMS."""
    llm.say("CREATE_PAYMENT_LINK", amount="1200 INR", customer_phone="98765 43210")
    whatsapp(api, "payment link for 1200 to 98765 43210", "SMp1")
    llm.say(None, confirmation="yes")
    whatsapp(api, "yes", "SMp2")
    [(method, path, body)] = vendors.razorpay
    assert (method, path) == ("POST", "/payment_links")
    assert body["amount"] == 120000 and body["currency"] == "INR"
    assert body["customer"] == {"contact": "+919876543210"}
    assert body["notify"] == {"sms": True, "email": False}


def test_a_full_refund_states_the_amount_the_lookup_found_and_refunds_it_all(
    api: TestClient, llm: FakeOpenAI, vendors: Vendors
) -> None:
    llm.say("REFUND_PAYMENT", payment_id="pay_29QQoUBi66xm2f")
    asked = api.post("/intent-parser", json={"session_id": "r", "text": "refund it"}).json()
    assert asked["reply"].startswith("Refund the full ₹2,499 of payment pay_29QQoUBi66xm2f?")
    runs = api.get("/runs", params={"trace_id": asked["trace_id"]}).json()["runs"]
    assert len(runs) == 1, "the lookup is a run in the command's trace"
    llm.say(None, confirmation="yes")
    done = api.post("/intent-parser", json={"session_id": "r", "text": "yes"}).json()
    assert done["status"] == "completed", done
    assert [(m, p) for m, p, _ in vendors.razorpay] == [
        ("GET", "/payments/pay_29QQoUBi66xm2f"),
        ("POST", "/payments/pay_29QQoUBi66xm2f/refund"),
    ]
    assert "amount" not in (vendors.razorpay[1][2] or {}), "a full refund names no amount"


def test_a_payment_razorpay_does_not_know_is_asked_for_again(
    database_url: str, llm: FakeOpenAI
) -> None:
    with responses.RequestsMock() as mock, _app(database_url, llm) as api:
        mock.add(
            "GET",
            f"{API}/payments/pay_Missing000001",
            status=400,
            json={"error": {"code": "BAD_REQUEST_ERROR", "description": "does not exist"}},
        )
        llm.say("REFUND_PAYMENT", payment_id="pay_Missing000001")
        body = api.post("/intent-parser", json={"session_id": "m", "text": "refund"}).json()
    assert body["status"] == "needs_input" and body["analysis"]["missing_slots"] == ["payment_id"]
    assert body["reply"] == (
        "I couldn't find that payment on Razorpay. Which payment should I refund (pay_…)?"
    )


# -- sessions ------------------------------------------------------------------------------


def _session(api: TestClient, session_id: str, until: str = "summary") -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        session: dict[str, Any] = api.get(f"/sessions/{session_id}").json()
        if session[until] or time.monotonic() > deadline:
            return session
        time.sleep(0.05)


@pytest.mark.parametrize("word", ["bye", "STOP!", "end", "अलविदा", "बस", "khatam"])
def test_saying_goodbye_closes_the_session_and_stores_its_summary_at_once(
    api: TestClient, llm: FakeOpenAI, database_url: str, word: str
) -> None:
    llm.say("CREATE_INVOICE", customer_name="Acme")
    first = api.post("/intent-parser", json={"session_id": "k", "text": "invoice Acme"}).json()
    bye = api.post("/intent-parser", json={"session_id": "k", "text": word}).json()
    assert bye["session_id"] == first["session_id"] and bye["status"] == "no_action"
    assert len(llm.prompts) == 1, "a goodbye is understood without the model"
    session = _session(api, bye["session_id"])
    assert session["status"] == "closed" and session["pending"] is None
    assert session["summary"] == "The user asked for an invoice for Acme; it was created."
    assert llm.summaries == 1
    assert session["messages"][-1]["text"].startswith("Bye! I've dropped the invoice for Acme")
    llm.say(None)
    after = api.post("/intent-parser", json={"session_id": "k", "text": "hello"}).json()
    assert after["session_id"] != bye["session_id"], "the next message starts a new session"
    assert "Unfinished" not in after["reply"], "a request the user walked away from stays gone"
    query = (
        "select r.status from workflow_runs r join workflows w on w.id = r.workflow_id"
        " where w.origin = 'system' and w.name = 'system: session summary'"
    )
    deadline = time.monotonic() + 15
    while True:
        with psycopg.connect(database_url) as conn:
            runs = conn.execute(query).fetchall()
        if runs == [("succeeded",)] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert runs == [("succeeded",)], "the summary is a run on the engine"


def test_a_hindi_goodbye_is_answered_in_hindi(api: TestClient, llm: FakeOpenAI) -> None:
    bye = api.post("/intent-parser", json={"session_id": "h", "text": "अलविदा"}).json()
    assert bye["reply"].startswith("अलविदा! बातचीत बंद कर दी है")
    assert bye["analysis"]["language"] == "hi"


def test_a_request_pending_at_timeout_is_mentioned_once_and_continue_restores_it(
    database_url: str, llm: FakeOpenAI, vendors: Vendors
) -> None:
    with _app(database_url, llm, session_timeout_seconds=2) as api:
        llm.say("CREATE_INVOICE", customer_name="Acme", amount="5000 INR", language="hi-Latn")
        first = api.post("/intent-parser", json={"session_id": "t", "text": "Acme 5000 invoice"})
        assert first.json()["reply"].startswith("Acme ke naam ₹5,000 ka invoice bana doon?")
        closed = _session(api, first.json()["session_id"])
        assert closed["status"] == "closed" and closed["pending"]["intent"] == "CREATE_INVOICE"

        llm.say(None, language="hi-Latn")
        note = api.post("/intent-parser", json={"session_id": "t", "text": "kya haal hai"}).json()
        assert note["session_id"] != closed["id"]
        assert note["reply"].endswith(
            "Pichhli baar adhoora reh gaya: Acme ke naam ₹5,000 ka invoice. Ise aage badhane ke"
            " liye “continue” boliye."
        )
        llm.say(None, language="hi-Latn")
        again = api.post("/intent-parser", json={"session_id": "t", "text": "theek"}).json()
        assert "adhoora" not in again["reply"], "mentioned once"

        resumed = api.post("/intent-parser", json={"session_id": "t", "text": "continue"}).json()
        assert resumed["reply"].startswith(
            "Jahan chhoda tha, wahin se aage badhte hain.\nAcme ke naam ₹5,000 ka invoice bana"
        )
        assert resumed["trace_id"] == first.json()["trace_id"], "the same request"
        llm.say(None, confirmation="yes", language="hi-Latn")
        done = api.post("/intent-parser", json={"session_id": "t", "text": "haan"}).json()
        assert done["status"] == "completed", done
    assert [p for _, p, _ in vendors.razorpay] == ["/invoices"]


def test_an_unsupported_language_is_answered_in_english_saying_so_once(
    api: TestClient, llm: FakeOpenAI
) -> None:
    llm.say("CREATE_INVOICE", language="ta")
    first = api.post("/intent-parser", json={"session_id": "ta", "text": "விலைப்பட்டியல்"}).json()
    assert first["reply"] == (
        "Sorry, I can't reply in Tamil yet, so I'll answer in English.\n\n"
        "Who should the invoice be for?"
    )
    llm.say("CREATE_INVOICE", customer_name="Acme", language="ta")
    second = api.post("/intent-parser", json={"session_id": "ta", "text": "Acme"}).json()
    assert second["reply"] == "How much should the invoice be for?"


def test_help_lists_the_users_own_workflows_by_their_display_names(
    api: TestClient, llm: FakeOpenAI
) -> None:
    blueprint = {**REMINDER_INTENT, "name": "GST reminder for ACME Ltd"}
    wf = api.post("/workflows", json={"blueprint": blueprint}).json()
    assert api.post(f"/workflows/{wf['id']}/activate").status_code == 200
    llm.say(None, language="hi")
    body = api.post("/intent-parser", json={"session_id": "h", "text": "नमस्ते"}).json()
    assert body["reply"].startswith("माफ़ कीजिए, मैं समझ नहीं पाया कि आपको क्या चाहिए।")
    assert "• “GST reminder for ACME Ltd” चलाना\n" in body["reply"]
    assert body["reply"].endswith("काम पूरा हो जाए तो “अलविदा” कहिए।")


# -- voice ---------------------------------------------------------------------------------


def test_a_spoken_reply_reads_amounts_as_words_in_the_users_language_and_voice(
    api: TestClient, llm: FakeOpenAI, peer: Peer
) -> None:
    llm.say("CREATE_PAYMENT_LINK", amount="1.2 lakh INR", language="hi")
    body = api.post(
        "/intent-parser",
        json={"session_id": "v", "text": "1.2 लाख का पेमेंट लिंक", "reply_audio": True},
    ).json()
    assert body["reply"].startswith("₹1,20,000 का पेमेंट लिंक बना दूँ?")
    spoken = body["reply_audio"]["text"]
    assert spoken == (
        "एक लाख बीस हज़ार रुपये का पेमेंट लिंक बना दूँ? पक्का करने के लिए हाँ, रद्द करने के लिए ना कहिए।"
    )
    [speech] = peer.bodies["/v1/audio/speech"]
    assert speech["input"] == spoken and speech["voice"] == "hf_alpha"
    assert body["reply_audio"]["voice"] == "hf_alpha"

    llm.say("CREATE_PAYMENT_LINK", amount="1200 INR", customer_phone="98765 43210")
    english = api.post(
        "/intent-parser",
        json={"session_id": "e", "text": "link for 1200 to 98765 43210", "reply_audio": True},
    ).json()
    said = english["reply_audio"]["text"]
    assert "one thousand two hundred rupees" in said and "₹" not in said
    assert "plus nine one, nine eight seven six five, four three two one zero" in said
    assert said.endswith("Say yes to confirm or no to cancel."), "how to answer is always said"
    assert peer.bodies["/v1/audio/speech"][1]["voice"] == "alloy", "SPEECH_VOICE for English"


def test_a_long_spoken_reply_says_the_rest_is_in_the_chat(api: TestClient, llm: FakeOpenAI) -> None:
    wf = api.post("/workflows", json={"blueprint": REMINDER_INTENT}).json()
    assert api.post(f"/workflows/{wf['id']}/activate").status_code == 200
    body = api.post(
        "/intent-parser", json={"session_id": "v", "text": "help", "reply_audio": True}
    ).json()
    spoken = body["reply_audio"]["text"]
    assert len(body["reply"].split()) > 30
    assert len(spoken.split()) <= 36 and spoken.endswith("The rest is in the chat.")
    assert "•" not in spoken


def test_a_spoken_result_leaves_the_link_to_the_chat(
    api: TestClient, llm: FakeOpenAI, vendors: Vendors
) -> None:
    llm.say("CREATE_PAYMENT_LINK", amount="1200 INR")
    api.post("/intent-parser", json={"session_id": "l", "text": "link for 1200"})
    llm.say(None, confirmation="yes")
    body = api.post(
        "/intent-parser", json={"session_id": "l", "text": "yes", "reply_audio": True}
    ).json()
    assert body["reply"].endswith("\nhttps://rzp.io/i/Xk7Lq2")
    assert body["reply_audio"]["text"] == (
        "Done — the payment link for one thousand two hundred rupees is ready. The rest is in the"
        " chat."
    )


# -- the README's table --------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- conversations:begin (tests/test_conversations.py writes this table) -->"
END = "<!-- conversations:end -->"
HEAD = ["| conversation | the user sends | the assistant answers, as sent |", "|---|---|---|"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _rows(scenario: Scenario, exchanges: list[Exchange]) -> list[str]:
    rows = []
    for n, exchange in enumerate(exchanges):
        said = _cell(exchange.reply)
        if exchange.spoken is not None:
            said += f"<br>🔊 *{_cell(exchange.spoken)}*"
        label = scenario.label if n == 0 else ""
        user = ("🎤 " if scenario.voice else "") + _cell(exchange.user)
        rows.append(f"| {label} | {user} | {said} |")
    return rows


def _table(readme: str) -> dict[str, list[str]]:
    """The README table's rows, grouped by conversation (a row with a label starts one)."""
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    groups: dict[str, list[str]] = {}
    label = ""
    for row in block.strip().splitlines()[len(HEAD) :]:
        first = row.split(" | ", 1)[0].removeprefix("| ").strip()
        if first:
            label = first
        groups.setdefault(label, []).append(row)
    return groups


def _check_readme(scenario: Scenario, exchanges: list[Exchange]) -> None:
    readme = README.read_text()
    assert BEGIN in readme and END in readme, f"README.md lacks {BEGIN}"
    rows = _rows(scenario, exchanges)
    groups = _table(readme)
    if os.environ.get("UPDATE_README"):
        groups[scenario.label] = rows
        order = [s.label for s in SCENARIOS]
        table = [*HEAD, *(r for label in order if label in groups for r in groups[label])]
        before, rest = readme.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        README.write_text(f"{before}{BEGIN}\n" + "\n".join(table) + f"\n{END}{after}")
        return
    assert groups.get(scenario.label) == rows, (
        "README.md's conversation table differs from what the assistant said; run "
        "UPDATE_README=1 pytest tests/test_conversations.py to write it\n" + "\n".join(rows)
    )


def test_a_voice_note_that_cannot_be_fetched_is_apologised_for_in_the_users_language(
    api: TestClient, llm: FakeOpenAI, peer: Peer
) -> None:
    llm.say("CREATE_INVOICE", language="hi")
    assert "इनवॉइस किसके नाम बनाऊँ?" in _sent(whatsapp(api, "इनवॉइस बनाओ", "SMv1"))
    peer.handlers["/media/gone"] = lambda body: (404, {"message": "not found"})
    answer = whatsapp(
        api,
        "",
        "SMv2",
        NumMedia="1",
        MediaUrl0=f"{peer.url}/media/gone",
        MediaContentType0="audio/ogg",
    )
    assert _sent(answer).startswith("माफ़ कीजिए, आपका वॉइस नोट डाउनलोड नहीं हो पाया")
