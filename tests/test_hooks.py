"""Webhook triggers: a workflow's own URL, ``POST /hooks/{workflow_id}/{token}``.

Through the HTTP entry point on real PostgreSQL: bodies (JSON, forms, text) become trigger
data; the token is a hashed credential (404 for every wrong URL, the same answer whatever is
wrong); a signed hook checks HMAC-SHA256 with a ``webhook_secret`` credential; Idempotency-Key
starts one run however many deliveries race; ``respond: when_finished`` answers with the run's
end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.logs import HookTokenFilter
from blueprint_engine.services.progress_hub import ProgressHub
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import open_pool
from tests.conftest import ALICE, BOB, make_settings
from tests.support import JWT_SECRET, Peer, as_user, wait_for_run
from tests.test_credentials import _dump
from tests.test_metrics import delta, scrape

SECRET = "whsec_hook_PLANTED_signing_4242"


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    """The API with accounts (Alice, Bob) and a credentials vault."""
    settings = make_settings(
        database_url,
        supabase_jwt_secret=JWT_SECRET,
        credentials_key=Fernet.generate_key().decode(),
        hook_response_max_seconds=5.0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _blueprint(
    *,
    trigger: dict[str, Any] | None = None,
    middle: list[dict[str, Any]] | None = None,
    output: Any = "{{ trigger_data }}",
) -> dict[str, Any]:
    """webhook trigger -> (middle nodes) -> end whose output is ``output``."""
    nodes = [
        {"id": "start", "type": "trigger", "trigger": "webhook", **(trigger or {})},
        *(middle or []),
        {"id": "done", "type": "end", "output": output},
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": nodes, "edges": edges}


def _hook(client: TestClient, blueprint: dict[str, Any], user: str = ALICE) -> tuple[str, str]:
    """Save and activate ``blueprint`` as ``user``; its id and hook path (token included)."""
    saved = client.post("/workflows", json={"blueprint": blueprint}, headers=as_user(user))
    assert saved.status_code == 201, saved.text
    workflow = saved.json()
    assert workflow["hook"]["path"].startswith(f"/hooks/{workflow['id']}/"), workflow["hook"]
    assert workflow["hook"]["live"] is False  # saved, not active yet
    activated = client.post(f"/workflows/{workflow['id']}/activate", headers=as_user(user))
    assert activated.status_code == 200, activated.text
    assert activated.json()["hook"]["live"] is True
    assert activated.json()["hook"]["path"] is None, "the token is shown once"
    return workflow["id"], workflow["hook"]["path"]


def _runs(database_url: str, workflow_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select id, trigger_data, idempotency_key from workflow_runs where workflow_id = %s",
            (workflow_id,),
        ).fetchall()
    return [{"id": str(r[0]), "trigger_data": r[1], "idempotency_key": r[2]} for r in rows]


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def _secret(client: TestClient, name: str = "shop_hook", user: str = ALICE) -> None:
    created = client.post(
        "/credentials",
        json={"name": name, "type": "webhook_secret", "data": {"secret": SECRET}},
        headers=as_user(user),
    )
    assert created.status_code == 201, created.text


def _sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- bodies become trigger data ------------------------------------------------------------


def test_a_json_body_starts_the_workflow_with_body_headers_and_query(
    api: TestClient, database_url: str
) -> None:
    workflow_id, path = _hook(api, _blueprint())
    answer = api.post(
        f"{path}?source=shop&tag=a&tag=b",
        json={"order": "o-1", "amount": 4200, "items": [1, 2]},
        headers={"X-Shop": "demo", "Authorization": "Bearer sk_live_x", "Cookie": "sid=1"},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["created"] is True and body["status_url"] == f"/runs/{body['run_id']}"
    run = wait_for_run(api, body["run_id"], headers=as_user(ALICE))
    assert run["status"] == "succeeded", run["error"]
    data = run["trigger_data"]
    assert data["method"] == "POST"
    assert data["body"] == {"order": "o-1", "amount": 4200, "items": [1, 2]}
    assert data["query"] == {"source": "shop", "tag": ["a", "b"]}
    assert data["headers"]["x-shop"] == "demo"
    assert data["headers"]["content-type"] == "application/json"
    # the caller's credentials are not kept with the run
    assert {"authorization", "cookie"}.isdisjoint(data["headers"])
    assert "sk_live_x" not in json.dumps(_runs(database_url, workflow_id))
    assert run["output"] == data  # the end node saw it as trigger_data


def test_any_json_value_is_a_body(api: TestClient) -> None:
    _, path = _hook(api, _blueprint(output="{{ trigger_data.body }}"))
    for value in ([1, "two"], "text", 42, None):
        answer = api.post(
            path, content=json.dumps(value), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 202, answer.text
        run = wait_for_run(api, answer.json()["run_id"], headers=as_user(ALICE))
        assert run["trigger_data"]["body"] == value


def test_form_bodies_become_fields(api: TestClient) -> None:
    _, path = _hook(api, _blueprint())
    urlencoded = api.post(path, data={"name": "Asha", "amount": "12"})
    assert urlencoded.status_code == 202, urlencoded.text
    run = wait_for_run(api, urlencoded.json()["run_id"], headers=as_user(ALICE))
    assert run["trigger_data"]["body"] == {"name": "Asha", "amount": "12"}

    repeated = api.post(
        path,
        content=b"tag=a&tag=b&note=hi+there",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    run = wait_for_run(api, repeated.json()["run_id"], headers=as_user(ALICE))
    assert run["trigger_data"]["body"] == {"tag": ["a", "b"], "note": "hi there"}

    multipart = api.post(path, files={"name": (None, "Asha"), "city": (None, "Pune")})
    assert multipart.status_code == 202, multipart.text
    run = wait_for_run(api, multipart.json()["run_id"], headers=as_user(ALICE))
    assert run["trigger_data"]["body"] == {"name": "Asha", "city": "Pune"}


def test_text_and_empty_bodies(api: TestClient) -> None:
    _, path = _hook(api, _blueprint())
    text = api.post(path, content="deploy finished", headers={"content-type": "text/plain"})
    run = wait_for_run(api, text.json()["run_id"], headers=as_user(ALICE))
    assert run["trigger_data"]["body"] == "deploy finished"
    empty = api.post(path)
    assert empty.status_code == 202, empty.text
    run = wait_for_run(api, empty.json()["run_id"], headers=as_user(ALICE))
    assert run["trigger_data"]["body"] is None


def test_unknown_content_types_and_files_are_415(api: TestClient, database_url: str) -> None:
    workflow_id, path = _hook(api, _blueprint())
    xml = api.post(path, content=b"<a/>", headers={"content-type": "application/xml"})
    assert "application/json" in _error(xml, 415, "unsupported_media_type")["message"]
    untyped = api.post(path, content=b"\x00\x01", headers={"content-type": ""})
    _error(untyped, 415, "unsupported_media_type")
    upload = api.post(path, files={"doc": ("a.txt", b"hello", "text/plain")})
    _error(upload, 415, "files_not_accepted")
    assert _runs(database_url, workflow_id) == []


def test_bodies_the_database_cannot_hold_are_400_naming_the_field(
    api: TestClient, database_url: str
) -> None:
    workflow_id, path = _hook(api, _blueprint())
    nul = api.post(
        path, content=b'{"a": "x\\u0000y"}', headers={"content-type": "application/json"}
    )
    assert _error(nul, 400, "invalid_payload")["details"][0]["loc"] == ["body", "a"]
    broken = api.post(path, content=b"{nope", headers={"content-type": "application/json"})
    _error(broken, 400, "invalid_payload")
    not_utf8 = api.post(path, content=b"\xff\xfe", headers={"content-type": "text/plain"})
    _error(not_utf8, 400, "invalid_payload")
    assert _runs(database_url, workflow_id) == []


def test_an_oversize_body_is_413(database_url: str) -> None:
    settings = make_settings(database_url, max_body_bytes=1024)
    with TestClient(create_app(settings)) as client:
        _, path = _local_hook(client)
        big = client.post(path, json={"blob": "x" * 2000})
        _error(big, 413, "payload_too_large")
        assert client.post(path, json={"blob": "x" * 100}).status_code == 202


def _local_hook(client: TestClient) -> tuple[str, str]:
    """A hook of the local user (the API without identity)."""
    saved = client.post("/workflows", json={"blueprint": _blueprint()})
    assert saved.status_code == 201, saved.text
    workflow = saved.json()
    assert client.post(f"/workflows/{workflow['id']}/activate").status_code == 200
    return workflow["id"], workflow["hook"]["path"]


# --- the token ------------------------------------------------------------------------------


def test_every_wrong_url_is_the_same_404(api: TestClient, database_url: str) -> None:
    workflow_id, path = _hook(api, _blueprint())
    token = path.rsplit("/", 1)[1]
    other_id, other_path = _hook(api, _blueprint())
    manual = {"nodes": [{"id": "start", "type": "trigger"}], "edges": []}
    manual_wf = api.post("/workflows", json={"blueprint": manual}, headers=as_user(ALICE)).json()
    assert manual_wf["hook"] is None  # only webhook triggers get one
    wrong = [
        f"/hooks/{workflow_id}/{token[:-1]}x",  # wrong token
        f"/hooks/{workflow_id}/",  # no token
        f"/hooks/{other_id}/{token}",  # another hook's token
        f"/hooks/00000000-0000-4000-8000-000000000000/{token}",  # unknown workflow
        f"/hooks/not-a-uuid/{token}",
        f"/hooks/%00%ff/{token}",  # hostile bytes in the path
        f"/hooks/{workflow_id}/%ED%B2%80{token}",  # a lone surrogate, as UTF-8 would spell it
        f"/hooks/{manual_wf['id']}/{token}",  # not a webhook trigger
    ]
    bodies = []
    for url in wrong:
        response = api.post(url, json={})
        if url.endswith("/"):
            assert response.status_code == 404, response.text  # no such route
            continue
        bodies.append(_error(response, 404, "hook_not_found"))
    assert all(body == bodies[0] for body in bodies), "the answer does not say what is wrong"
    assert "details" not in bodies[0]
    assert api.post(other_path, json={}).status_code == 202
    assert _runs(database_url, workflow_id) == []


def test_an_inactive_or_archived_workflow_answers_404(api: TestClient) -> None:
    workflow_id, path = _hook(api, _blueprint())
    assert api.post(path, json={}).status_code == 202
    assert (
        api.post(f"/workflows/{workflow_id}/deactivate", headers=as_user(ALICE)).status_code == 200
    )
    _error(api.post(path, json={}), 404, "hook_not_found")
    assert api.post(f"/workflows/{workflow_id}/activate", headers=as_user(ALICE)).status_code == 200
    assert api.post(path, json={}).status_code == 202  # the same URL again
    # a version with another trigger, made live: the hook is silent, and keeps its URL
    manual = {"nodes": [{"id": "start", "type": "trigger"}], "edges": []}
    assert (
        api.put(
            f"/workflows/{workflow_id}", json={"blueprint": manual}, headers=as_user(ALICE)
        ).status_code
        == 200
    )
    assert api.post(f"/workflows/{workflow_id}/activate", headers=as_user(ALICE)).status_code == 200
    _error(api.post(path, json={}), 404, "hook_not_found")
    hook = api.get(f"/workflows/{workflow_id}/hook", headers=as_user(ALICE)).json()
    assert hook["live"] is False
    assert (
        api.post(
            f"/workflows/{workflow_id}/activate", json={"version": 1}, headers=as_user(ALICE)
        ).status_code
        == 200
    )
    assert api.post(path, json={}).status_code == 202
    for run in api.get(f"/workflows/{workflow_id}/runs", headers=as_user(ALICE)).json()["runs"]:
        wait_for_run(api, run["id"], headers=as_user(ALICE))
    assert api.delete(f"/workflows/{workflow_id}", headers=as_user(ALICE)).status_code == 204
    _error(api.post(path, json={}), 404, "hook_not_found")


def test_rotating_stops_the_old_token_at_once(api: TestClient) -> None:
    workflow_id, old = _hook(api, _blueprint())
    assert api.post(old, json={}).status_code == 202
    rotated = api.post(f"/workflows/{workflow_id}/hook/rotate", headers=as_user(ALICE))
    assert rotated.status_code == 200, rotated.text
    hook = rotated.json()
    new = hook["path"]
    assert new != old and hook["url"] == "http://localhost:8000" + new
    assert hook["rotated_at"] is not None and hook["live"] is True
    _error(api.post(old, json={}), 404, "hook_not_found")
    assert api.post(new, json={}).status_code == 202
    # the token is never shown again
    shown = api.get(f"/workflows/{workflow_id}/hook", headers=as_user(ALICE)).json()
    token = new.rsplit("/", 1)[1]
    assert shown["url"] is None and shown["path"] is None
    assert shown["url_hint"] == f"http://localhost:8000/hooks/{workflow_id}/{token[:4]}…"
    assert shown["token_hint"] == token[:4] and shown["last_used_at"] is not None
    workflow = api.get(f"/workflows/{workflow_id}", headers=as_user(ALICE)).json()
    assert workflow["hook"]["path"] is None and workflow["hook"]["token_hint"] == token[:4]


def test_hook_endpoints_are_the_owners_alone(api: TestClient) -> None:
    workflow_id, path = _hook(api, _blueprint())
    for response in (
        api.get(f"/workflows/{workflow_id}/hook", headers=as_user(BOB)),
        api.post(f"/workflows/{workflow_id}/hook/rotate", headers=as_user(BOB)),
    ):
        _error(response, 404, "not_found")
    assert api.get(f"/workflows/{workflow_id}/hook").status_code == 401
    # Bob's workflow id with Alice's token: the same 404 as any wrong URL
    bob_id, _ = _hook(api, _blueprint(), user=BOB)
    _error(api.post(f"/hooks/{bob_id}/{path.rsplit('/', 1)[1]}", json={}), 404, "hook_not_found")
    assert api.post(path, json={}).status_code == 202  # Alice's still works
    # a workflow without a webhook trigger has no hook
    manual = {"nodes": [{"id": "start", "type": "trigger"}], "edges": []}
    plain = api.post("/workflows", json={"blueprint": manual}, headers=as_user(ALICE)).json()
    _error(api.get(f"/workflows/{plain['id']}/hook", headers=as_user(ALICE)), 404, "hook_not_found")
    _error(
        api.post(f"/workflows/{plain['id']}/hook/rotate", headers=as_user(ALICE)),
        404,
        "hook_not_found",
    )


def test_a_run_of_a_hook_belongs_to_the_workflows_owner(api: TestClient) -> None:
    _, path = _hook(api, _blueprint(), user=BOB)
    run_id = api.post(path, json={"x": 1}).json()["run_id"]
    assert wait_for_run(api, run_id, headers=as_user(BOB))["status"] == "succeeded"
    assert api.get(f"/runs/{run_id}", headers=as_user(ALICE)).status_code == 404


def test_the_token_is_stored_nowhere_in_clear(
    api: TestClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    workflow_id, first = _hook(api, _blueprint())
    second = api.post(f"/workflows/{workflow_id}/hook/rotate", headers=as_user(ALICE)).json()[
        "path"
    ]
    run_id = api.post(second, json={"ok": True}).json()["run_id"]
    wait_for_run(api, run_id, headers=as_user(ALICE))
    dump = _dump(database_url)
    assert "workflow_hooks: " in dump  # the dump does hold the hook's row
    for path in (first, second):
        token = path.rsplit("/", 1)[1]
        assert token not in dump
        assert token not in caplog.text
    # what is kept is the live token's SHA-256 (the rotated one's is gone)
    assert hashlib.sha256(second.rsplit("/", 1)[1].encode()).hexdigest() in dump
    assert hashlib.sha256(first.rsplit("/", 1)[1].encode()).hexdigest() not in dump


def test_access_log_lines_mask_the_token_and_drop_the_query() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/hooks/0c5f/TokenSecretValue?api_key=QSECRET", "1.1", 202),
        None,
    )
    assert HookTokenFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "POST /hooks/0c5f/Toke… HTTP/1.1" 202'


# --- signatures ---------------------------------------------------------------------------


def test_a_signed_hook_checks_hmac_over_the_raw_body(api: TestClient, database_url: str) -> None:
    _secret(api)
    workflow_id, path = _hook(api, _blueprint(trigger={"credential": "shop_hook"}))
    body = b'{"order": "o-9"}'
    json_type = {"content-type": "application/json"}
    good = [_sign(body), "sha256=" + _sign(body), "SHA256=" + _sign(body).upper()]
    for signature in good:
        answer = api.post(path, content=body, headers={**json_type, "X-Signature-256": signature})
        assert answer.status_code == 202, answer.text
    # a form is signed over its raw bytes too
    form = b"order=o-9&amount=5"
    signed_form = api.post(
        path,
        content=form,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-signature-256": _sign(form),
        },
    )
    assert signed_form.status_code == 202, signed_form.text
    stored = _runs(database_url, workflow_id)
    assert all("x-signature-256" not in str(run) for run in stored), "nothing to replay it with"
    before = len(stored)

    bad = [
        {"X-Signature-256": _sign(body + b" ")},  # another body's
        {"X-Signature-256": _sign(body, secret="whsec_someone_else_entirely")},
        {"X-Signature-256": "sha256="},
        {"X-Signature-256": ("ü" * 64).encode("latin-1")},  # not ASCII: no TypeError
        {},  # missing
        {"X-Hub-Signature-256": _sign(body)},  # in a header this hook does not read
    ]
    for headers in bad:
        answer = api.post(path, content=body, headers={**json_type, **headers})
        _error(answer, 401, "invalid_signature")
    assert len(_runs(database_url, workflow_id)) == before, "nothing started unsigned"


def test_the_signature_header_is_configurable(api: TestClient) -> None:
    _secret(api)
    trigger = {"credential": "shop_hook", "signature_header": "X-Hub-Signature-256"}
    _, path = _hook(api, _blueprint(trigger=trigger))
    body = b'{"a": 1}'
    headers = {"content-type": "application/json"}
    ok = api.post(
        path, content=body, headers={**headers, "x-hub-signature-256": "sha256=" + _sign(body)}
    )
    assert ok.status_code == 202, ok.text
    default_header = api.post(
        path, content=body, headers={**headers, "X-Signature-256": _sign(body)}
    )
    _error(default_header, 401, "invalid_signature")


def test_the_signing_credential_is_checked_at_save(api: TestClient) -> None:
    blueprint = _blueprint(trigger={"credential": "missing_one"})
    missing = api.post("/workflows", json={"blueprint": blueprint}, headers=as_user(ALICE))
    issue = _error(missing, 422, "invalid_blueprint")["details"][0]
    assert issue["loc"] == ["nodes", 0, "credential"] and issue["node_id"] == "start"
    # of another type
    created = api.post(
        "/credentials",
        json={"name": "bearer", "type": "http_bearer", "data": {"token": "tok_abcdefgh"}},
        headers=as_user(ALICE),
    )
    assert created.status_code == 201, created.text
    wrong_type = api.post(
        "/workflows",
        json={"blueprint": _blueprint(trigger={"credential": "bearer"})},
        headers=as_user(ALICE),
    )
    assert "webhook_secret" in _error(wrong_type, 422, "invalid_blueprint")["message"]
    # another user's
    _secret(api, "bobs_hook", user=BOB)
    theirs = api.post(
        "/workflows",
        json={"blueprint": _blueprint(trigger={"credential": "bobs_hook"})},
        headers=as_user(ALICE),
    )
    _error(theirs, 422, "invalid_blueprint")
    # the workflow lists what it needs; the credential cannot be deleted while it is live
    _secret(api)
    workflow_id, _ = _hook(api, _blueprint(trigger={"credential": "shop_hook"}))
    workflow = api.get(f"/workflows/{workflow_id}", headers=as_user(ALICE)).json()
    assert workflow["credentials"] == [
        {
            "name": "shop_hook",
            "types": ["webhook_secret"],
            "nodes": ["start"],
            "present": True,
            "type": "webhook_secret",
        }
    ]
    assert workflow["hook"]["signed"] is True
    _error(api.delete("/credentials/shop_hook", headers=as_user(ALICE)), 409, "credential_in_use")


def test_hook_options_belong_to_webhook_triggers(api: TestClient) -> None:
    cases = [
        ({"trigger": "manual", "respond": "when_finished"}, "respond"),
        ({"trigger": "event", "event": "x/y", "credential": "shop_hook"}, "credential"),
        ({"response_timeout": 5}, "response_timeout"),  # without when_finished
        ({"signature_header": "X-Sig"}, "signature_header"),  # without a credential
    ]
    for trigger, field in cases:
        response = api.post(
            "/workflows", json={"blueprint": _blueprint(trigger=trigger)}, headers=as_user(ALICE)
        )
        issue = _error(response, 422, "invalid_blueprint")["details"][0]
        assert issue["loc"] == ["nodes", 0, field], issue
    # a webhook trigger naming a vendor event still works as before; the event is optional
    vendor = _blueprint(trigger={"event": "razorpay/payment.captured"})
    assert (
        api.post("/workflows", json={"blueprint": vendor}, headers=as_user(ALICE)).status_code
        == 201
    )


# --- idempotency ----------------------------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_first_run(
    api: TestClient, database_url: str
) -> None:
    workflow_id, path = _hook(api, _blueprint())
    first = api.post(path, json={"n": 1}, headers={"Idempotency-Key": "delivery-1"})
    again = api.post(path, json={"n": 2}, headers={"Idempotency-Key": "delivery-1"})
    other = api.post(path, json={"n": 3}, headers={"Idempotency-Key": "delivery-2"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["created"] is True and again.json()["created"] is False
    assert again.json()["run_id"] == first.json()["run_id"] != other.json()["run_id"]
    runs = _runs(database_url, workflow_id)
    assert len(runs) == 2
    assert {r["idempotency_key"] for r in runs} == {
        f"hook:{workflow_id}:delivery-1",
        f"hook:{workflow_id}:delivery-2",
    }
    # keys are per workflow: the same key on another hook starts its own run
    _, other_path = _hook(api, _blueprint())
    assert api.post(other_path, json={}, headers={"Idempotency-Key": "delivery-1"}).json()[
        "created"
    ]
    for value, status in (("x" * 201, 400), ("", 400), ("x" * 200, 202)):
        response = api.post(path, json={}, headers={"Idempotency-Key": value})
        assert response.status_code == status, (len(value), response.text)
        if status == 400:
            assert response.json()["error"]["code"] == "invalid_header"


def test_concurrent_duplicates_start_one_run(api: TestClient, database_url: str) -> None:
    """The key is a unique index of the runs table, not a check before an insert: eight
    deliveries at once with one key make one run."""
    workflow_id, path = _hook(api, _blueprint())

    def deliver(i: int) -> Any:
        return api.post(path, json={"i": i}, headers={"Idempotency-Key": "same-key"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(deliver, range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert sum(a.json()["created"] for a in answers) == 1
    assert len(_runs(database_url, workflow_id)) == 1


# --- answering with the run's end -----------------------------------------------------------


def test_when_finished_answers_with_the_runs_output(api: TestClient) -> None:
    blueprint = _blueprint(
        trigger={"respond": "when_finished", "response_timeout": 5},
        output={
            "order": "{{ trigger_data.body.order }}",
            "total": "{{ trigger_data.body.amount * 2 }}",
        },
    )
    _, path = _hook(api, blueprint)
    started = time.monotonic()
    answer = api.post(path, json={"order": "o-7", "amount": 21}, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"order": "o-7", "total": 42}
    assert time.monotonic() - started < 5
    # a repeat of a finished run answers at once with the same output
    again = api.post(path, json={"order": "other"}, headers={"Idempotency-Key": "k"})
    assert again.status_code == 200 and again.json() == {"order": "o-7", "total": 42}


def test_a_failed_run_is_a_502_with_its_run_id(api: TestClient, peer: Peer) -> None:
    peer.script["/refuse"] = [400]
    call = {
        "id": "call",
        "type": "action",
        "service": "http",
        "task": "request",
        "params": {"method": "POST", "url": f"{peer.url}/refuse"},
    }
    blueprint = _blueprint(trigger={"respond": "when_finished"}, middle=[call])
    _, path = _hook(api, blueprint)
    answer = api.post(path, json={})
    error = _error(answer, 502, "run_failed")
    run_id = error["details"]["run_id"]
    assert error["details"]["status_url"] == f"/runs/{run_id}"
    run = api.get(f"/runs/{run_id}", headers=as_user(ALICE)).json()
    assert run["status"] == "failed"
    assert error["details"]["error_code"] == run["error"]["code"]


def test_a_run_that_outlasts_the_timeout_gets_202(api: TestClient) -> None:
    pause = {"id": "pause", "type": "delay", "duration": "1h"}
    blueprint = _blueprint(
        trigger={"respond": "when_finished", "response_timeout": 0.5}, middle=[pause]
    )
    _, path = _hook(api, blueprint)
    started = time.monotonic()
    answer = api.post(path, json={})
    waited = time.monotonic() - started
    assert answer.status_code == 202, answer.text
    assert answer.json()["created"] is True
    assert 0.5 <= waited < 3, waited
    # the run goes on without the caller: parked on its delay (it may still be getting there)
    run = wait_for_run(api, answer.json()["run_id"], {"waiting"}, headers=as_user(ALICE))
    assert run["status"] == "waiting"


def test_the_deployment_caps_the_wait(database_url: str) -> None:
    settings = make_settings(database_url, hook_response_max_seconds=0.3)
    with TestClient(create_app(settings)) as client:
        pause = {"id": "pause", "type": "delay", "duration": "1h"}
        blueprint = _blueprint(
            trigger={"respond": "when_finished", "response_timeout": 60}, middle=[pause]
        )
        saved = client.post("/workflows", json={"blueprint": blueprint}).json()
        assert client.post(f"/workflows/{saved['id']}/activate").status_code == 200
        started = time.monotonic()
        answer = client.post(saved["hook"]["path"], json={})
        assert answer.status_code == 202, answer.text
        assert time.monotonic() - started < 2


def test_waiting_for_a_runs_end_follows_announcements_else_rereads(database_url: str) -> None:
    """:meth:`ProgressHub.finished` wakes on the run's status announcement (well before its
    first re-read would); a hub that hears nothing re-reads the row with backoff instead, and
    still sees the end."""

    async def end_after(pool: Any, run_id: Any, seconds: float) -> float:
        await asyncio.sleep(seconds)
        async with pool.connection() as conn:
            await conn.execute(
                "update workflow_runs set status = 'succeeded', output = '{\"ok\": 1}',"
                " finished_at = now() where id = %s",
                (run_id,),
            )
        return time.monotonic()

    async def scenario() -> tuple[float, float]:
        pool = await open_pool(database_url, min_size=1, max_size=4, acquire_timeout=5)
        listening = ProgressHub(pool, database_url, buffer=10)
        deaf = ProgressHub(pool, database_url, buffer=10)  # never started: hears nothing
        await listening.start()
        try:
            lags = []
            for hub in (listening, deaf):
                async with pool.connection() as conn, conn.transaction():
                    workflow = await workflows_store.create(
                        conn,
                        owner=LOCAL_USER_ID,
                        name="wait",
                        description=None,
                        origin="api",
                        blueprint={},
                        trigger_kind="webhook",
                        trigger_event=None,
                    )
                    run_id, _ = await runs_store.create(
                        conn,
                        owner=LOCAL_USER_ID,
                        workflow_id=workflow["id"],
                        version=1,
                        trigger_data={},
                        idempotency_key=None,
                    )
                ender = asyncio.ensure_future(end_after(pool, run_id, 1.0))
                async with asyncio.timeout(5):
                    run = await hub.finished(run_id)
                lags.append(time.monotonic() - await ender)
                assert run is not None and run["status"] == "succeeded"
                assert run["output"] == {"ok": 1}
            assert await listening.finished(uuid.uuid4()) is None  # no such run
            return lags[0], lags[1]
        finally:
            await listening.stop()
            await pool.close()

    heard, reread = asyncio.run(scenario())
    # re-reads at 0, 0.25, 0.75, 1.75 s: the deaf hub sees the end at 1.75 s
    assert heard < 0.4, heard
    assert 0.4 < reread < 1.5, reread


def test_deliveries_are_counted_by_outcome(client: TestClient) -> None:
    """``blueprint_webhook_deliveries_total{provider="hook"}``: accepted, duplicate,
    not_found, invalid_payload (a 415 too)."""
    workflow_id, path = _local_hook(client)
    before = scrape(client)
    assert client.post(path, json={}, headers={"Idempotency-Key": "k1"}).status_code == 202
    assert client.post(path, json={}, headers={"Idempotency-Key": "k1"}).status_code == 202
    assert client.post(f"/hooks/{workflow_id}/wrong", json={}).status_code == 404
    assert (
        client.post(path, content=b"<a/>", headers={"content-type": "text/xml"}).status_code == 415
    )
    after = scrape(client)
    name = "blueprint_webhook_deliveries_total"
    counted = {
        outcome: delta(before, after, name, provider="hook", outcome=outcome)
        for outcome in ("accepted", "duplicate", "not_found", "invalid_payload", "error")
    }
    assert counted == {
        "accepted": 1,
        "duplicate": 1,
        "not_found": 1,
        "invalid_payload": 1,
        "error": 0,
    }
