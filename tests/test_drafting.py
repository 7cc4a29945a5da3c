"""WorkflowArchitect through the API. The real ChatOpenAI + openai SDK code runs; only the HTTP
transport to the model is mocked, through the SDK's own http-client hook (a mock transport on
its httpx2 client), answering with scripted structured outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

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
from blueprint_engine.workflows.nodes import ForeachNode
from blueprint_engine.workflows.schema import validate_blueprint
from tests.conftest import make_settings
from tests.support import Peer, chat_completion

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
            node("send_receipt", "action", service="telegram", task="post", params_json="{}"),
        ],
    }
    model.answers = [wrong, RECEIPT]
    response = api.post("/workflow/draft", json={"prompt": "receipt on payment"})
    assert response.status_code == 201, response.text
    assert response.json()["attempts"] == 2
    feedback = model.messages(1)[-1]["content"]
    assert "unknown service 'telegram'" in feedback and "node 'send_receipt'" in feedback
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

    assert "router 'check_amount' branch 'small' leads nowhere" in body["warnings"]
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


#: What OpenAI's strict structured outputs accept in a schema (a subset of JSON Schema).
STRICT_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
    "const",
    "description",
    "title",
    "$ref",
    "$defs",
}


def strict_problems(schema: Any, path: str = "") -> list[str]:
    """Where ``schema`` breaks strict mode: an object whose properties are not all required,
    that allows other properties or has none declared (free-form), or a keyword strict mode
    does not take."""
    problems: list[str] = []
    if isinstance(schema, dict):
        if path.rsplit("/", 1)[-1] not in ("properties", "$defs"):
            problems += [f"{path}: {key}" for key in schema.keys() - STRICT_KEYWORDS]
            if schema.get("type") == "object":
                properties = schema.get("properties")
                if not properties:
                    problems.append(f"{path}: free-form object")
                elif sorted(schema.get("required", [])) != sorted(properties):
                    problems.append(f"{path}: not every property required")
                if schema.get("additionalProperties") is not False:
                    problems.append(f"{path}: additionalProperties is not false")
        for key, value in schema.items():
            problems += strict_problems(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            problems += strict_problems(value, f"{path}/{i}")
    return problems


def test_the_answer_schema_sent_is_valid_for_strict_mode(api: TestClient, model: Model) -> None:
    model.answers = [RECEIPT]
    assert api.post("/workflow/draft", json={"prompt": "receipt"}).status_code == 201
    response_format = model.requests[0]["response_format"]["json_schema"]
    assert response_format["strict"] is True
    schema = response_format["schema"]
    assert strict_problems(schema) == []
    assert strict_problems({"type": "object", "properties": {"a": {"type": "object"}}}) == [
        ": not every property required",
        ": additionalProperties is not false",
        "/properties/a: free-form object",
        "/properties/a: additionalProperties is not false",
    ], "the check itself finds what strict mode refuses"
    node_schema = schema["$defs"]["DraftNode"]["properties"]
    assert {"slots", "body_json", "workflow_id", "input_json", "retry"} <= node_schema.keys()


def _saved_workflow(api: TestClient, name: str, *, active: bool) -> str:
    blueprint = {
        "name": name,
        "description": f"{name}, for one customer",
        "nodes": [
            {"id": "start", "type": "trigger", "trigger": "manual"},
            {"id": "done", "type": "end", "output": {"to": "{{ trigger_data.phone }}"}},
        ],
        "edges": [{"source": "start", "target": "done"}],
    }
    made = api.post("/workflows", json={"blueprint": blueprint})
    assert made.status_code == 201, made.text
    if active:
        assert api.post(f"/workflows/{made.json()['id']}/activate").status_code == 200
    return str(made.json()["id"])


def _runs(workflow_id: str, *, version: int | None = None) -> dict[str, Any]:
    return node("run_it", "workflow", workflow_id=workflow_id, version=version)


def test_the_users_workflows_are_offered_and_no_other_may_be_run(
    api: TestClient, model: Model
) -> None:
    """The request lists the user's active workflows; a draft running a made-up one goes back
    for repair; running one that is not active is saved with a warning."""
    remind = _saved_workflow(api, "Remind a customer", active=True)
    dormant = _saved_workflow(api, "Dormant", active=False)
    start = node("start", "trigger", trigger="manual")

    made_up = {**RECEIPT, "nodes": [start, _runs(str(uuid4()))], "edges": [edge("start", "run_it")]}
    good = {**made_up, "nodes": [start, _runs(remind)]}
    model.answers = [made_up, good]
    response = api.post("/workflow/draft", json={"prompt": "run my reminder"})
    assert response.status_code == 201, response.text
    assert response.json()["attempts"] == 2
    request = model.messages(0)[1]["content"]
    assert f"- {remind}: Remind a customer — Remind a customer, for one customer" in request
    assert "(trigger: manual)" in request and dormant not in request, "active ones only"
    repair = model.messages(1)[-1]["content"]
    assert "node 'run_it' nodes.1: runs workflow" in repair
    assert "not one of the user's saved workflows" in repair
    saved = {n["id"]: n for n in response.json()["blueprint"]["nodes"]}
    assert saved["run_it"]["workflow_id"] == remind

    model.answers = [{**made_up, "nodes": [start, _runs(dormant)]}]
    response = api.post("/workflow/draft", json={"prompt": "run the dormant one"})
    assert response.status_code == 201, response.text
    assert any(
        "runs workflow 'Dormant', which is not active" in w for w in response.json()["warnings"]
    )

    model.requests.clear()
    model.answers = [good]
    other = api.post("/workflow/draft", json={"prompt": "run my reminder", "user_id": DRAFTER})
    assert other.status_code == 422, "another user's workflow is never theirs to run"
    assert remind not in model.messages(0)[1]["content"]
    assert "not one of the user's saved workflows" in model.messages(1)[-1]["content"]

    model.requests.clear()
    workflow_id = response.json()["workflow_id"]
    model.answers = [{**made_up, "nodes": [start, _runs(workflow_id)]}]
    revised = api.post(f"/workflows/{workflow_id}/revise", json={"instruction": "run yourself"})
    assert revised.status_code == 422, "it cannot run itself"
    assert revised.json()["error"]["code"] == "draft_invalid"
    assert workflow_id not in model.messages(0)[1]["content"]


def test_without_saved_workflows_the_model_is_told_to_run_none(
    api: TestClient, model: Model
) -> None:
    model.answers = [RECEIPT]
    assert api.post("/workflow/draft", json={"prompt": "receipt"}).status_code == 201
    assert "no active saved workflows" in model.messages(0)[1]["content"]


#: The stand-in model's draft for "for every unpaid invoice send a reminder".
REMIND_EACH_BODY = {
    "nodes": [
        {
            "id": "remind",
            "type": "action",
            "name": "Remind",
            "service": "whatsapp",
            "task": "send_message",
            "params": {
                "to": "{{ item.phone }}",
                "body": "Hi {{ item.customer }}, invoice {{ item.number }} for "
                "₹{{ item.amount / 100 }} is still unpaid.",
            },
        }
    ],
    "edges": [],
}
REMIND_EACH = {
    "name": "Unpaid invoice reminders",
    "description": "WhatsApp a reminder for every unpaid invoice",
    "nodes": [
        node(
            "invoices_given",
            "trigger",
            trigger="intent",
            intent="REMIND_UNPAID",
            slots=[
                {
                    "name": "note",
                    "type": "text",
                    "required": False,
                    "question": "Anything to add to the reminders?",
                    "description": "",
                }
            ],
            confirm=True,
        ),
        node(
            "each_invoice",
            "foreach",
            items="{{ trigger_data.invoices }}",
            body_json=json.dumps(REMIND_EACH_BODY),
            concurrency=3,
            on_error="continue",
        ),
        node("done", "end", output_json='{"reminded": "{{ steps.each_invoice.output.count }}"}'),
    ],
    "edges": [edge("invoices_given", "each_invoice"), edge("each_invoice", "done")],
}


def test_a_foreach_draft_end_to_end_through_the_model_server(database_url: str, peer: Peer) -> None:
    """ "For every unpaid invoice send a reminder", through the real ChatOpenAI over HTTP to the
    local OpenAI-compatible stand-in, answered with a foreach draft: saved, valid, and it runs
    (dry run: one sandboxed message per invoice)."""
    requests: list[dict[str, Any]] = []

    def answer(body: Any) -> tuple[int, Any]:
        requests.append(body)
        return 200, chat_completion(json.dumps(REMIND_EACH))

    peer.handlers["/v1/chat/completions"] = answer
    settings = make_settings(
        database_url,
        openai_base_url=f"{peer.url}/v1",
        openai_api_key="sk-test",
        llm_backoff_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/workflow/draft", json={"prompt": "for every unpaid invoice send a reminder"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["attempts"] == 1
        warnings = response.json()["warnings"]
        assert any(w.startswith("whatsapp has no credentials") for w in warnings), "loop bodies too"
        saved = client.get(f"/workflows/{response.json()['workflow_id']}").json()
        blueprint = validate_blueprint(saved["blueprint"])
        loop = {n.id: n for n in blueprint.nodes}["each_invoice"]
        assert isinstance(loop, ForeachNode) and loop.body is not None
        assert [n.id for n in loop.body.nodes] == ["remind"]
        assert blueprint.trigger.trigger == "intent"

        invoices = [
            {"number": "INV-1", "customer": "Asha", "phone": "+919876543210", "amount": 150000},
            {"number": "INV-2", "customer": "Ravi", "phone": "+919812345678", "amount": 99900},
        ]
        run = client.post(
            f"/workflows/{saved['id']}/dry-run", json={"payload": {"invoices": invoices}}
        )
        assert run.status_code == 200, run.text
        result = run.json()
        assert result["status"] == "succeeded", result
        assert result["output"] == {"reminded": 2}

    assert len(requests) == 1
    system = requests[0]["messages"][0]["content"]
    assert "- foreach (items, body_json" in system and '`trigger` "intent"' in system
    assert strict_problems(requests[0]["response_format"]["json_schema"]["schema"]) == []


def test_a_revision_that_makes_a_webhook_trigger_shows_its_url_once(
    api: TestClient, model: Model
) -> None:
    model.answers = [RECEIPT]
    first = api.post("/workflow/draft", json={"prompt": "receipt"}).json()
    assert first["hook"] is None
    hooked = {
        **RECEIPT,
        "nodes": [node("payment_captured", "trigger", trigger="webhook"), RECEIPT["nodes"][1]],
    }
    model.answers = [hooked]
    response = api.post(
        f"/workflows/{first['workflow_id']}/revise",
        json={"instruction": "start it from its own webhook URL"},
    )
    assert response.status_code == 201, response.text
    path = response.json()["hook"]["path"]
    assert path.startswith(f"/hooks/{first['workflow_id']}/")
    again = api.get(f"/workflows/{first['workflow_id']}").json()["hook"]
    assert again["path"] is None, "the token is shown once"
