"""The input boundary, through the HTTP API against real Postgres: what PostgreSQL or JSON cannot
hold is a 4xx naming the field, never a 500, and nothing is stored.

Every case here was a 500 (or a connection reset, or FastAPI's field-less "error parsing the
body") before ``src/blueprint_engine/boundary.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import importlib
import json
import pkgutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from blueprint_engine import routers
from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.http import CheckedRoute
from tests.conftest import WEBHOOK_SECRET, make_settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BLUEPRINT = json.loads((EXAMPLES / "payment_receipt" / "blueprint.json").read_text())
TABLES = (
    "workflows",
    "workflow_versions",
    "workflow_runs",
    "workflow_logs",
    "events",
    "webhook_deliveries",
    "sessions",
    "session_messages",
)
HOLE = '"__hostile__"'  # where a target's JSON body receives the hostile value's text


def _rows(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        counts = {t: conn.execute(f"select count(*) from {t}").fetchone() for t in TABLES}
    return {table: int(row[0]) for table, row in counts.items() if row is not None}


@pytest.fixture
def workflow_id(client: TestClient) -> str:
    """The receipt workflow, active: an accepted event or webhook would start a run of it."""
    created = client.post("/workflows", json={"blueprint": BLUEPRINT})
    assert created.status_code == 201, created.text
    wf: str = created.json()["id"]
    assert client.post(f"/workflows/{wf}/activate").status_code == 200
    return wf


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-razorpay-signature": digest}


# --- JSON bodies: one table of hostile values across every endpoint that takes JSON ----------

HOSTILE = [  # (JSON text, what the error message says)
    pytest.param(r'"a\u0000b"', "NUL", id="nul"),
    pytest.param(r'"\ud800"', "surrogate", id="lone-surrogate"),
    pytest.param("NaN", "finite", id="nan"),
    pytest.param("-Infinity", "finite", id="infinity"),
    pytest.param("1e400", "finite", id="1e400"),
    pytest.param(str(2**63), "64-bit", id="2**63"),
    pytest.param("-" + "9" * 5000, "64-bit", id="5000-digits"),
    pytest.param("[" * 70 + "]" * 70, "nested more than 64", id="depth-70"),
]


def _blueprint_with_hole() -> dict[str, Any]:
    blueprint = json.loads(json.dumps(BLUEPRINT))
    blueprint["nodes"][2]["params"]["body"] = "__hostile__"
    return blueprint


@dataclass
class Target:
    """An endpoint taking JSON, a body with a hole for the hostile value, and the answer."""

    method: str
    path: str
    body: Any
    loc: list[str | int]
    status: int = 422
    code: str = "validation_error"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})

    def send(self, client: TestClient, workflow_id: str, value: str) -> Any:
        text = json.dumps(self.body).replace("{wf}", workflow_id).replace(HOLE, value)
        headers = _signed(text.encode()) if self.path == "/webhooks/razorpay" else self.headers
        path = self.path.format(wf=workflow_id)
        return client.request(self.method, path, content=text.encode(), headers=headers)


ITEMS = [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "__hostile__"}]
TARGETS = [
    pytest.param(
        Target("post", "/workflows", {"blueprint": _blueprint_with_hole()},
               ["body", "blueprint", "nodes", 2, "params", "body"]),
        id="POST /workflows",
    ),
    pytest.param(
        Target("put", "/workflows/{wf}", {"blueprint": BLUEPRINT, "description": "__hostile__"},
               ["body", "description"]),
        id="PUT /workflows/{id}",
    ),
    pytest.param(
        Target("post", "/workflow/execute",
               {"workflow_id": "{wf}", "payload": {"items": ITEMS}},
               ["body", "payload", "items", 3, "name"]),
        id="POST /workflow/execute",
    ),
    pytest.param(
        Target("post", "/events",
               {"name": "razorpay/payment.captured", "data": {"items": ITEMS}},
               ["body", "data", "items", 3, "name"]),
        id="POST /events",
    ),
    pytest.param(
        Target("post", "/workflows/{wf}/dry-run", {"payload": {"note": "__hostile__"}},
               ["body", "payload", "note"]),
        id="POST /workflows/{id}/dry-run",
    ),
    pytest.param(
        Target("post", "/intent-parser", {"session_id": "kiosk-7", "text": "__hostile__"},
               ["body", "text"]),
        id="POST /intent-parser",
    ),
    pytest.param(
        Target("post", "/webhooks/razorpay",
               {"event": "payment.captured", "payload": {"payment": {"entity": {
                   "id": "pay_1", "notes": {"items": ITEMS}}}}},
               ["body", "payload", "payment", "entity", "notes", "items", 3, "name"],
               status=400, code="invalid_payload"),
        id="POST /webhooks/razorpay (signed)",
    ),
]  # fmt: skip


@pytest.mark.parametrize("value, reason", HOSTILE)
@pytest.mark.parametrize("target", TARGETS)
def test_hostile_json_is_refused_with_its_path_and_nothing_is_stored(
    client: TestClient, workflow_id: str, database_url: str, target: Target, value: str, reason: str
) -> None:
    before = _rows(database_url)
    error = _error(target.send(client, workflow_id, value), target.status, target.code)
    [first, *_] = error["details"]
    if reason.startswith("nested"):  # reported where the 65th level begins, inside the field
        assert first["loc"][: len(target.loc)] == target.loc
        assert len(first["loc"]) == 1 + 64  # "body" and 64 levels of keys and indexes
    else:
        assert first["loc"] == target.loc
    assert reason in first["message"]
    assert _rows(database_url) == before


@pytest.mark.parametrize(
    "key, loc_key",
    [
        pytest.param(r"a\u0000b", "a\\x00b", id="nul"),
        pytest.param(r"\udfff", "\\udfff", id="lone-surrogate"),
    ],
)
def test_hostile_object_keys_are_refused_with_the_key_escaped(
    client: TestClient, workflow_id: str, database_url: str, key: str, loc_key: str
) -> None:
    before = _rows(database_url)
    raw = f'{{"workflow_id": "{workflow_id}", "payload": {{"ok": 1, "{key}": 2}}}}'.encode()
    response = client.post(
        "/workflow/execute", content=raw, headers={"content-type": "application/json"}
    )
    error = _error(response, 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "payload", loc_key]
    assert _rows(database_url) == before


def test_several_problems_are_all_listed(client: TestClient, workflow_id: str) -> None:
    raw = b'{"name": "x", "data": {"a": NaN, "b": [1, "\\u0000"], "c": 1e999}}'
    response = client.post("/events", content=raw, headers={"content-type": "application/json"})
    error = _error(response, 422, "validation_error")
    assert [d["loc"] for d in error["details"]] == [
        ["body", "data", "a"],
        ["body", "data", "b", 1],
        ["body", "data", "c"],
    ]
    assert error["message"].endswith("(and 2 more)")


@pytest.mark.parametrize(
    "path, raw",
    [
        pytest.param("/workflow/execute", b'{"payload": {"name": "caf\xe9"}}', id="latin-1"),
        pytest.param("/intent-parser", b'{"session_id": "\xff", "text": "hi"}', id="0xff"),
        pytest.param("/events", b'{"name": "x", "data": {', id="truncated"),
    ],
)
def test_a_body_that_is_not_utf8_json_is_malformed(
    client: TestClient, database_url: str, path: str, raw: bytes
) -> None:
    before = _rows(database_url)
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    error = _error(response, 400, "malformed_json")
    assert error["details"][0]["loc"] == ["body"]
    assert _rows(database_url) == before


def test_event_data_must_be_an_object(client: TestClient, workflow_id: str) -> None:
    """``"data": null`` is refused (422), not coerced: event data is matched as
    ``event.data.<path>`` and becomes the trigger data of the runs it starts. Omitted is {}."""
    error = _error(
        client.post("/events", json={"name": "x", "data": None}), 422, "validation_error"
    )
    assert error["details"][0]["loc"] == ["body", "data"]
    error = _error(
        client.post("/workflow/execute", json={"workflow_id": workflow_id, "payload": None}),
        422,
        "validation_error",
    )
    assert error["details"][0]["loc"] == ["body", "payload"]
    assert client.post("/events", json={"name": "x"}).status_code == 202


# --- forms, query parameters, headers -----------------------------------------------------


def test_hostile_form_fields_are_refused(client: TestClient, database_url: str) -> None:
    form = client.post("/intent-parser", data={"session_id": "kiosk\x00", "text": "hi"})
    assert _error(form, 422, "validation_error")["details"][0]["loc"] == ["body", "session_id"]
    multipart = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="session_id"\r\n\r\nkiosk-7\r\n'
        b"--b\r\n"
        b'Content-Disposition: form-data; name="audio_file"; filename="note\x00.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\nRIFF\r\n"
        b"--b--\r\n"
    )
    upload = client.post(
        "/intent-parser",
        content=multipart,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    error = _error(upload, 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "audio_file", "filename"]
    assert _rows(database_url)["sessions"] == 0


@pytest.mark.parametrize(
    "url, loc",
    [
        pytest.param("/runs?trace_id=tr%00ace", ["query", "trace_id"], id="trace_id"),
        pytest.param("/workflows/{wf}/runs?cursor=%00", ["query", "cursor"], id="cursor"),
        pytest.param("/workflows/{wf}/runs?li%00mit=2", ["query", "li\\x00mit"], id="name"),
    ],
)
def test_hostile_query_parameters_are_refused(
    client: TestClient, workflow_id: str, url: str, loc: list[str]
) -> None:
    error = _error(client.get(url.format(wf=workflow_id)), 422, "validation_error")
    assert error["details"][0]["loc"] == loc
    assert "NUL" in error["details"][0]["message"]


@pytest.mark.parametrize(
    "name, value",
    [
        pytest.param("last-event-id", "²".encode("latin-1"), id="last-event-id ²"),
        pytest.param("last-event-id", b"abc", id="last-event-id abc"),
        pytest.param("x-api-key", "clé".encode("latin-1"), id="x-api-key"),
    ],
)
def test_malformed_headers_are_400(
    client: TestClient, workflow_id: str, name: str, value: bytes
) -> None:
    run_id = client.post("/workflow/execute", json={"workflow_id": workflow_id}).json()["run_id"]
    response = client.get(f"/runs/{run_id}/stream", headers={name: value})
    error = _error(response, 400, "invalid_header")
    assert error["details"][0]["loc"] == ["header", name]


# --- signed webhooks: the signature first, then the boundary ------------------------------


def test_an_unsigned_hostile_razorpay_body_gets_its_signature_error_first(
    client: TestClient, database_url: str
) -> None:
    raw = b'{"event": "payment.captured", "payload": {"x": "\\u0000", "y": NaN}}'
    for signature in ("0" * 64, "é".encode("latin-1")):
        response = client.post(
            "/webhooks/razorpay",
            content=raw,
            headers={"content-type": "application/json", "x-razorpay-signature": signature},
        )
        _error(response, 400, "invalid_signature")
    assert _rows(database_url)["webhook_deliveries"] == 0


@pytest.mark.parametrize(
    "event_id", [pytest.param("évt".encode("latin-1"), id="latin-1"), pytest.param("e" * 201)]
)
def test_a_malformed_razorpay_event_id_is_400_after_the_signature(
    client: TestClient, database_url: str, event_id: bytes | str
) -> None:
    raw = b'{"event": "payment.captured", "payload": {}}'
    headers: dict[str, Any] = {**_signed(raw), "x-razorpay-event-id": event_id}
    response = client.post("/webhooks/razorpay", content=raw, headers=headers)
    assert _error(response, 400, "invalid_header")["details"][0]["loc"] == [
        "header",
        "x-razorpay-event-id",
    ]
    assert _rows(database_url)["webhook_deliveries"] == 0


@pytest.fixture
def twilio_client(database_url: str) -> Iterator[TestClient]:
    settings = make_settings(
        database_url,
        tools={"twilio": {"auth_token": "twilio-token"}},
        public_base_url="https://bot.example.com",
        allow_open_access=True,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_whatsapp_checks_its_signature_then_the_boundary(
    twilio_client: TestClient, database_url: str
) -> None:
    params = {"MessageSid": "SM1", "From": "whatsapp:+919876543210", "Body": "hi\x00"}
    signature = RequestValidator("twilio-token").compute_signature(
        "https://bot.example.com/whatsapp", params
    )
    unsigned = twilio_client.post("/whatsapp", data=params, headers={"X-Twilio-Signature": "x"})
    _error(unsigned, 403, "invalid_signature")
    signed = twilio_client.post("/whatsapp", data=params, headers={"X-Twilio-Signature": signature})
    assert _error(signed, 400, "invalid_payload")["details"][0]["loc"] == ["body", "Body"]
    assert _rows(database_url) == dict.fromkeys(TABLES, 0)


# --- one boundary for every router ---------------------------------------------------------


def test_every_router_but_the_signed_webhooks_applies_the_boundary() -> None:
    """A new router that forgets ``route_class=CheckedRoute`` lets hostile input through."""
    exempt = {
        "webhooks": "signature first",
        "hooks": "token and signature first (tests/test_hooks.py)",
        "health": "reads no input",
    }
    for info in pkgutil.iter_modules(routers.__path__):
        router = getattr(importlib.import_module(f"{routers.__name__}.{info.name}"), "router", None)
        if router is None or info.name in exempt:
            continue
        for route in router.routes:
            assert isinstance(route, CheckedRoute), f"{info.name}: {route}"


# --- an oversize body over a real socket -----------------------------------------------------


@pytest.fixture
def server(settings: Settings) -> Iterator[int]:
    """The API under uvicorn on a free port (the reset only shows on a real connection)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    api = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=api.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not api.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield sock.getsockname()[1]
    api.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversize_body_sent_whole_gets_its_413(server: int, chunked: bool) -> None:
    """8 MiB to a 1 MiB limit, the whole body sent before the answer is read, on a connection
    the client closes after it (as urllib does): the 413 arrives, not a reset."""
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    body = b"x" * (8 << 20)
    headers = {"content-type": "application/json", "connection": "close"}
    if chunked:
        conn.request("POST", "/events", body=iter([body]), headers=headers, encode_chunked=True)
    else:
        conn.request("POST", "/events", body=body, headers=headers)
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    conn.close()
