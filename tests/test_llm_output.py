"""Model answers that do not fit the requested schema, through the API against real Postgres.

The model is the local OpenAI-compatible server (the test peer), reached over real HTTP by the
real LangChain/openai code. A server that does not enforce strict schemas can answer prose,
JSON missing fields, an answer cut off at the length limit (``finish_reason: "length"``), a
content-filter stop, a refusal or nothing at all. The architect treats each as a failed attempt
and repairs, then answers 502 ``llm_bad_output``; the channels answer the person with an
apology in plain words. Never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.support import Peer, assert_plain_words, chat_completion
from tests.test_channels import USER, FakeOpenAI, _settings, whatsapp
from tests.test_drafting import RECEIPT


def _refusal() -> dict[str, Any]:
    body = chat_completion(None)
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    return body


#: Unusable answers, and a phrase the architect's repair message must say about each.
UNUSABLE: dict[str, tuple[Any, str]] = {
    "prose": (chat_completion("Sure! Here is a workflow that sends a receipt."), "not JSON"),
    "missing_fields": (chat_completion(json.dumps({"name": "Receipt"})), "description"),
    "cut_off": (
        chat_completion('{"name": "Receipt", "nodes": [{"id": "pay', finish_reason="length"),
        "cut off",
    ),
    "content_filter": (chat_completion(None, finish_reason="content_filter"), "content filter"),
    "refusal": (_refusal(), "refused"),
    "empty": (chat_completion(""), "empty"),
    "no_choices": ({**chat_completion("{}"), "choices": []}, "not a chat completion"),
    "not_a_completion": (b"<html>502 Bad Gateway</html>", "not a chat completion"),
}


class Model(FakeOpenAI):
    """The fake OpenAI server, answering chat completions from ``unusable`` first (one body
    per call), then from the scripted extractions; ``chats`` records each request."""

    def __init__(self, peer: Peer) -> None:
        super().__init__(peer)
        self.unusable: list[Any] = []
        self.chats: list[dict[str, Any]] = []
        peer.handlers["/v1/chat/completions"] = self._next

    def _next(self, body: Any) -> tuple[int, Any]:
        self.chats.append(body)
        if self.unusable:
            return 200, self.unusable.pop(0)
        return self._chat(body)


@pytest.fixture
def model(peer: Peer) -> Model:
    return Model(peer)


@pytest.fixture
def api(database_url: str, model: Model) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(database_url, model))) as client:
        yield client


def _count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("kind", UNUSABLE)
def test_draft_repairs_unusable_answers_then_is_502(
    api: TestClient, model: Model, database_url: str, kind: str
) -> None:
    answer, said = UNUSABLE[kind]
    model.unusable = [answer] * 3
    response = api.post("/workflow/draft", json={"prompt": "receipt on payment"})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "llm_bad_output"
    assert "3 attempt" in error["message"]
    assert len(model.chats) == 3, "one draft and two repairs (ARCHITECT_MAX_REPAIRS=2)"
    repair = model.chats[1]["messages"][-1]
    assert repair["role"] == "user" and said in repair["content"], repair
    assert _count(database_url, "workflows") == 0


def test_draft_repaired_after_an_unusable_answer_is_saved(api: TestClient, model: Model) -> None:
    model.unusable = [
        UNUSABLE["cut_off"][0],
        chat_completion(json.dumps(RECEIPT)),
    ]
    response = api.post("/workflow/draft", json={"prompt": "receipt on payment"})
    assert response.status_code == 201, response.text
    assert response.json()["attempts"] == 2
    assert "cut off" in model.chats[1]["messages"][-1]["content"]


@pytest.mark.parametrize("kind", UNUSABLE)
def test_intent_parser_apologises_for_unusable_answers(
    api: TestClient, model: Model, kind: str
) -> None:
    model.say("CREATE_INVOICE")
    first = api.post("/intent-parser", json={"session_id": "kiosk", "text": "an invoice"})
    assert first.json()["status"] == "needs_input"

    model.unusable = [UNUSABLE[kind][0]]
    response = api.post("/intent-parser", json={"session_id": "kiosk", "text": "Acme, 5000"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed" and body["reply"].startswith("Sorry")
    assert_plain_words(body["reply"])
    assert body["trace_id"] == first.json()["trace_id"], "still the same command"

    model.say("CREATE_INVOICE", customer_name="Acme", amount="5000 INR")
    again = api.post("/intent-parser", json={"session_id": "kiosk", "text": "Acme, 5000"})
    assert "Invoice Acme for ₹5,000?" in again.json()["reply"], "the pending request survived"
    session = api.get(f"/sessions/{body['session_id']}").json()
    outs = [m["text"] for m in session["messages"] if m["direction"] == "out"]
    assert outs[1] == body["reply"], "the apology is part of the conversation"


@pytest.mark.parametrize("kind", ["prose", "missing_fields", "cut_off", "content_filter"])
def test_whatsapp_apologises_for_unusable_answers(
    api: TestClient, model: Model, database_url: str, kind: str
) -> None:
    model.unusable = [UNUSABLE[kind][0]]
    response = whatsapp(api, "refund the payment from Tuesday", "SMbad1")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Message>Sorry" in response.text
    assert_plain_words(response.text.split("<Message>")[1])
    assert _count(database_url, "webhook_deliveries") == 1, "answered, so Twilio need not retry"
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select m.direction from session_messages m join sessions s on s.id = m.session_id"
            " where s.user_ref = %s order by m.id",
            (USER,),
        ).fetchall()
    assert [r[0] for r in rows] == ["in", "out"]
