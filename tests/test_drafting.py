"""WorkflowArchitect through the API. The real ChatOpenAI + openai SDK code runs; only the HTTP
transport to the model is mocked, through the SDK's own http-client hook (a mock transport on
its httpx2 client), answering with scripted structured outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from blueprint_engine.agents.architect import WorkflowArchitect
from blueprint_engine.agents.draft_format import DraftNode
from blueprint_engine.agents.llm import build_chat_model
from blueprint_engine.app import create_app
from blueprint_engine.workflows.layout import X_GAP, Y_GAP
from tests.conftest import make_settings
from tests.support import chat_completion

LLM = "http://llm.test/v1"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def node(id: str, type: str, **fields: Any) -> dict[str, Any]:
    """A node as the model writes it: every field of the draft schema present, null when it
    does not apply."""
    base = dict.fromkeys(DraftNode.model_fields)
    unknown = fields.keys() - base.keys()
    assert not unknown, f"not draft fields: {unknown}"
    return {**base, "id": id, "type": type, "name": id.replace("_", " ").title(), **fields}


def edge(source: str, target: str, branch: str | None = None) -> dict[str, Any]:
    return {"source": source, "target": target, "branch": branch}


RECEIPT_PARAMS = json.dumps(
    {
        "to": "{{ trigger_data.payload.payment.entity.contact }}",
        "body": "Thanks! We received ₹{{ trigger_data.payload.payment.entity.amount / 100 }}",
    }
)
RECEIPT = {
    "name": "Payment receipt",
    "description": "WhatsApp a receipt when a payment is captured",
    "nodes": [
        node("payment_captured", "trigger", trigger="event", event="razorpay/payment.captured"),
        node(
            "send_receipt",
            "action",
            service="whatsapp",
            task="send_message",
            params_json=RECEIPT_PARAMS,
        ),
    ],
    "edges": [edge("payment_captured", "send_receipt")],
}


class Model:
    """Scripted chat-completions endpoint: each call pops the next answer (a draft dict, or an
    httpx2 exception / status code to fail with) and records the request body."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(self._answer))

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        assert request.method == "POST" and str(request.url) == f"{LLM}/chat/completions"
        self.requests.append(json.loads(request.content))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return httpx2.Response(answer, json={"error": {"message": "slow down", "type": "x"}})
        return httpx2.Response(200, json=chat_completion(json.dumps(answer)))

    def messages(self, call: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.requests[call]["messages"]
        return messages


@pytest.fixture
def model() -> Model:
    return Model()


def architect_app(database_url: str, model: Model, **overrides: Any) -> TestClient:
    """The API whose architect talks to ``model``."""
    settings = make_settings(
        database_url,
        openai_base_url=LLM,
        openai_api_key="sk-test",
        llm_max_attempts=2,
        llm_backoff_seconds=0,
        **overrides,
    )
    app = create_app(settings)
    chat_model = build_chat_model(settings, http_client=model.http_client)
    assert chat_model is not None
    app.state.architect = WorkflowArchitect(chat_model, settings)
    return TestClient(app)


@pytest.fixture
def api(database_url: str, model: Model) -> Iterator[TestClient]:
    with architect_app(database_url, model) as client:
        yield client


#: The user a draft is made for (``user_id``: spec 004; without identity configured, anyone may
#: act for any user, as a service key may).
DRAFTER = "6f1c2a4e-9d3b-4c5e-8f7a-1b2c3d4e5f60"


def test_draft_is_validated_laid_out_and_saved(api: TestClient, model: Model) -> None:
    model.answers = [RECEIPT]
    response = api.post(
        "/workflow/draft",
        json={
            "prompt": "When a Razorpay payment succeeds, WhatsApp the customer a receipt",
            "user_id": DRAFTER,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1 and body["attempts"] == 1
    nodes = {n["id"]: n for n in body["blueprint"]["nodes"]}
    assert nodes["send_receipt"]["params"]["to"].startswith("{{ trigger_data.payload")
    assert nodes["payment_captured"]["position"] == {"x": 0.0, "y": 0.0}
    assert nodes["send_receipt"]["position"] == {"x": 0.0, "y": 150.0}
    assert any("whatsapp has no credentials" in w for w in body["warnings"])

    assert api.get(f"/workflows/{body['workflow_id']}").status_code == 404, "not the caller's"
    saved = api.get(f"/workflows/{body['workflow_id']}", headers={"X-User-Id": DRAFTER}).json()
    assert saved["origin"] == "draft" and saved["active"] is False
    assert saved["owner_id"] == DRAFTER

    request = model.requests[0]
    assert request["model"] == "gpt-4o"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True
    system = model.messages(0)[0]["content"]
    assert "service `razorpay`" in system and "task `create_payment_link`" in system
    assert "razorpay/payment.captured" in system


def test_invalid_draft_is_repaired_with_the_validator_errors(api: TestClient, model: Model) -> None:
    wrong = {
        **RECEIPT,
        "nodes": [
            RECEIPT["nodes"][0],
            node("send_receipt", "action", service="slack", task="post", params_json="{}"),
        ],
    }
    model.answers = [wrong, RECEIPT]
    response = api.post("/workflow/draft", json={"prompt": "receipt on payment"})
    assert response.status_code == 201, response.text
    assert response.json()["attempts"] == 2
    feedback = model.messages(1)[-1]["content"]
    assert "unknown service 'slack'" in feedback and "node 'send_receipt'" in feedback
    assert model.messages(1)[-2]["role"] == "assistant"


def test_broken_json_params_are_sent_back_too(api: TestClient, model: Model) -> None:
    broken = {
        **RECEIPT,
        "nodes": [
            RECEIPT["nodes"][0],
            node(
                "send_receipt",
                "action",
                service="whatsapp",
                task="send_message",
                params_json="{to: oops",
            ),
        ],
    }
    model.answers = [broken, RECEIPT]
    assert api.post("/workflow/draft", json={"prompt": "x"}).status_code == 201
    assert "params_json: not valid JSON" in model.messages(1)[-1]["content"]


def test_never_valid_is_422_with_errors_and_last_draft(
    api: TestClient, model: Model, database_url: str
) -> None:
    cyclic = {**RECEIPT, "edges": [*RECEIPT["edges"], edge("send_receipt", "payment_captured")]}
    model.answers = [cyclic]
    response = api.post("/workflow/draft", json={"prompt": "loop forever"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "draft_invalid"
    assert error["details"]["last_draft"]["nodes"][0]["id"] == "payment_captured"
    assert error["details"]["errors"], "the validator's errors are returned"
    assert len(model.requests) == 3, "one draft and two repairs (ARCHITECT_MAX_REPAIRS=2)"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from workflows").fetchone() == (0,)


def test_revise_keeps_ids_and_positions_of_unchanged_nodes(api: TestClient, model: Model) -> None:
    model.answers = [RECEIPT]
    first = api.post("/workflow/draft", json={"prompt": "receipt"}).json()
    renamed = node(
        "whatsapp_receipt",
        "action",
        service="whatsapp",
        task="send_message",
        params_json=RECEIPT_PARAMS,
    )
    model.answers = [
        {
            **RECEIPT,
            "nodes": [
                RECEIPT["nodes"][0],
                renamed,
                node("two_days", "delay", duration="2d"),
                node(
                    "reminder",
                    "action",
                    service="whatsapp",
                    task="send_message",
                    params_json=json.dumps(
                        {
                            "to": "{{ trigger_data.payload.payment.entity.contact }}",
                            "body": "Reminder for {{ steps.whatsapp_receipt.output.sid }}",
                        }
                    ),
                ),
            ],
            "edges": [
                edge("payment_captured", "whatsapp_receipt"),
                edge("whatsapp_receipt", "two_days"),
                edge("two_days", "reminder"),
            ],
        }
    ]
    response = api.post(
        f"/workflows/{first['workflow_id']}/revise",
        json={"instruction": "add a reminder two days later"},
    )
    assert response.status_code == 201, response.text
    revised = response.json()
    assert revised["version"] == 2
    ids = [n["id"] for n in revised["blueprint"]["nodes"]]
    assert ids == ["payment_captured", "send_receipt", "two_days", "reminder"]
    reminder = revised["blueprint"]["nodes"][3]
    assert "steps.send_receipt.output.sid" in reminder["params"]["body"]
    before = {n["id"]: n["position"] for n in first["blueprint"]["nodes"]}
    after = {n["id"]: n["position"] for n in revised["blueprint"]["nodes"]}
    assert after["send_receipt"] == before["send_receipt"]
    assert "Here is the current blueprint" in model.messages(1)[1]["content"]


def test_revise_that_grows_the_graph_keeps_positions_and_overlaps_nothing(
    api: TestClient, model: Model
) -> None:
    send = RECEIPT["nodes"][1]
    model.answers = [
        {
            **RECEIPT,
            "nodes": [*RECEIPT["nodes"], node("done", "end")],
            "edges": [*RECEIPT["edges"], edge("send_receipt", "done")],
        }
    ]
    first = api.post("/workflow/draft", json={"prompt": "receipt"}).json()
    thank_you = node(
        "thank_you",
        "action",
        service="whatsapp",
        task="send_message",
        params_json=json.dumps(
            {"to": "{{ trigger_data.payload.payment.entity.contact }}", "body": "Thank you!"}
        ),
    )
    model.answers = [
        {
            **RECEIPT,
            "nodes": [
                RECEIPT["nodes"][0],
                send,
                node("wait_2_days", "delay", duration="2d"),
                thank_you,
                node("done", "end"),
            ],
            "edges": [
                edge("payment_captured", "send_receipt"),
                edge("send_receipt", "wait_2_days"),
                edge("wait_2_days", "thank_you"),
                edge("thank_you", "done"),
            ],
        }
    ]
    response = api.post(
        f"/workflows/{first['workflow_id']}/revise",
        json={"instruction": "add a 2 day delay then a thank-you message"},
    )
    assert response.status_code == 201, response.text
    before = {n["id"]: n["position"] for n in first["blueprint"]["nodes"]}
    after = {n["id"]: n["position"] for n in response.json()["blueprint"]["nodes"]}
    assert {k: after[k] for k in before} == before, "kept nodes stay where they were"
    for new in ("wait_2_days", "thank_you"):
        for other, at in after.items():
            if other != new:
                too_close = (
                    abs(at["x"] - after[new]["x"]) < X_GAP
                    and abs(at["y"] - after[new]["y"]) < Y_GAP
                )
                assert not too_close, f"{new} {after[new]} overlaps {other} {at}"
    assert after["wait_2_days"]["y"] > after["send_receipt"]["y"], "new nodes go below parents"
    assert after["thank_you"]["y"] > after["wait_2_days"]["y"]


def test_dry_run_shows_resolved_inputs_and_stores_nothing(
    api: TestClient, database_url: str
) -> None:
    blueprint = json.loads((EXAMPLES / "payment_link_followup" / "blueprint.json").read_text())
    payload = json.loads((EXAMPLES / "payment_link_followup" / "payload.json").read_text())
    wf = api.post("/workflows", json={"blueprint": blueprint}).json()
    response = api.post(
        f"/workflows/{wf['id']}/dry-run",
        json={"payload": payload, "events": {"wait_paid": {"payload": {}}}},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "succeeded" and result["sandbox"] is True
    nodes = {n["id"]: n for n in result["nodes"]}
    assert nodes["create_link"]["input"]["amount"] == 1500000
    assert nodes["create_link"]["output"]["sandbox"] is True
    link = nodes["create_link"]["output"]["short_url"]
    assert nodes["send_link"]["input"]["body"].endswith(link)
    assert nodes["grace"]["output"]["short_circuited"] is True
    assert nodes["thank_you"]["status"] == "succeeded" and nodes["reminder"]["status"] == "skipped"
    assert nodes["alert_team"]["status"] == "skipped"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from workflow_runs").fetchone() == (0,)
        assert conn.execute("select count(*) from workflow_logs").fetchone() == (0,)
    bad = api.post(f"/workflows/{wf['id']}/dry-run", json={"events": {"create_link": {}}})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == [
        "body",
        "events",
        "create_link",
    ]


def test_without_a_model_drafting_is_503(client: TestClient) -> None:
    response = client.post("/workflow/draft", json={"prompt": "anything"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "llm_not_configured"
    assert "OPENAI_API_KEY" in response.json()["error"]["message"]


def test_timeouts_and_rate_limits_are_retried_then_reported(api: TestClient, model: Model) -> None:
    model.answers = [httpx2.ReadTimeout("model too slow")]
    response = api.post("/workflow/draft", json={"prompt": "receipt"})
    assert response.status_code == 504 and response.json()["error"]["code"] == "llm_timeout"
    assert len(model.requests) == 2, "LLM_MAX_ATTEMPTS=2"

    model.requests.clear()
    model.answers = [429]
    response = api.post("/workflow/draft", json={"prompt": "receipt"})
    assert response.status_code == 502 and response.json()["error"]["code"] == "llm_unavailable"
    assert "rate limited" in response.json()["error"]["message"]
    assert len(model.requests) == 2

    model.requests.clear()
    model.answers = [429, RECEIPT]
    assert api.post("/workflow/draft", json={"prompt": "receipt"}).status_code == 201


@pytest.mark.parametrize(
    ("prompt", "message"), [("   ", "must not be empty"), ("x" * 4001, "at most 4000 characters")]
)
def test_empty_or_oversize_prompt_is_422(api: TestClient, prompt: str, message: str) -> None:
    response = api.post("/workflow/draft", json={"prompt": prompt})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"loc": ["body", "prompt"], "message": message}]


ALERT_ME = {
    "name": "Big payment alert",
    "description": "WhatsApp me when a payment of ₹1 lakh or more is captured",
    "nodes": [
        node("payment_captured", "trigger", trigger="event", event="razorpay/payment.captured"),
        node(
            "check_amount",
            "router",
            conditions=[
                {"branch": "big", "when": "trigger_data.payload.payment.entity.amount >= 10000000"}
            ],
            default_branch="small",
        ),
        node(
            "alert_me",
            "action",
            service="whatsapp",
            task="send_message",
            params_json=json.dumps(
                {
                    "to": "{{ owner.phone }}",
                    "body": "Hi {{ owner.display_name }}, a payment of ₹"
                    "{{ trigger_data.payload.payment.entity.amount / 100 }} was captured",
                }
            ),
        ),
    ],
    "edges": [
        edge("payment_captured", "check_amount"),
        edge("check_amount", "alert_me", "big"),
    ],
}


def test_send_me_an_alert_goes_to_the_owners_phone(api: TestClient, model: Model) -> None:
    """The prompt tells the model who "me" is (``owner``, never an invented number); a draft
    that sends to ``{{ owner.phone }}`` while the profile has no phone is saved with a warning
    naming the field, the node and ``PATCH /me``; once the phone is set, no such warning."""
    model.answers = [ALERT_ME]
    prompt = "Send me a WhatsApp alert when a payment of 1 lakh rupees or more is captured"
    response = api.post("/workflow/draft", json={"prompt": prompt})
    assert response.status_code == 201, response.text
    body = response.json()
    alert = {n["id"]: n for n in body["blueprint"]["nodes"]}["alert_me"]
    assert alert["params"]["to"] == "{{ owner.phone }}"

    system = model.messages(0)[0]["content"]
    assert '`to` "{{ owner.phone }}"' in system and '"send me" mean the owner' in system
    assert "Never invent, guess or use" in system

    [warning] = [w for w in body["warnings"] if "owner." in w]
    assert "node 'alert_me' uses {{ owner.phone }}" in warning
    assert 'PATCH /me {"phone": "+919876543210"}' in warning
    assert "display_name" not in warning, "the profile has a display name"

    assert api.patch("/me", json={"phone": "+919876543210"}).status_code == 200
    again = api.post("/workflow/draft", json={"prompt": prompt}).json()
    assert not [w for w in again["warnings"] if "owner." in w], again["warnings"]


def test_revise_warns_about_a_missing_profile_field_too(api: TestClient, model: Model) -> None:
    model.answers = [RECEIPT]
    first = api.post("/workflow/draft", json={"prompt": "receipt"}).json()
    assert not [w for w in first["warnings"] if "owner." in w]
    assert api.patch("/me", json={"display_name": None}).status_code == 200
    copy_me = node(
        "copy_me",
        "action",
        service="whatsapp",
        task="send_message",
        params_json=json.dumps(
            {"to": "{{ owner.phone }}", "body": "{{ owner.display_name }}: receipt sent"}
        ),
    )
    model.answers = [
        {
            **RECEIPT,
            "nodes": [*RECEIPT["nodes"], copy_me],
            "edges": [*RECEIPT["edges"], edge("send_receipt", "copy_me")],
        }
    ]
    response = api.post(
        f"/workflows/{first['workflow_id']}/revise",
        json={"instruction": "send me a copy on WhatsApp"},
    )
    assert response.status_code == 201, response.text
    warnings = [w for w in response.json()["warnings"] if "owner." in w]
    assert [w.split(",")[0] for w in warnings] == [
        "node 'copy_me' uses {{ owner.display_name }}",
        "node 'copy_me' uses {{ owner.phone }}",
    ]
    assert "owner.phone" in model.messages(1)[0]["content"], "revise has the same instructions"


def test_the_architect_names_the_users_connections_never_their_values(
    database_url: str, model: Model
) -> None:
    token = "twilio-token-never-shown-0042"
    key = Fernet.generate_key().decode()
    with architect_app(database_url, model, credentials_key=key) as client:
        made = client.post(
            "/credentials",
            json={
                "name": "my_twilio",
                "type": "twilio",
                "data": {
                    "account_sid": "AC" + "0" * 32,
                    "auth_token": token,
                    "whatsapp_from": "+14155238886",
                },
            },
        )
        assert made.status_code == 201, made.text
        named = json.loads(json.dumps(RECEIPT))
        named["nodes"][1]["credential"] = "my_twilio"
        model.answers = [named]
        response = client.post("/workflow/draft", json={"prompt": "WhatsApp a receipt"})
        assert response.status_code == 201, response.text
        body = response.json()
        nodes = {n["id"]: n for n in body["blueprint"]["nodes"]}
        assert nodes["send_receipt"]["credential"] == "my_twilio"
        assert not [w for w in body["warnings"] if "whatsapp" in w]
        assert "my_twilio (twilio)" in model.messages(0)[1]["content"]
        assert "credential types: twilio" in model.messages(0)[0]["content"]
        assert token not in json.dumps(model.requests)

        named["nodes"][1]["credential"] = "shop_twilio"
        model.answers = [named]
        response = client.post("/workflow/draft", json={"prompt": "WhatsApp a receipt"})
        assert response.status_code == 201, response.text
        warnings = response.json()["warnings"]
        assert any("connection 'shop_twilio' does not exist yet" in w for w in warnings)
        saved = client.get(f"/workflows/{response.json()['workflow_id']}").json()
        assert saved["credentials"][0] == {
            "name": "shop_twilio",
            "types": ["twilio"],
            "nodes": ["send_receipt"],
            "present": False,
            "type": None,
        }
