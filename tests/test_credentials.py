"""Credentials (connections): a vault per user, encrypted at rest, named by blueprints, used
inside steps only, and never seen again — in any table, API response or log line.

Vendor APIs are mocked at the transport (``responses`` under the Razorpay SDK) or served by a
local peer (the http tool), so the real tool and SDK code runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import responses
from aioresponses import aioresponses
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg import sql
from twilio.request_validator import RequestValidator
from yarl import URL

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.integrations import CREDENTIAL_TYPES
from blueprint_engine.workflows.runners.inngest import RUN_REQUESTED
from tests.conftest import ALICE, BOB, InngestApp, make_settings
from tests.support import InngestServer, Peer, as_user, wait_for_run
from tests.test_channels import PUBLIC, FakeOpenAI

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()

#: Secrets planted in credentials: none may appear anywhere but in the request that sends it.
BEARER = "tok_PLANTED_bearer_5f1c9a2e"
RZP_SECRET = "rzpsec_PLANTED_key_77aa01"
RZP_HOOK = "whsec_PLANTED_hook_88bb02"
BASIC_PASSWORD = "pw_PLANTED_basic_99cc03"
#: Secrets written into blueprints: refused, so stored nowhere either.
HEADER_LITERAL = "PLANTED_header_66dd04"
URL_PASSWORD = "PLANTED_urlpass_55ee05"
#: A base64 API key sent in the query string (so also as AbC%2BdEf…%3D%3D).
QUERY_KEY = "AbC+dEf/PLANTED_query==="
PLANTED = (
    BEARER,
    RZP_SECRET,
    RZP_HOOK,
    BASIC_PASSWORD,
    HEADER_LITERAL,
    URL_PASSWORD,
    QUERY_KEY,
    "AbC%2BdEf%2FPLANTED_query%3D%3D%3D",
)


def _settings(database_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"supabase_jwt_secret": "test-supabase-jwt-secret-with-32-bytes-or-more"}
    base.update(overrides)
    return make_settings(database_url, **base)


@pytest.fixture
def vault(database_url: str) -> Iterator[TestClient]:
    """The API with accounts and CREDENTIALS_KEY set."""
    with TestClient(create_app(_settings(database_url, credentials_key=KEY_A))) as client:
        yield client


def _create(client: TestClient, user: str, name: str, kind: str, data: dict[str, Any]) -> Any:
    response = client.post(
        "/credentials", json={"name": name, "type": kind, "data": data}, headers=as_user(user)
    )
    assert response.status_code == 201, response.text
    return response.json()


def _http_node(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "call",
        "type": "action",
        "service": "http",
        "task": "request",
        "params": {"method": "POST", "url": url, "json": {"order": "{{ trigger_data.order }}"}},
        **fields,
    }


def _blueprint(*actions: dict[str, Any], trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    start = {"id": "start", "type": "trigger", "trigger": "manual", **(trigger or {})}
    nodes = [start, *actions]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"name": "Connections test", "nodes": nodes, "edges": edges}


def _run_adhoc(client: TestClient, user: str, action: dict[str, Any], payload: Any) -> Any:
    """Run an unsaved one-action blueprint as ``user``; the finished run."""
    response = client.post(
        "/workflow/execute",
        json={"blueprint": _blueprint(action), "payload": payload},
        headers=as_user(user),
    )
    assert response.status_code == 202, response.text
    return wait_for_run(client, response.json()["run_id"], headers=as_user(user))


def _dump(database_url: str) -> str:
    """Every row of every table of the schema, as text."""
    parts = []
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables"
            " where table_schema = 'public' and table_type = 'BASE TABLE' order by 1"
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(
                sql.SQL("select t::text from {} t").format(sql.Identifier(table))
            ).fetchall()
            parts.extend(f"{table}: {row[0]}" for row in rows)
    return "\n".join(parts)


def _assert_absent(text: str, where: str, secrets: tuple[str, ...] = PLANTED) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret} found in {where}"


# --- the vault API ------------------------------------------------------------------------------


def test_credential_lifecycle_never_returns_the_secret(vault: TestClient) -> None:
    created = _create(
        vault,
        ALICE,
        "shop",
        "razorpay",
        {
            "key_id": "rzp_test_AbCdEf123456",
            "key_secret": RZP_SECRET,
            "webhook_secret": RZP_HOOK,
        },
    )
    assert created["type"] == "razorpay" and created["name"] == "shop"
    assert created["hint"] == "rzp_test_AbCdEf123456 · ••••aa01"
    assert created["webhook_url"].endswith(f"/webhooks/razorpay/{created['id']}")
    listed = vault.get("/credentials", headers=as_user(ALICE))
    assert [c["name"] for c in listed.json()] == ["shop"]
    assert vault.get("/credentials", headers=as_user(BOB)).json() == []

    again = vault.post(
        "/credentials",
        json={
            "name": "shop",
            "type": "razorpay",
            "data": {"key_id": "rzp_test_x1y2z3", "key_secret": "abcdefgh1"},
        },
        headers=as_user(ALICE),
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "credential_exists"

    rotated = vault.put(
        "/credentials/shop",
        json={
            "data": {"key_id": "rzp_test_NewKey987654", "key_secret": "a-much-longer-secret-1234"}
        },
        headers=as_user(ALICE),
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["hint"] == "rzp_test_NewKey987654 · ••••1234"
    assert (
        vault.put("/credentials/shop", json={"data": {}}, headers=as_user(BOB)).status_code == 404
    )

    assert vault.delete("/credentials/shop", headers=as_user(BOB)).status_code == 404
    assert vault.delete("/credentials/shop", headers=as_user(ALICE)).status_code == 204
    assert vault.get("/credentials", headers=as_user(ALICE)).json() == []
    for response in (created, listed.json(), rotated.json()):
        _assert_absent(json.dumps(response), "a response")


@pytest.mark.parametrize(
    ("body", "loc", "code"),
    [
        ({"name": "x", "type": "nope", "data": {}}, ["body", "type"], "validation_error"),
        (
            {"name": "x", "type": "http_bearer", "data": {}},
            ["body", "data", "token"],
            "validation_error",
        ),
        (
            {
                "name": "x",
                "type": "twilio",
                "data": {
                    "account_sid": "ACnothex",
                    "auth_token": BEARER,
                    "whatsapp_from": "+14155238886",
                },
            },
            ["body", "data", "account_sid"],
            "validation_error",
        ),
        (
            {"name": "x", "type": "http_bearer", "data": {"token": BEARER, "extra": 1}},
            ["body", "data", "extra"],
            "validation_error",
        ),
        (
            {"name": "../etc", "type": "http_bearer", "data": {"token": BEARER}},
            ["body", "name"],
            None,
        ),
        (
            {"name": "x", "type": "http_bearer", "data": {"token": f"{BEARER}\r\nX-Evil: 1"}},
            ["body", "data", "token"],
            "validation_error",
        ),
        (
            {
                "name": "x",
                "type": "http_header",
                "data": {"header": "X-A", "value": f"{BEARER}\nX-Evil: 1"},
            },
            ["body", "data", "value"],
            "validation_error",
        ),
    ],
)
def test_bad_credentials_are_422_naming_the_field_and_never_echo_values(
    vault: TestClient, body: dict[str, Any], loc: list[str], code: str | None
) -> None:
    response = vault.post("/credentials", json=body, headers=as_user(ALICE))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"][0]["loc"] == loc
    if code:
        assert error["code"] == code
    _assert_absent(response.text, "a 422")


def test_without_a_key_saving_is_503_saying_how_to_make_one(database_url: str) -> None:
    with TestClient(create_app(_settings(database_url))) as client:
        response = client.post(
            "/credentials",
            json={"name": "api", "type": "http_bearer", "data": {"token": BEARER}},
            headers=as_user(ALICE),
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "credentials_key_missing"
    assert "wf credentials new-key" in error["message"]


def test_a_malformed_key_stops_start_up_without_printing_it() -> None:
    with pytest.raises(ValueError, match="CREDENTIALS_KEY key 2 is not a Fernet key") as info:
        Settings(_env_file=None, credentials_key=f"{KEY_A},not-a-key-SECRETISH")  # type: ignore[call-arg]
    assert "SECRETISH" not in str(info.value)


def test_personal_api_keys_cannot_change_credentials(vault: TestClient) -> None:
    key = vault.post("/me/api-keys", json={"name": "bot"}, headers=as_user(ALICE)).json()["key"]
    response = vault.post(
        "/credentials",
        json={"name": "api", "type": "http_bearer", "data": {"token": BEARER}},
        headers={"X-API-Key": key},
    )
    assert response.status_code == 403
    assert vault.get("/credentials", headers={"X-API-Key": key}).status_code == 200


# --- references in blueprints -------------------------------------------------------------------


def test_references_are_checked_against_the_owner_and_the_tool(vault: TestClient) -> None:
    _create(vault, ALICE, "api", "http_bearer", {"token": BEARER})
    _create(vault, BOB, "bobs", "http_bearer", {"token": "bob-token-1234"})
    cases = {
        "missing": (
            _http_node("https://example.com/x", credential="nope"),
            "no credential named 'nope'",
        ),
        "wrong owner": (
            _http_node("https://example.com/x", credential="bobs"),
            "no credential named 'bobs'",
        ),
        "wrong type": (
            {
                "id": "call",
                "type": "action",
                "service": "razorpay",
                "task": "fetch_payment",
                "params": {"payment_id": "pay_1"},
                "credential": "api",
            },
            "is of type http_bearer; razorpay takes razorpay",
        ),
    }
    for label, (action, message) in cases.items():
        response = vault.post(
            "/workflows", json={"blueprint": _blueprint(action)}, headers=as_user(ALICE)
        )
        assert response.status_code == 422, label
        detail = response.json()["error"]["details"][0]
        assert detail["loc"] == ["nodes", 1, "credential"] and detail["node_id"] == "call", label
        assert message in detail["message"], label
        adhoc = vault.post(
            "/workflow/execute",
            json={"blueprint": _blueprint(action), "payload": {}},
            headers=as_user(ALICE),
        )
        assert adhoc.status_code == 422, label
    transform = {
        "id": "call",
        "type": "action",
        "service": "transform",
        "task": "build",
        "params": {"fields": {}},
        "credential": "api",
    }
    response = vault.post(
        "/workflows", json={"blueprint": _blueprint(transform)}, headers=as_user(ALICE)
    )
    assert response.status_code == 422
    assert "transform takes no credential" in response.text


def test_secrets_written_into_a_blueprint_are_refused(vault: TestClient) -> None:
    header = _http_node("https://example.com/x")
    header["params"]["headers"] = {"Authorization": f"Bearer {HEADER_LITERAL}"}
    userinfo = _http_node(f"https://admin:{URL_PASSWORD}@example.com/x")
    for action, loc in (
        (header, ["nodes", 1, "params", "headers", "Authorization"]),
        (userinfo, ["nodes", 1, "params", "url"]),
    ):
        response = vault.post(
            "/workflows", json={"blueprint": _blueprint(action)}, headers=as_user(ALICE)
        )
        assert response.status_code == 422, response.text
        detail = response.json()["error"]["details"][0]
        assert detail["loc"] == loc and "credential" in detail["message"]
        _assert_absent(response.text, "a 422")
    templated = _http_node("https://example.com/x")
    templated["params"]["headers"] = {"Authorization": "Bearer {{ trigger_data.token }}"}
    assert (
        vault.post(
            "/workflows", json={"blueprint": _blueprint(templated)}, headers=as_user(ALICE)
        ).status_code
        == 201
    )


def test_deleting_a_credential_an_active_workflow_uses_is_409(vault: TestClient) -> None:
    _create(vault, ALICE, "api", "http_bearer", {"token": BEARER})
    wf = vault.post(
        "/workflows",
        json={
            "name": "Nightly sync",
            "blueprint": _blueprint(_http_node("https://example.com/x", credential="api")),
        },
        headers=as_user(ALICE),
    ).json()
    needs = vault.get(f"/workflows/{wf['id']}", headers=as_user(ALICE)).json()["credentials"]
    assert needs == [
        {
            "name": "api",
            "types": ["http_bearer", "http_basic", "http_header", "http_query"],
            "nodes": ["call"],
            "present": True,
            "type": "http_bearer",
        }
    ]
    assert vault.post(f"/workflows/{wf['id']}/activate", headers=as_user(ALICE)).status_code == 200
    response = vault.delete("/credentials/api", headers=as_user(ALICE))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "credential_in_use"
    assert error["details"]["workflows"] == [{"id": wf["id"], "name": "Nightly sync"}]
    assert (
        vault.post(f"/workflows/{wf['id']}/deactivate", headers=as_user(ALICE)).status_code == 200
    )
    assert vault.delete("/credentials/api", headers=as_user(ALICE)).status_code == 204
    needs = vault.get(f"/workflows/{wf['id']}", headers=as_user(ALICE)).json()["credentials"]
    assert needs[0]["present"] is False
    again = vault.post(f"/workflows/{wf['id']}/activate", headers=as_user(ALICE))
    assert again.status_code == 422, "a workflow whose connection is gone does not go live"
    assert again.json()["error"]["details"][0]["loc"] == ["nodes", 1, "credential"]


def test_tools_say_which_credential_types_each_task_takes(vault: TestClient) -> None:
    tools = {t["service"]: t for t in vault.get("/tools", headers=as_user(ALICE)).json()["tools"]}
    assert tools["razorpay"]["tasks"][0]["credential_types"] == ["razorpay"]
    assert tools["whatsapp"]["tasks"][0]["credential_types"] == ["twilio"]
    assert tools["transform"]["tasks"][0]["credential_types"] == []
    assert tools["email"]["tasks"][0]["credential_types"] == ["smtp"]
    types = {t["type"]: t for t in vault.get("/credentials/types", headers=as_user(ALICE)).json()}
    # every type a tool or trigger declares (a new tool's need no line here)
    assert set(types) == set(CREDENTIAL_TYPES)
    assert {
        "twilio",
        "razorpay",
        "http_bearer",
        "http_basic",
        "http_header",
        "http_query",
        "openai",
        "webhook_secret",
    } <= set(types)
    assert types["http_bearer"]["schema"]["properties"]["token"]["writeOnly"] is True
    # a webhook trigger's signing secret is no tool's: the trigger takes it
    assert types["webhook_secret"]["services"] == []
    assert types["webhook_secret"]["triggers"] == ["webhook"]
    assert types["webhook_secret"]["schema"]["properties"]["secret"]["writeOnly"] is True


# --- in a run: used inside the step, recorded nowhere ------------------------------------------


def test_a_planted_secret_never_reaches_a_table_a_response_or_the_log(
    vault: TestClient, peer: Peer, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The http tool sends the credential; the peer echoes it back in its headers, its body and
    its error. Then the whole database is dumped and searched, with every API response the
    dashboard would read and every log line."""
    caplog.set_level(logging.DEBUG)
    peer.handlers["/echo"] = lambda body: (
        200,
        {
            "seen": peer.headers["/echo"][-1],
            "note": f"you sent {peer.headers['/echo'][-1]['Authorization']}",
        },
    )
    peer.handlers["/deny"] = lambda body: (
        401,
        {"error": "bad token", "got": peer.headers["/deny"][-1].get("Authorization")},
    )
    _create(vault, ALICE, "echo_api", "http_bearer", {"token": BEARER})
    _create(
        vault, ALICE, "basic_api", "http_basic", {"username": "shop", "password": BASIC_PASSWORD}
    )
    _create(
        vault,
        ALICE,
        "shop",
        "razorpay",
        {
            "key_id": "rzp_test_AbCdEf123456",
            "key_secret": RZP_SECRET,
            "webhook_secret": RZP_HOOK,
        },
    )
    _create(vault, ALICE, "query_api", "http_query", {"parameter": "api_key", "value": QUERY_KEY})
    blueprint = _blueprint(
        _http_node(f"{peer.url}/echo", credential="echo_api"),
        {**_http_node(f"{peer.url}/echo", credential="basic_api"), "id": "basic"},
        {
            **_http_node(f"{peer.url}/deny", credential="echo_api"),
            "id": "denied",
            "on_error": "continue",
        },
        {**_http_node(f"{peer.url}/q", credential="query_api"), "id": "query"},
    )
    peer.handlers["/q"] = lambda body: (200, {"you_asked_for": peer.targets["/q"][-1]})
    wf = vault.post("/workflows", json={"blueprint": blueprint}, headers=as_user(ALICE))
    assert wf.status_code == 201, wf.text
    started = vault.post(
        "/workflow/execute",
        json={"workflow_id": wf.json()["id"], "payload": {"order": "A-1"}},
        headers=as_user(ALICE),
    )
    assert started.status_code == 202, started.text
    run = wait_for_run(vault, started.json()["run_id"], headers=as_user(ALICE))
    assert run["status"] == "succeeded", run

    sent = peer.headers["/echo"]
    assert sent[0]["Authorization"] == f"Bearer {BEARER}", "the tool really sent the credential"
    pair = base64.b64encode(f"shop:{BASIC_PASSWORD}".encode()).decode()
    assert sent[1]["Authorization"] == f"Basic {pair}"
    assert peer.targets["/q"][0] == "/q?api_key=AbC%2BdEf%2FPLANTED_query%3D%3D%3D"
    nodes = {n["id"]: n for n in run["nodes"]}
    assert nodes["query"]["output"]["body"]["you_asked_for"] == "/q?api_key=[redacted]"
    assert nodes["call"]["output"]["body"]["seen"]["Authorization"] == "[redacted]"
    assert nodes["call"]["output"]["body"]["note"] == "you sent Bearer [redacted]"
    assert nodes["basic"]["output"]["body"]["note"] == "you sent Basic [redacted]"
    assert nodes["denied"]["status"] == "failed"
    assert nodes["denied"]["output"]["error"]["details"]["body"]["got"] == "Bearer [redacted]"

    responses_seen = [
        vault.get(path, headers=as_user(ALICE)).text
        for path in (
            f"/runs/{run['id']}",
            f"/runs/{run['id']}/logs",
            "/runs",
            "/credentials",
            f"/workflows/{wf.json()['id']}",
            "/workflows",
        )
    ]
    secrets = (*PLANTED, pair)
    _assert_absent("\n".join(responses_seen), "an API response", secrets)
    _assert_absent(_dump(database_url), "the database", secrets)
    _assert_absent("\n".join(r.getMessage() for r in caplog.records), "the log", secrets)
    # the vault holds Fernet tokens, and the credentials really are in the dump
    assert "credentials: " in _dump(database_url)


def test_secret_named_fields_are_redacted_in_step_records(vault: TestClient, peer: Peer) -> None:
    """A value templated into a secret-named header is the user's to send, but not to record."""
    action = _http_node(f"{peer.url}/hook")
    action["params"]["headers"] = {"X-Api-Key": "{{ trigger_data.key }}"}
    response = vault.post(
        "/workflow/execute",
        json={"blueprint": _blueprint(action), "payload": {"order": "A-2", "key": "k-1234567"}},
        headers=as_user(ALICE),
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    run = wait_for_run(vault, run_id, headers=as_user(ALICE))
    assert peer.headers["/hook"][0]["X-Api-Key"] == "k-1234567"
    logs = vault.get(f"/runs/{run_id}/logs", headers=as_user(ALICE)).json()
    step = next(row for row in logs["logs"] if row["node_id"] == "call")
    assert step["input"]["headers"]["X-Api-Key"] == "[redacted]"
    assert run["status"] == "succeeded"


def test_razorpay_steps_use_the_nodes_credential_over_the_settings(vault: TestClient) -> None:
    _create(
        vault,
        ALICE,
        "shop",
        "razorpay",
        {"key_id": "rzp_test_AliceKey01", "key_secret": RZP_SECRET},
    )
    action = {
        "id": "fetch",
        "type": "action",
        "service": "razorpay",
        "task": "fetch_payment",
        "params": {"payment_id": "pay_Ex1"},
        "credential": "shop",
    }
    with responses.RequestsMock() as mock:
        call = mock.get(
            "https://api.razorpay.com/v1/payments/pay_Ex1",
            json={"id": "pay_Ex1", "amount": 100, "echo": RZP_SECRET},
        )
        response = vault.post(
            "/workflow/execute",
            json={"blueprint": _blueprint(action), "payload": {}},
            headers=as_user(ALICE),
        )
        run = wait_for_run(vault, response.json()["run_id"], headers=as_user(ALICE))
    assert run["status"] == "succeeded", run
    auth = call.calls[0].request.headers["Authorization"]
    assert (
        auth == "Basic " + base64.b64encode(f"rzp_test_AliceKey01:{RZP_SECRET}".encode()).decode()
    )
    output = next(n for n in run["nodes"] if n["id"] == "fetch")["output"]
    assert output["echo"] == "[redacted]" and "sandbox" not in output


def test_a_dry_run_shows_the_reference_not_the_values(vault: TestClient) -> None:
    _create(vault, ALICE, "echo_api", "http_bearer", {"token": BEARER})
    wf = vault.post(
        "/workflows",
        json={
            "blueprint": _blueprint(
                _http_node("https://example.com/x", credential="echo_api"),
                {
                    "id": "after",
                    "type": "action",
                    "service": "transform",
                    "task": "build",
                    "params": {"fields": {"status": "{{ steps.call.output.status_code }}"}},
                },
            )
        },
        headers=as_user(ALICE),
    ).json()
    result = vault.post(
        f"/workflows/{wf['id']}/dry-run", json={"payload": {"order": "A-3"}}, headers=as_user(ALICE)
    )
    assert result.status_code == 200, result.text
    call = next(n for n in result.json()["nodes"] if n["id"] == "call")
    assert call["output"]["credential"] == "echo_api" and call["output"]["sandbox"] is True
    assert result.json()["status"] == "succeeded", "later steps read the sandboxed output"
    _assert_absent(result.text, "a dry run")


# --- key rotation ---------------------------------------------------------------------------------


def test_rotating_the_key_keeps_every_credential_readable(peer: Peer, database_url: str) -> None:
    """Each phase runs its own API (its own runner), so no runner with other keys claims the
    runs meant to prove what a key opens."""
    with TestClient(create_app(_settings(database_url, credentials_key=KEY_A))) as first:
        _create(first, ALICE, "echo_api", "http_bearer", {"token": BEARER})
        _create(
            first, BOB, "echo_api", "http_header", {"header": "X-Key", "value": "bob-value-123456"}
        )
    before = _dump(database_url)
    env = {"DATABASE_URL": database_url, "CREDENTIALS_KEY": f"{KEY_B},{KEY_A}", "PATH": ""}
    rotated = subprocess.run(
        [sys.executable, "-m", "blueprint_engine.cli", "credentials", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 2 credential(s)" in rotated.stdout
    assert _dump(database_url) != before
    peer.handlers["/echo"] = lambda body: (200, {"ok": True})
    call = _http_node(f"{peer.url}/echo", credential="echo_api")
    with TestClient(create_app(_settings(database_url, credentials_key=KEY_B))) as only_new:
        for user in (ALICE, BOB):
            run = _run_adhoc(only_new, user, call, {"order": "R"})
            assert run["status"] == "succeeded", run["error"]
    assert peer.headers["/echo"][0]["Authorization"] == f"Bearer {BEARER}"
    assert peer.headers["/echo"][1]["X-Key"] == "bob-value-123456"
    # and with only the old key, nothing decrypts any more: the step says so, without retrying
    with TestClient(create_app(_settings(database_url, credentials_key=KEY_A))) as only_old:
        run = _run_adhoc(only_old, ALICE, call, {"order": "R"})
    assert run["status"] == "failed" and run["error"]["code"] == "credential_unreadable"


# --- per-user Razorpay webhooks -------------------------------------------------------------------


def _signed(client: TestClient, url: str, payload: Any, secret: str, event_id: str) -> Any:
    body = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        url,
        content=body,
        headers={
            "content-type": "application/json",
            "x-razorpay-signature": digest,
            "x-razorpay-event-id": event_id,
        },
    )


def test_each_users_razorpay_webhook_starts_only_their_runs(vault: TestClient) -> None:
    urls, workflows = {}, {}
    for user, secret in ((ALICE, "whsec_alice_12345"), (BOB, "whsec_bob_678901")):
        created = _create(
            vault,
            user,
            "shop",
            "razorpay",
            {
                "key_id": "rzp_test_Shop000001",
                "key_secret": "key-secret-123",
                "webhook_secret": secret,
            },
        )
        urls[user] = created["webhook_url"].split("localhost:8000", 1)[1]
        end = {
            "id": "done",
            "type": "end",
            "output": {"paid": "{{ trigger_data.payload.payment.entity.id }}"},
        }
        wf = vault.post(
            "/workflows",
            json={
                "blueprint": _blueprint(
                    end, trigger={"trigger": "event", "event": "razorpay/payment.captured"}
                )
            },
            headers=as_user(user),
        ).json()
        assert (
            vault.post(f"/workflows/{wf['id']}/activate", headers=as_user(user)).status_code == 200
        )
        workflows[user] = wf["id"]
    payload = {"event": "payment.captured", "payload": {"payment": {"entity": {"id": "pay_A1"}}}}

    to_alice = _signed(vault, urls[ALICE], payload, "whsec_alice_12345", "evt_1")
    assert to_alice.status_code == 200, to_alice.text
    [run_id] = to_alice.json()["started_run_ids"]
    run = wait_for_run(vault, run_id, headers=as_user(ALICE))
    assert run["workflow_id"] == workflows[ALICE] and run["output"] == {"paid": "pay_A1"}
    assert vault.get(f"/runs/{run_id}", headers=as_user(BOB)).status_code == 404
    bob_runs = vault.get("/runs", headers=as_user(BOB)).json()["runs"]
    assert bob_runs == []

    forged = _signed(vault, urls[ALICE], payload, "whsec_bob_678901", "evt_2")
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_signature"
    duplicate = _signed(vault, urls[ALICE], payload, "whsec_alice_12345", "evt_1")
    assert duplicate.json()["duplicate"] is True
    to_bob = _signed(vault, urls[BOB], payload, "whsec_bob_678901", "evt_1")
    assert to_bob.status_code == 200 and not to_bob.json()["duplicate"]
    [bob_run] = to_bob.json()["started_run_ids"]
    assert wait_for_run(vault, bob_run, headers=as_user(BOB))["workflow_id"] == workflows[BOB]

    unknown = _signed(
        vault, "/webhooks/razorpay/00000000-0000-4000-8000-000000000009", payload, "x", "evt_3"
    )
    assert unknown.status_code == 404
    no_secret = _create(
        vault,
        ALICE,
        "plain",
        "razorpay",
        {"key_id": "rzp_test_Plain00001", "key_secret": "key-secret-123"},
    )
    response = _signed(vault, f"/webhooks/razorpay/{no_secret['id']}", payload, "x", "evt_4")
    assert (
        response.status_code == 503 and response.json()["error"]["code"] == "webhook_not_configured"
    )


# --- a user's own WhatsApp number ----------------------------------------------------------------

ALICE_SID = "AC" + "a1" * 16
ALICE_TOKEN = "alice-twilio-auth-token-0001"
ALICE_SENDER = "+919876543210"
BOB_SENDER = "+919800000002"


def _twilio_post(
    client: TestClient, path: str, token: str, sender: str, body: str, sid: str
) -> Any:
    params = {
        "MessageSid": sid,
        "From": f"whatsapp:{sender}",
        "To": "whatsapp:+14155550100",
        "Body": body,
        "NumMedia": "0",
    }
    signature = RequestValidator(token).compute_signature(f"{PUBLIC}{path}", params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def test_messages_to_a_users_own_number_act_for_that_user_only(
    database_url: str, peer: Peer
) -> None:
    llm = FakeOpenAI(peer)
    settings = _settings(
        database_url,
        credentials_key=KEY_A,
        public_base_url=PUBLIC,
        openai_base_url=llm.url,
        openai_api_key="sk-test",
        llm_backoff_seconds=0,
        channel_reply_wait_seconds=5,
    )
    messages_url = f"https://api.twilio.com/2010-04-01/Accounts/{ALICE_SID}/Messages.json"
    with TestClient(create_app(settings)) as client, aioresponses() as twilio:
        made = _create(
            client,
            ALICE,
            "my_number",
            "twilio",
            {
                "account_sid": ALICE_SID,
                "auth_token": ALICE_TOKEN,
                "whatsapp_from": "+14155550100",
            },
        )
        assert made["hint"] == f"{ALICE_SID} · whatsapp:+14155550100 · ••••0001"
        path = made["webhook_url"].removeprefix(PUBLIC)
        assert path == f"/whatsapp/{made['id']}"
        assert client.get("/me", headers=as_user(BOB)).status_code == 200  # Bob signs up
        with psycopg.connect(database_url, autocommit=True) as conn:
            for owner, number in ((ALICE, ALICE_SENDER), (BOB, BOB_SENDER)):
                conn.execute(
                    "insert into channel_links (owner_id, channel, number)"
                    " values (%s, 'whatsapp', %s)",
                    (owner, number),
                )
        twilio.post(
            messages_url,
            status=201,
            payload={"sid": "SM" + "0" * 32, "status": "queued", "to": "whatsapp:+919812345678"},
        )

        llm.say("SEND_WHATSAPP", to="+919812345678", message="Your order shipped")
        answer = _twilio_post(
            client,
            path,
            ALICE_TOKEN,
            ALICE_SENDER,
            "tell +919812345678 your order shipped",
            "SM-alice-1",
        )
        assert answer.status_code == 200, answer.text
        assert "Sent your WhatsApp message to +91 98123 45678." in answer.text
        [call] = twilio.requests[("POST", URL(messages_url))]
        assert (call.kwargs["auth"].login, call.kwargs["auth"].password) == (ALICE_SID, ALICE_TOKEN)
        assert call.kwargs["data"]["From"] == "whatsapp:+14155550100"
        sessions = client.get("/sessions", headers=as_user(ALICE)).json()["sessions"]
        assert len(sessions) == 1

        forged = _twilio_post(client, path, "some-other-token", ALICE_SENDER, "hi", "SM-forged")
        assert forged.status_code == 403
        stranger = _twilio_post(
            client, path, ALICE_TOKEN, BOB_SENDER, "refund everything", "SM-bob-1"
        )
        assert stranger.status_code == 200 and "link" in stranger.text.lower()
        assert client.get("/sessions", headers=as_user(BOB)).json()["sessions"] == []
        assert len(client.get("/sessions", headers=as_user(ALICE)).json()["sessions"]) == 1
        unknown = _twilio_post(
            client,
            "/whatsapp/00000000-0000-4000-8000-000000000009",
            ALICE_TOKEN,
            ALICE_SENDER,
            "hi",
            "SM-x",
        )
        assert unknown.status_code == 404
        runs = client.get("/runs", headers=as_user(ALICE)).json()["runs"]
        _assert_absent(json.dumps(runs), "runs", (ALICE_TOKEN,))
    _assert_absent(_dump(database_url), "the database", (ALICE_TOKEN,))


def test_on_inngest_the_step_gets_the_credential_and_records_none_of_it(
    database_url: str, peer: Peer
) -> None:
    """The Inngest runner loads the owner's credential inside the step, like the embedded one:
    driven over HTTP the way the Inngest executor does, the peer gets the token and the step's
    memo (what Inngest stores), the logs and the run hold none of it."""
    settings = make_settings(
        database_url,
        engine="inngest",
        inngest_dev="1",
        inngest_base_url=peer.url,
        inngest_event_key=InngestApp.EVENT_KEY,
        credentials_key=KEY_A,
    )
    peer.handlers["/echo"] = lambda body: (200, {"seen": peer.headers["/echo"][-1]})
    with TestClient(create_app(settings)) as client:
        app = InngestApp(client, peer)
        made = client.post(
            "/credentials", json={"name": "api", "type": "http_bearer", "data": {"token": BEARER}}
        )
        assert made.status_code == 201, made.text
        action = _http_node(f"{peer.url}/echo", credential="api")
        response = client.post(
            "/workflow/execute", json={"blueprint": _blueprint(action), "payload": {"order": "I"}}
        )
        assert response.status_code == 202, response.text
        server = InngestServer(client, app.events(RUN_REQUESTED)[0])
        server.drive()
        run = wait_for_run(client, response.json()["run_id"])
        assert run["status"] == "succeeded" and run["engine"] == "inngest", run["error"]
        assert peer.headers["/echo"][0]["Authorization"] == f"Bearer {BEARER}"
        seen = [
            client.get(f"/runs/{run['id']}").text,
            client.get(f"/runs/{run['id']}/logs").text,
            json.dumps(server.steps),  # the step results Inngest would store
        ]
    _assert_absent("\n".join(seen), "the Inngest run", (BEARER,))
    _assert_absent(_dump(database_url), "the database", (BEARER,))


def test_an_openai_connection_keeps_its_base_url(vault: TestClient) -> None:
    made = _create(
        vault,
        ALICE,
        "model",
        "openai",
        {"api_key": "sk-test-0123456789abcdef", "base_url": "https://llm.example.com/v1"},
    )
    assert made["hint"] == "https://llm.example.com/v1 · ••••cdef"
    rotated = vault.put(
        "/credentials/model",
        json={"data": {"api_key": "sk-test-fedcba9876543210", "model": "gpt-4o-mini"}},
        headers=as_user(ALICE),
    )
    assert rotated.status_code == 200, rotated.text


def test_an_http_connection_goes_only_to_its_allowed_hosts(vault: TestClient, peer: Peer) -> None:
    """A token limited to its API's host cannot be sent elsewhere by a blueprint (or by anyone
    holding a personal API key who can run one)."""
    peer.handlers["/echo"] = lambda body: (200, {"ok": True})
    _create(
        vault,
        ALICE,
        "pinned",
        "http_bearer",
        {"token": BEARER, "allowed_hosts": ["api.example.com"]},
    )
    _create(vault, ALICE, "local", "http_bearer", {"token": BEARER, "allowed_hosts": ["127.0.0.1"]})
    refused = _run_adhoc(
        vault, ALICE, _http_node(f"{peer.url}/echo", credential="pinned"), {"order": 1}
    )
    assert refused["status"] == "failed"
    assert refused["error"]["code"] == "credential_host_not_allowed"
    assert "/echo" not in peer.hits, "nothing was sent"
    allowed = _run_adhoc(
        vault, ALICE, _http_node(f"{peer.url}/echo", credential="local"), {"order": 1}
    )
    assert allowed["status"] == "succeeded", allowed["error"]


def test_literal_query_keys_in_a_url_are_refused(vault: TestClient) -> None:
    response = vault.post(
        "/workflows",
        json={"blueprint": _blueprint(_http_node("https://maps.example.com/api?key=AIzaLITERAL1"))},
        headers=as_user(ALICE),
    )
    assert response.status_code == 422
    assert "'key' parameter holds a secret" in response.json()["error"]["details"][0]["message"]
