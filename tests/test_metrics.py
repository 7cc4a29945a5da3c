"""GET /metrics through the API on real PostgreSQL: runs, steps, queue, SSE watchers, webhooks
and model calls are counted; operators only unless METRICS_PUBLIC.

The metrics are the process's (every app a test builds shares them), so each test compares a
scrape before and after what it does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from blueprint_engine.app import create_app
from tests.conftest import WEBHOOK_SECRET, make_settings
from tests.support import (
    JWT_SECRET,
    Peer,
    Reader,
    as_user,
    chat_completion,
    execute,
    wait_for_run,
)

SERVICE_KEY = "metrics-service-key-0123456789"
TWILIO_TOKEN = "twilio-auth-token"
PUBLIC = "https://bot.example.com"
OPERATOR = {"X-API-Key": SERVICE_KEY}
ROOT = Path(__file__).resolve().parents[1]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def _after_start(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": [{"id": "start", "type": "trigger"}, node],
        "edges": [{"source": "start", "target": node["id"]}],
    }


def test_a_run_is_counted_with_its_steps_attempts_and_retries(
    client: TestClient, peer: Peer
) -> None:
    peer.script["/flaky"] = [503, 200]  # the first attempt fails retryably, the second works
    blueprint = _after_start(
        {
            "id": "call",
            "type": "action",
            "service": "http",
            "task": "request",
            "params": {"url": f"{peer.url}/flaky"},
            "retry": {"max_attempts": 3},
        }
    )
    before = scrape(client)
    run = wait_for_run(client, execute(client, blueprint))
    assert run["status"] == "succeeded", run
    after = scrape(client)

    assert delta(before, after, "blueprint_runs_started_total", engine="embedded", start="new") == 1
    assert delta(before, after, "blueprint_runs_finished_total", status="succeeded") == 1
    step = {"step": "http.request"}
    assert delta(before, after, "blueprint_step_duration_seconds_count", **step) == 2
    assert delta(before, after, "blueprint_step_duration_seconds_sum", **step) > 0
    assert delta(before, after, "blueprint_step_attempts_total", **step, outcome="ok") == 1
    attempts = "blueprint_step_attempts_total"
    assert delta(before, after, attempts, **step, outcome="retryable_error") == 1
    assert delta(before, after, "blueprint_step_retries_total", **step) == 1

    peer.script["/refused"] = [400]  # not retryable
    failing = _after_start(
        {
            "id": "call",
            "type": "action",
            "service": "http",
            "task": "request",
            "params": {"url": f"{peer.url}/refused"},
        }
    )
    run = wait_for_run(client, execute(client, failing))
    assert run["status"] == "failed", run
    later = scrape(client)
    assert delta(after, later, "blueprint_runs_finished_total", status="failed") == 1
    assert delta(after, later, attempts, **step, outcome="error") == 1
    assert delta(after, later, "blueprint_step_retries_total", **step) == 0


def test_a_retried_run_is_counted_as_a_retry(client: TestClient, peer: Peer) -> None:
    peer.script["/down"] = [400, 200]  # not retryable: the run fails, then POST /retry works
    blueprint = _after_start(
        {
            "id": "call",
            "type": "action",
            "service": "http",
            "task": "request",
            "params": {"url": f"{peer.url}/down"},
        }
    )
    run_id = execute(client, blueprint)
    assert wait_for_run(client, run_id)["status"] == "failed"
    before = scrape(client)
    assert client.post(f"/runs/{run_id}/retry").status_code == 200
    assert wait_for_run(client, run_id)["status"] == "succeeded"
    after = scrape(client)
    started = "blueprint_runs_started_total"
    assert delta(before, after, started, engine="embedded", start="retry") == 1
    assert delta(before, after, started, engine="embedded", start="new") == 0
    assert delta(before, after, "blueprint_runs_finished_total", status="succeeded") == 1


def test_a_cancelled_run_is_counted(database_url: str) -> None:
    settings = make_settings(database_url, run_worker=False)
    with TestClient(create_app(settings)) as client:
        run_id = execute(client, _after_start({"id": "end", "type": "end"}))
        before = scrape(client)
        assert client.post(f"/runs/{run_id}/cancel").status_code == 200
        after = scrape(client)
    assert delta(before, after, "blueprint_runs_finished_total", status="cancelled") == 1


def test_queue_depth_and_age_are_the_runs_ready_to_claim(database_url: str) -> None:
    settings = make_settings(database_url, run_worker=False, run_scheduler=False)
    blueprint = _after_start({"id": "end", "type": "end"})
    with TestClient(create_app(settings)) as client:
        empty = scrape(client)
        assert value(empty, "blueprint_queue_depth") == 0
        assert value(empty, "blueprint_queue_oldest_age_seconds") == 0
        runs = [execute(client, blueprint) for _ in range(3)]
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(  # the oldest has waited a minute; one is backing off for an hour
                "update workflow_runs set created_at = now() - interval '60 seconds' where id = %s",
                (runs[0],),
            )
            conn.execute(
                "update workflow_runs set wake_at = now() + interval '1 hour' where id = %s",
                (runs[1],),
            )
        samples = scrape(client)
    assert value(samples, "blueprint_queue_depth") == 2
    assert 60 <= value(samples, "blueprint_queue_oldest_age_seconds") < 90


def test_queue_figures_are_nan_when_the_database_does_not_answer(database_url: str) -> None:
    settings = make_settings(database_url, run_worker=False, run_scheduler=False)
    with (
        TestClient(create_app(settings)) as client,
        psycopg.connect(database_url) as blocker,
    ):
        blocker.execute("lock table workflow_runs in access exclusive mode")
        started = time.monotonic()
        samples = scrape(client)
        elapsed = time.monotonic() - started
        blocker.rollback()
        assert math.isnan(value(samples, "blueprint_queue_depth"))
        assert math.isnan(value(samples, "blueprint_queue_oldest_age_seconds"))
        assert elapsed < 3, f"the scrape waited {elapsed:.1f}s for a locked table"
        assert value(scrape(client), "blueprint_queue_depth") == 0  # and back at once


def _watchers(client: TestClient, kind: str) -> float:
    return value(scrape(client), "blueprint_sse_watchers", stream=kind)


def _until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_open_streams_are_counted_while_they_last(client: TestClient) -> None:
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "pause", "type": "delay", "duration": "1500ms"},
        ],
        "edges": [{"source": "start", "target": "pause"}],
    }
    runs, workflows = _watchers(client, "run"), _watchers(client, "workflow")
    run_id = execute(client, blueprint)
    run_readers = [Reader(client, f"/runs/{run_id}/stream") for _ in range(2)]
    for reader in run_readers:
        reader.start()
    assert _until(lambda: _watchers(client, "run") == runs + 2, timeout=1.2)

    created = client.post("/workflows", json={"blueprint": blueprint})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    follower = Reader(client, f"/workflows/{workflow_id}/stream", stop=lambda ev: len(ev) >= 1)
    follower.start()
    assert _until(lambda: _watchers(client, "workflow") == workflows + 1)
    assert client.post("/workflow/execute", json={"workflow_id": workflow_id}).status_code == 202

    for reader in [*run_readers, follower]:
        assert reader.finish()
    # The run streams ended with the run; the workflow stream when its client went away.
    assert _until(lambda: _watchers(client, "run") == runs)
    assert _until(lambda: _watchers(client, "workflow") == workflows)


# -- access ----------------------------------------------------------------------------------


@pytest.fixture
def secured(database_url: str) -> Iterator[TestClient]:
    """Identity configured (Supabase tokens, a service key), the Twilio and Razorpay webhooks
    set up."""
    settings = make_settings(
        database_url,
        api_keys=[SERVICE_KEY],
        supabase_jwt_secret=JWT_SECRET,
        tools={"twilio": {"auth_token": TWILIO_TOKEN}},
        public_base_url=PUBLIC,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_metrics_are_for_operators_only(secured: TestClient) -> None:
    alice = as_user("a11ce000-0000-4000-8000-000000000001")
    anonymous = secured.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    assert secured.get("/metrics", headers={"X-API-Key": "wrong"}).status_code == 401

    signed_in = secured.get("/metrics", headers=alice)
    assert signed_in.status_code == 403 and signed_in.json()["error"]["code"] == "forbidden"
    key = secured.post("/me/api-keys", json={"name": "script"}, headers=alice).json()["key"]
    personal = secured.get("/metrics", headers={"X-API-Key": key})
    assert personal.status_code == 403

    assert ("blueprint_queue_depth", frozenset()) in scrape(secured, OPERATOR)
    assert ("blueprint_queue_depth", frozenset()) in scrape(
        secured, {"Authorization": f"Bearer {SERVICE_KEY}"}
    )


def test_metrics_public_serves_anyone(database_url: str) -> None:
    settings = make_settings(
        database_url, supabase_jwt_secret=JWT_SECRET, metrics_public=True, run_worker=False
    )
    with TestClient(create_app(settings)) as client:
        assert value(scrape(client), "blueprint_queue_depth") == 0
        assert client.get("/runs?trace_id=x").status_code == 401  # the rest stays protected
    schema = create_app(settings).openapi()["paths"]["/metrics"]["get"]
    assert "parameters" not in schema  # no credentials to send
    assert "text/plain" in schema["responses"]["200"]["content"]


# -- webhooks --------------------------------------------------------------------------------


def _razorpay(client: TestClient, body: bytes, event_id: str, signature: str | None = None) -> Any:
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/razorpay",
        content=body,
        headers={
            "content-type": "application/json",
            "x-razorpay-signature": signature or digest,
            "x-razorpay-event-id": event_id,
        },
    )


def _whatsapp(client: TestClient, sid: str, body: str, signature: str | None = None) -> Any:
    params = {"MessageSid": sid, "From": "whatsapp:+919876543210", "Body": body}
    signed = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC}/whatsapp", params)
    return client.post(
        "/whatsapp", data=params, headers={"X-Twilio-Signature": signature or signed}
    )


def test_webhook_deliveries_are_counted_by_provider_and_outcome(secured: TestClient) -> None:
    event = json.dumps({"event": "payment.captured", "payload": {}}).encode()
    before = scrape(secured, OPERATOR)
    assert _razorpay(secured, event, "evt_1").status_code == 200
    assert _razorpay(secured, event, "evt_1").json()["duplicate"] is True
    assert _razorpay(secured, event, "evt_2", signature="0" * 64).status_code == 400
    assert _razorpay(secured, b'{"no": "event"}', "evt_3").status_code == 400
    assert _whatsapp(secured, "SM1", "hello").status_code == 200  # an unlinked sender
    assert _whatsapp(secured, "SM1", "hello").status_code == 200  # Twilio retrying it
    assert _whatsapp(secured, "SM2", "link 123456").status_code == 200  # a (wrong) link code
    assert _whatsapp(secured, "SM3", "hello", signature="forged").status_code == 403
    after = scrape(secured, OPERATOR)

    name = "blueprint_webhook_deliveries_total"
    assert {
        (provider, outcome): delta(before, after, name, provider=provider, outcome=outcome)
        for provider in ("razorpay", "twilio")
        for outcome in (
            "accepted",
            "duplicate",
            "unlinked",
            "invalid_signature",
            "invalid_payload",
            "not_configured",
            "error",
        )
        if delta(before, after, name, provider=provider, outcome=outcome)
    } == {
        ("razorpay", "accepted"): 1,
        ("razorpay", "duplicate"): 1,
        ("razorpay", "invalid_signature"): 1,
        ("razorpay", "invalid_payload"): 1,
        ("twilio", "unlinked"): 1,
        ("twilio", "duplicate"): 1,
        ("twilio", "accepted"): 1,
        ("twilio", "invalid_signature"): 1,
    }


# -- language models -------------------------------------------------------------------------


def test_model_calls_are_counted_and_timed_by_purpose_and_outcome(
    database_url: str, peer: Peer
) -> None:
    nothing = {"intent": None, "confidence": 0.2, "cancel": False, "entities": [], "language": "en"}
    answers = [json.dumps({**nothing, "confirmation": None}), "this is not JSON"]
    peer.handlers["/v1/chat/completions"] = lambda body: (200, chat_completion(answers.pop(0)))
    settings = make_settings(
        database_url, openai_base_url=f"{peer.url}/v1", openai_api_key="sk-test"
    )
    with TestClient(create_app(settings)) as client:
        before = scrape(client)
        first = client.post("/intent-parser", json={"text": "hello", "session_id": "s1"})
        assert first.status_code == 200, first.text
        second = client.post("/intent-parser", json={"text": "hello", "session_id": "s2"})
        assert second.json()["status"] == "failed", second.text
        after = scrape(client)
    calls = "blueprint_llm_calls_total"
    assert delta(before, after, calls, purpose="intent", outcome="ok") == 1
    assert delta(before, after, calls, purpose="intent", outcome="bad_output") == 1
    assert delta(before, after, "blueprint_llm_call_duration_seconds_count", purpose="intent") == 2


# -- processes -------------------------------------------------------------------------------

_WORKER = """
from blueprint_engine import metrics
metrics.run_finished("succeeded")
metrics.run_finished("succeeded")
"""
_SCRAPER = """
from prometheus_client import generate_latest
from blueprint_engine import metrics
print(generate_latest(metrics.registry()).decode())
"""


def test_several_processes_add_up_with_prometheus_multiproc_dir(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", _WORKER], env=env, check=True, cwd=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _SCRAPER], env=env, check=True, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert value(samples, "blueprint_runs_finished_total", status="succeeded") == 4
