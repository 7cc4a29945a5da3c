"""WhatsApp (Twilio webhook) and /intent-parser through the API, against real Postgres.

The language model, Whisper and text-to-speech are a local OpenAI-compatible server (the test
peer on 127.0.0.1) reached over real HTTP by the real LangChain/openai code; Twilio requests are
signed with the SDK's own ``RequestValidator.compute_signature``; voice notes are real WAV audio
made here with the standard library.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import struct
import time
import wave
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from aioresponses import CallbackResult, aioresponses
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from blueprint_engine.app import create_app
from blueprint_engine.store.runs import TERMINAL
from tests.conftest import make_settings, merged_tools
from tests.support import REMINDER_INTENT, Peer, Reader, chat_completion

PUBLIC = "https://bot.example.com"
TOKEN = "twilio-auth-token"
USER = "whatsapp:+919876543210"


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A real mono 16-bit PCM WAV: a 440 Hz tone."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / rate)))
            for i in range(int(seconds * rate))
        )
        out.writeframes(frames)
    return buffer.getvalue()


class FakeOpenAI:
    """Chat completions (scripted structured extractions, or a summary), transcription and
    speech, served by the peer under /v1."""

    def __init__(self, peer: Peer) -> None:
        self.extractions: list[dict[str, Any]] = []
        self.transcripts: list[str] = []
        self.uploads: list[bytes] = []
        self.summaries = 0
        self.prompts: list[str] = []
        peer.handlers["/v1/chat/completions"] = self._chat
        peer.handlers["/v1/audio/transcriptions"] = self._transcribe
        peer.handlers["/v1/audio/speech"] = lambda body: (200, b"ID3-fake-mp3")
        self.url = f"{peer.url}/v1"

    def say(
        self,
        intent: str | None = None,
        *,
        confirmation: str | None = None,
        cancel: bool = False,
        language: str = "en",
        **entities: str,
    ) -> None:
        """Script the model's reading of the next message (``language``: the BCP 47 tag it
        detects)."""
        self.extractions.append(
            {
                "intent": intent,
                "confidence": 0.9,
                "cancel": cancel,
                "confirmation": confirmation,
                "language": language,
                "entities": [{"name": k, "value": v} for k, v in entities.items()],
            }
        )

    def _chat(self, body: Any) -> tuple[int, Any]:
        if "response_format" in body:
            self.prompts.append(body["messages"][0]["content"])
            content = json.dumps(self.extractions.pop(0))
        else:
            self.summaries += 1
            content = "The user asked for an invoice for Acme; it was created."
        return 200, chat_completion(content)

    def _transcribe(self, body: Any) -> tuple[int, Any]:
        assert isinstance(body, bytes)
        self.uploads.append(body)
        return 200, {"text": self.transcripts.pop(0)}


@pytest.fixture
def llm(peer: Peer) -> FakeOpenAI:
    return FakeOpenAI(peer)


def _settings(database_url: str, llm: FakeOpenAI, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "openai_base_url": llm.url,
        "openai_api_key": "sk-test",
        "llm_backoff_seconds": 0,
        "public_base_url": PUBLIC,
        "allow_open_access": True,  # local mode (no identity) behind a public URL, on purpose
        "channel_reply_wait_seconds": 5,
        "session_timeout_seconds": 3600,
    }
    # the peer stands in for api.twilio.com
    twilio = {"twilio": {"media_hosts": ["127.0.0.1"], "auth_token": TOKEN}}
    tools = merged_tools(twilio, extra.pop("tools", {}))
    return make_settings(database_url, **{**values, **extra}, tools=tools)


@pytest.fixture
def api(database_url: str, llm: FakeOpenAI) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(database_url, llm))) as client:
        yield client


def whatsapp(
    client: TestClient, body: str, sid: str, *, signature: str | None = None, **extra: str
) -> Any:
    params = {
        "MessageSid": sid,
        "From": USER,
        "To": "whatsapp:+14155238886",
        "Body": body,
        "NumMedia": "0",
        **extra,
    }
    signed = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/whatsapp", params)
    return client.post(
        "/whatsapp",
        data=params,
        headers={"X-Twilio-Signature": signature if signature is not None else signed},
    )


def count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_whatsapp_invoice_over_several_turns(
    api: TestClient, llm: FakeOpenAI, database_url: str
) -> None:
    llm.say("CREATE_INVOICE")
    first = whatsapp(api, "create an invoice", "SM1")
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/xml")
    assert "Who should the invoice be for?" in first.text

    llm.say("CREATE_INVOICE", customer_name="Acme", amount="5000 INR")
    second = whatsapp(api, "Acme, 5000 rupees", "SM2")
    assert "Invoice Acme for ₹5,000?\nReply YES to confirm or NO to cancel." in second.text

    llm.say(None, confirmation="yes")
    third = whatsapp(api, "yes", "SM3")
    assert "Done — Acme has been invoiced ₹5,000.\ninv_sandbox_" in third.text
    assert ": https://rzp.io/sandbox/inv_sandbox_" in third.text

    again = whatsapp(api, "yes", "SM3")  # Twilio retrying the same message
    assert again.status_code == 200 and "<Message>" not in again.text

    with psycopg.connect(database_url) as conn:
        [(trace_id, session_id)] = conn.execute(
            "select trace_id, session_id from session_messages where provider_message_id = 'SM3'"
        ).fetchall()
    runs = api.get("/runs", params={"trace_id": trace_id}).json()["runs"]
    assert len(runs) == 1 and runs[0]["status"] in ("waiting", "succeeded")  # reply step holds
    run = api.get(f"/runs/{runs[0]['id']}").json()
    act = next(n for n in run["nodes"] if n["id"] == "act")
    assert act["output"]["sandbox"] is True
    assert act["input"]["line_items"] == [{"name": "Invoice", "amount": 500000, "quantity": 1}]
    assert act["input"]["customer"] == {"name": "Acme"}

    session = api.get(f"/sessions/{session_id}").json()
    assert session["status"] == "open" and session["channel"] == "whatsapp"
    assert session["pending"] is None
    ins = [m for m in session["messages"] if m["direction"] == "in"]
    outs = [m for m in session["messages"] if m["direction"] == "out"]
    assert [m["text"] for m in ins] == ["create an invoice", "Acme, 5000 rupees", "yes"]
    assert [m["intent"] for m in ins] == ["CREATE_INVOICE"] * 3
    assert ins[1]["entities"]["amount"]["amount_minor"] == 500000
    assert len({m["trace_id"] for m in ins}) == 1, "one command, one trace"
    assert len(outs) == 3 and outs[-1]["delivery"] == "inline"
    assert count(database_url, "webhook_deliveries") == 3


def test_session_stream_shows_a_whatsapp_turn_as_it_happens(
    api: TestClient, llm: FakeOpenAI, database_url: str
) -> None:
    llm.say("CREATE_INVOICE")
    whatsapp(api, "create an invoice", "SMlive1")
    with psycopg.connect(database_url) as conn:
        [(session_id,)] = conn.execute(
            "select session_id from session_messages where provider_message_id = 'SMlive1'"
        ).fetchall()
        [(seen,)] = conn.execute(
            "select max(change_seq) from session_messages where session_id = %s", (session_id,)
        ).fetchall()

    def answered(events: list[dict[str, Any]]) -> bool:
        latest = {json.loads(e["data"])["id"]: json.loads(e["data"]) for e in events}
        return any("Invoice Acme for ₹5,000?" in (m["text"] or "") for m in latest.values())

    live = Reader(api, f"/sessions/{session_id}/stream?last_id={seen}", stop=answered)
    live.start()
    time.sleep(0.3)  # subscribed: what follows arrives live
    llm.say("CREATE_INVOICE", customer_name="Acme", amount="5000 INR")
    whatsapp(api, "Acme, 5000 rupees", "SMlive2")
    events = live.finish()
    latest = {json.loads(e["data"])["id"]: json.loads(e["data"]) for e in events}
    inbound = [m for m in latest.values() if m["direction"] == "in"]
    outbound = [m for m in latest.values() if m["direction"] == "out"]
    assert [m["text"] for m in inbound] == ["Acme, 5000 rupees"]
    assert inbound[0]["intent"] == "CREATE_INVOICE"
    assert len(outbound) == 1 and "₹5,000" in outbound[0]["text"]
    ids = [int(e["id"]) for e in events]
    assert len(set(ids)) == len(ids)  # each change once (in commit order, see test_stream)

    # The whole conversation, replayed from the start: each message once, as it is now.
    def all_four(events: list[dict[str, Any]]) -> bool:
        return len({json.loads(e["data"])["id"] for e in events}) >= 4

    replay = Reader(api, f"/sessions/{session_id}/stream", stop=all_four)
    replay.start()
    texts = [json.loads(e["data"])["text"] for e in replay.finish()]
    assert texts[0] == "create an invoice" and texts[2] == "Acme, 5000 rupees"
    assert "Who should the invoice be for?" in texts[1] and "Invoice Acme" in texts[3]


def test_bad_or_missing_twilio_signature_is_403_and_stores_nothing(
    api: TestClient, database_url: str
) -> None:
    for signature in ("", "bm90LXRoZS1yaWdodC1zaWduYXR1cmU="):
        response = whatsapp(api, "create an invoice", "SMbad", signature=signature)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "invalid_signature"
    assert count(database_url, "session_messages") == 0
    assert count(database_url, "webhook_deliveries") == 0


def test_refused_confirmation_does_nothing(
    api: TestClient, llm: FakeOpenAI, database_url: str
) -> None:
    llm.say("CREATE_PAYMENT_LINK", amount="1200 INR")
    assert "Create a payment link for ₹1,200?" in whatsapp(api, "payment link for 1200", "SMa").text
    llm.say(None, confirmation="no")
    answer = whatsapp(api, "no", "SMb").text
    assert "Okay, I won't go ahead with the payment link for ₹1,200." in answer
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "select count(*) from workflow_runs where trace_id is not null"
        ).fetchone() == (0,)


def test_cancel_abandons_slot_filling(api: TestClient, llm: FakeOpenAI) -> None:
    llm.say("CREATE_INVOICE")
    assert "Who should" in whatsapp(api, "invoice please", "SMc1").text
    llm.say(None, cancel=True)
    assert "Okay, I've dropped the invoice." in whatsapp(api, "never mind", "SMc2").text


def test_whatsapp_voice_note_is_downloaded_transcribed_and_acted_on(
    api: TestClient, llm: FakeOpenAI, peer: Peer
) -> None:
    audio = wav_bytes()
    peer.handlers["/media/note"] = lambda body: (200, audio)
    llm.transcripts.append("send a whatsapp to +91 98123 45678 saying the shop opens at ten")
    llm.say("SEND_WHATSAPP", to="+91 98123 45678", message="The shop opens at ten")
    response = whatsapp(
        api,
        "",
        "SMvoice",
        NumMedia="1",
        MediaUrl0=f"{peer.url}/media/note",
        MediaContentType0="audio/wav",
    )
    assert "Sent your WhatsApp message to +91 98123 45678." in response.text
    assert peer.hits["/media/note"] == 1
    [upload] = llm.uploads
    assert b"whisper-1" in upload and audio in upload, "the real audio reaches transcription"


def test_intent_parser_text_then_confirmation_with_spoken_reply(
    api: TestClient, llm: FakeOpenAI
) -> None:
    llm.say("CREATE_PAYMENT_LINK")
    first = api.post("/intent-parser", json={"session_id": "kiosk-7", "text": "payment link"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "needs_input"
    assert body["analysis"]["missing_slots"] == ["amount"]
    assert body["reply"] == "How much should the payment link be for?"

    llm.say("CREATE_PAYMENT_LINK", amount="₹2,500", customer_phone="98765 43210")
    second = api.post(
        "/intent-parser", json={"session_id": "kiosk-7", "text": "2500 for 98765 43210"}
    )
    assert second.json()["status"] == "needs_input"
    assert second.json()["analysis"]["entities"]["customer_phone"] == "+919876543210"

    llm.say(None, confirmation="yes")
    third = api.post(
        "/intent-parser", data={"session_id": "kiosk-7", "text": "yes", "reply_audio": "true"}
    )
    result = third.json()
    assert result["status"] == "completed", result
    assert "https://rzp.io/sandbox/plink_sandbox_" in result["reply"]
    assert result["run_id"] and result["trace_id"] == first.json()["trace_id"]
    assert base64.b64decode(result["reply_audio"]["base64"]) == b"ID3-fake-mp3"
    runs = api.get("/runs", params={"trace_id": result["trace_id"]}).json()["runs"]
    assert [r["id"] for r in runs] == [result["run_id"]]


def test_intent_parser_audio_upload(api: TestClient, llm: FakeOpenAI) -> None:
    llm.transcripts.append("what can you do")  # asking for help: answered without the model
    response = api.post(
        "/intent-parser",
        data={"session_id": "s-audio"},
        files={"audio_file": ("question.wav", wav_bytes(), "audio/wav")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "no_action" and body["analysis"]["transcript"] == "what can you do"
    assert body["reply"].startswith("Here's what I can do:\n• Send a WhatsApp message\n")
    assert not llm.prompts


def test_intent_parser_rejects_bad_audio_and_input(database_url: str, llm: FakeOpenAI) -> None:
    settings = _settings(database_url, llm, max_audio_bytes=64_000)
    with TestClient(create_app(settings)) as api:
        wrong = api.post(
            "/intent-parser",
            data={"session_id": "s"},
            files={"audio_file": ("notes.txt", b"hello", "text/plain")},
        )
        assert wrong.status_code == 415
        assert wrong.json()["error"]["code"] == "unsupported_media_type"
        big = api.post(
            "/intent-parser",
            data={"session_id": "s"},
            files={"audio_file": ("long.wav", wav_bytes(seconds=3), "audio/wav")},
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        empty = api.post(
            "/intent-parser",
            data={"session_id": "s"},
            files={"audio_file": ("empty.wav", b"", "audio/wav")},
        )
        assert empty.status_code == 422
        nothing = api.post("/intent-parser", json={"session_id": "s"})
        assert nothing.status_code == 422
        assert nothing.json()["error"]["details"][0]["loc"] == ["body", "text"]
        anonymous = api.post("/intent-parser", json={"text": "hi"})
        assert anonymous.json()["error"]["details"][0]["loc"] == ["body", "session_id"]


@pytest.mark.parametrize("text", ["hello", "help", "bye"])
def test_without_a_model_intent_parser_is_503(client: TestClient, text: str) -> None:
    """Even the words understood without the model: a deployment without one holds no
    conversation."""
    response = client.post("/intent-parser", json={"session_id": "s", "text": text})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "llm_not_configured"


def test_idle_session_closes_on_an_engine_timer_with_a_summary(
    database_url: str, llm: FakeOpenAI
) -> None:
    settings = _settings(database_url, llm, session_timeout_seconds=1)
    with TestClient(create_app(settings)) as api:
        llm.say("CREATE_INVOICE")
        body = api.post("/intent-parser", json={"session_id": "idle", "text": "invoice"}).json()
        deadline = time.monotonic() + 15
        while True:
            session = api.get(f"/sessions/{body['session_id']}").json()
            if session["summary"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert session["status"] == "closed" and session["closed_at"]
    assert session["summary"] == "The user asked for an invoice for Acme; it was created."
    assert session["summary_source"] == "llm"
    assert llm.summaries == 1
    with psycopg.connect(database_url) as conn:
        [(status,)] = conn.execute(
            "select r.status from workflow_runs r join workflows w on w.id = r.workflow_id"
            " where w.origin = 'system'"
        ).fetchall()
    assert status == "succeeded", "the timer is a run on the engine"


def test_a_session_keeps_one_timer_that_each_message_moves(
    database_url: str, llm: FakeOpenAI
) -> None:
    """Messages of one session move its one timer run (not a parked run per message); the
    session still closes once it has been idle for the timeout after the last message."""
    settings = _settings(database_url, llm, session_timeout_seconds=3)
    system_runs = (
        "select r.id, r.status from workflow_runs r join workflows w on w.id = r.workflow_id"
        " where w.origin = 'system'"
    )
    with TestClient(create_app(settings)) as api:
        for n in range(4):
            llm.say("CREATE_INVOICE")
            assert "Who should" in whatsapp(api, "invoice please", f"SMt{n}").text
            time.sleep(0.4)  # the timer run is claimed and parks on its delay between messages
        with psycopg.connect(database_url) as conn:
            runs = conn.execute(system_runs).fetchall()
            [(session_id, timer, idle_at)] = conn.execute(
                "select id, timer_run_id, last_activity_at + interval '3 seconds' from sessions"
            ).fetchall()
            wakes = conn.execute(
                "select wake_at from run_waits where run_id = %s", (timer,)
            ).fetchall()
        assert [run_id for run_id, status in runs if status not in TERMINAL] == [timer]
        assert len(runs) == 1, "no parked run per message"
        assert wakes == [(idle_at,)], "the delay ends one timeout after the last message"
        deadline = time.monotonic() + 15
        while True:
            session = api.get(f"/sessions/{session_id}").json()
            if session["summary"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert session["status"] == "closed" and llm.summaries == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute(system_runs).fetchall() == [(timer, "succeeded")]


def test_slow_action_is_acknowledged_then_answered_by_the_run(
    database_url: str, llm: FakeOpenAI
) -> None:
    """Twilio must get an answer within 15 s: a slow action is acknowledged at once and the
    run's own channel.reply step sends the answer with the whatsapp tool afterwards."""
    settings = _settings(
        database_url,
        llm,
        channel_reply_wait_seconds=0.5,
        tools={"twilio": {"account_sid": "ACtest", "whatsapp_from": "+14155238886"}},
    )
    sent: list[dict[str, Any]] = []

    async def twilio(url: Any, **request: Any) -> CallbackResult:
        form = request["data"]
        sent.append(form)
        if form["Body"] == "Stock arrives Monday":
            await asyncio.sleep(1.5)  # the user's own message is slow to send
        return CallbackResult(
            status=201, payload={"sid": f"SM{len(sent)}", "status": "queued", "to": form["To"]}
        )

    with aioresponses() as vendor, TestClient(create_app(settings)) as api:
        vendor.post(
            "https://api.twilio.com/2010-04-01/Accounts/ACtest/Messages.json",
            callback=twilio,
            repeat=True,
        )
        llm.say("SEND_WHATSAPP", to="+919812345678", message="Stock arrives Monday")
        ack = whatsapp(api, "tell +919812345678 stock arrives Monday", "SMslow")
        assert "working on it" in ack.text
        deadline = time.monotonic() + 15
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert [m["Body"] for m in sent] == [
        "Stock arrives Monday",
        "Sent your WhatsApp message to +91 98123 45678.",
    ]
    assert sent[1]["To"] == USER


def test_active_intent_workflow_is_an_intent_with_its_slots(
    api: TestClient, llm: FakeOpenAI
) -> None:
    blueprint = REMINDER_INTENT
    wf = api.post("/workflows", json={"blueprint": blueprint}).json()
    assert api.post(f"/workflows/{wf['id']}/activate").status_code == 200

    llm.say("SEND_REMINDER")
    first = api.post("/intent-parser", json={"session_id": "owner", "text": "send a reminder"})
    assert first.json()["reply"] == "Whose number?"
    assert "- SEND_REMINDER: Run the workflow 'Remind unpaid customers'" in llm.prompts[-1]
    llm.say("SEND_REMINDER", phone="9876543210")
    done = api.post("/intent-parser", json={"session_id": "owner", "text": "9876543210"}).json()
    assert done["status"] == "completed", done
    run = api.get(f"/runs/{done['run_id']}").json()
    assert run["workflow_id"] == wf["id"] and run["trigger_data"] == {"phone": "+919876543210"}
    assert run["trace_id"] == done["trace_id"]


def _next_tuesday(today: date) -> date:
    """The first Tuesday after ``today`` (a week on, when today is a Tuesday)."""
    return today + timedelta(days=(1 - today.weekday() - 1) % 7 + 1)


@pytest.mark.parametrize(
    ("said", "resolve"),
    [
        ("next Tuesday", _next_tuesday),
        ("25 Dec", lambda today: date(today.year + (today >= date(today.year, 12, 25)), 12, 25)),
    ],
)
def test_a_date_said_in_words_is_resolved_and_echoed_in_the_confirmation(
    api: TestClient, llm: FakeOpenAI, said: str, resolve: Callable[[date], date]
) -> None:
    """The model copies the date as said; the server resolves it in DEFAULT_TIMEZONE (here the
    default, Asia/Kolkata), spells it out in the confirmation, and the run gets ISO 8601."""
    blueprint = {
        "name": "Book a visit",
        "nodes": [
            {
                "id": "asked",
                "type": "trigger",
                "trigger": "intent",
                "intent": "BOOK_VISIT",
                "confirm": True,
                "slots": [{"name": "day", "type": "date", "question": "Which day?"}],
            },
            {"id": "done", "type": "end"},
        ],
        "edges": [{"source": "asked", "target": "done"}],
    }
    wf = api.post("/workflows", json={"blueprint": blueprint}).json()
    assert api.post(f"/workflows/{wf['id']}/activate").status_code == 200

    llm.say("BOOK_VISIT", day=said)
    asked = whatsapp(api, f"book a visit {said}", "SMdate1")
    expected = resolve(datetime.now(ZoneInfo("Asia/Kolkata")).date())
    spelled = f"{expected:%A} {expected.day} {expected:%B %Y}"  # Tuesday 1 December 2026
    assert f"Run “Book a visit” with day {spelled}?" in asked.text, asked.text

    llm.say(None, confirmation="yes")
    whatsapp(api, "yes", "SMdate2")
    [run] = api.get("/runs", params={"workflow_id": wf["id"]}).json()["runs"]
    assert api.get(f"/runs/{run['id']}").json()["trigger_data"] == {"day": expected.isoformat()}


def test_messages_of_one_user_are_handled_one_at_a_time(
    api: TestClient, llm: FakeOpenAI, peer: Peer
) -> None:
    """The second message arrives while the first is still being understood; it must see the
    first one's pending intent (an advisory lock serialises turns per user)."""
    import threading

    chat = peer.handlers["/v1/chat/completions"]
    calls = 0

    def slow_first(body: Any) -> tuple[int, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.6)
        return chat(body)

    peer.handlers["/v1/chat/completions"] = slow_first
    llm.say("CREATE_INVOICE")
    llm.say(None, customer_name="Acme", amount="5000 INR")
    results: dict[str, Any] = {}

    def send(name: str, text: str) -> None:
        results[name] = api.post("/intent-parser", json={"session_id": "busy", "text": text}).json()

    first = threading.Thread(target=send, args=("first", "create an invoice"))
    first.start()
    time.sleep(0.15)
    send("second", "Acme, 5000 rupees")
    first.join()
    assert results["first"]["reply"] == "Who should the invoice be for?"
    assert results["second"]["status"] == "needs_input"
    assert "Invoice Acme for ₹5,000?" in results["second"]["reply"], results["second"]
