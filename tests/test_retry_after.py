"""Retry-After: read once (``integrations.base.retry_after_seconds``) where the HTTP-based tools
raise a retryable failure for a 429 or 503, and honoured by the retry policy of both runners:
the embedded runner waits at least that long before the next attempt (at most
``RETRY_AFTER_MAX_SECONDS``), Inngest is told to retry the step no earlier. Waits are judged
by the recorded log rows (when the retried attempt ended, when the next one began)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.integrations.base import RETRY_AFTER_CEILING_SECONDS, retry_after_seconds
from blueprint_engine.workflows.runners.inngest import RUN_REQUESTED
from blueprint_engine.workflows.runners.recorder import StepRecorder
from blueprint_engine.workflows.steps import Retry
from tests.conftest import InngestApp, make_settings
from tests.support import InngestServer, Peer, chat_completion, execute, wait_for_run

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        ("Sat, 01 Mar 2025 12:00:30 -0000", 30.0),  # a date without a zone: UTC
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),  # past: at once
        ("9" * 400, RETRY_AFTER_CEILING_SECONDS),  # huge (overflows a float): cut
        (format_datetime(NOW + timedelta(days=400), usegmt=True), RETRY_AFTER_CEILING_SECONDS),
        ("-5", None),
        ("-0.5", None),
        ("soon", None),
        ("", None),
        ("1e3", None),
        ("inf", None),
        ("NaN", None),
        ("Sat, 01 Mar 99999 12:00:30 GMT", None),
        ("Sat, 32 Foo 2025 99:00:30 GMT", None),
    ],
)
def test_retry_after_header_parses_seconds_and_dates_and_rejects_the_rest(
    value: str, seconds: float | None
) -> None:
    assert retry_after_seconds(429, {"Retry-After": value}, now=NOW) == seconds
    assert retry_after_seconds(503, {"retry-after": value}, now=NOW) == seconds


def test_retry_after_is_read_on_429_and_503_only_and_prefers_milliseconds() -> None:
    for status in (200, 400, 408, 500, 502, 504):
        assert retry_after_seconds(status, {"Retry-After": "5"}, now=NOW) is None
    assert retry_after_seconds(429, {}, now=NOW) is None
    both = {"Retry-After-Ms": "1500", "Retry-After": "9"}
    assert retry_after_seconds(429, both, now=NOW) == 1.5
    assert retry_after_seconds(429, {"retry-after-ms": "x", "retry-after": "9"}, now=NOW) == 9.0


class _NoHooks:
    """:class:`StepHooks` that no test here calls (only :meth:`StepRecorder.pause`)."""

    async def begin(self, step_id: str, attempt: int, *, pure: bool) -> int:
        raise AssertionError("not called")

    async def retry(self, row: Any, pause: Any) -> None:
        raise AssertionError("not called")

    async def record(self, row: Any) -> Any:
        raise AssertionError("not called")


def test_the_pause_is_the_longer_of_backoff_and_retry_after_cut_to_the_maximum() -> None:
    recorder = StepRecorder(_NoHooks(), retry_after_max=300.0)
    retry = Retry(max_attempts=5, initial_backoff=1.0, max_backoff=30.0, jitter=0.0)
    assert recorder.pause(retry, 1, None).seconds == 1.0
    assert recorder.pause(retry, 3, None).seconds == 4.0
    assert recorder.pause(retry, 20, None).seconds == 30.0  # backoff capped at max_backoff
    assert recorder.pause(retry, 3, 2.0).seconds == 4.0  # the backoff is longer
    assert (recorder.pause(retry, 1, 10.0).seconds, recorder.pause(retry, 1, 10.0).retry_after) == (
        10.0,
        10.0,
    )
    huge = recorder.pause(retry, 1, RETRY_AFTER_CEILING_SECONDS)
    assert (huge.seconds, huge.retry_after) == (300.0, 300.0)  # cut to RETRY_AFTER_MAX_SECONDS


def _one_call(url: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "call",
                "type": "action",
                "service": "http",
                "task": "request",
                "retry": {"max_attempts": 3},
                "params": {"method": "POST", "url": url},
            },
        ],
        "edges": [{"source": "start", "target": "call"}],
    }


def _answers(*replies: tuple[int, dict[str, str]]) -> Any:
    """A peer handler answering ``replies`` in turn (status, headers); the last repeats."""
    calls = 0

    def handler(body: Any) -> tuple[int, Any, dict[str, str]]:
        nonlocal calls
        calls += 1
        status, headers = replies[min(calls, len(replies)) - 1]
        return status, {"hit": calls}, headers

    return handler


def _gap(client: TestClient, run_id: str, node_id: str) -> tuple[float, dict[str, Any]]:
    """Seconds between the end of the node's retried attempt and the start of the next one,
    and the retried attempt's error."""
    rows = [r for r in client.get(f"/runs/{run_id}/logs").json()["logs"] if r["node_id"] == node_id]
    assert [(r["status"], r["attempt"]) for r in rows] == [("retrying", 1), ("succeeded", 2)]
    ended = datetime.fromisoformat(rows[0]["finished_at"])
    began = datetime.fromisoformat(rows[1]["started_at"])
    return (began - ended).total_seconds(), rows[0]["error"]


def test_embedded_retry_waits_the_retry_after_of_a_429(client: TestClient, peer: Peer) -> None:
    """The test settings back off 0.01-0.05 s; the service's Retry-After: 2 wins."""
    peer.handlers["/limited"] = _answers((429, {"Retry-After": "2"}), (200, {}))
    run_id = execute(client, _one_call(f"{peer.url}/limited"))
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    gap, error = _gap(client, run_id, "call")
    assert gap >= 2.0
    assert error["code"] == "http_status" and error["retry_after"] == 2.0
    assert peer.hits["/limited"] == 2


def test_embedded_retry_waits_a_503_date_no_longer_than_the_maximum(
    database_url: str, peer: Peer
) -> None:
    """An HTTP-date an hour away is cut to RETRY_AFTER_MAX_SECONDS (here 1 s)."""
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    peer.handlers["/busy"] = _answers((503, {"Retry-After": later}), (200, {}))
    settings = make_settings(database_url, retry_after_max_seconds=1.0)
    with TestClient(create_app(settings)) as client:
        run_id = execute(client, _one_call(f"{peer.url}/busy"))
        assert wait_for_run(client, run_id)["status"] == "succeeded"
        gap, error = _gap(client, run_id, "call")
    assert 1.0 <= gap < 10.0
    assert 3590 < error["retry_after"] <= 3600


@pytest.fixture
def model_client(database_url: str, peer: Peer) -> Iterator[TestClient]:
    """The API with the peer as the OpenAI-compatible model server."""
    settings = make_settings(database_url, openai_base_url=f"{peer.url}/v1", openai_api_key="k")
    with TestClient(create_app(settings)) as client:
        yield client


def test_llm_rate_limit_retry_after_ms_is_waited(model_client: TestClient, peer: Peer) -> None:
    """The openai SDK's RateLimitError carries the response: its retry-after-ms is honoured."""
    calls = 0

    def model(body: Any) -> tuple[int, Any, dict[str, str]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            limited = {"error": {"message": "slow down", "type": "rate_limit"}}
            return 429, limited, {"retry-after-ms": "1200"}
        return 200, chat_completion("a summary"), {}

    peer.handlers["/v1/chat/completions"] = model
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "sum",
                "type": "action",
                "service": "llm",
                "task": "summarize",
                "retry": {"max_attempts": 2},
                "params": {"text": "a long text"},
            },
        ],
        "edges": [{"source": "start", "target": "sum"}],
    }
    run_id = execute(model_client, blueprint)
    run = wait_for_run(model_client, run_id)
    assert run["status"] == "succeeded", run
    gap, error = _gap(model_client, run_id, "sum")
    assert gap >= 1.2
    assert error["code"] == "llm_unavailable" and error["retry_after"] == 1.2


def test_inngest_retries_the_step_when_the_retry_after_says(
    inngest_app: InngestApp, peer: Peer
) -> None:
    """The step raises ``inngest.RetryAfterError``: the reply names the time, and the server
    retries the step then (here 90 s later on its clock, not its 1 s backoff)."""
    client = inngest_app.client
    peer.handlers["/limited"] = _answers((429, {"Retry-After": "90"}), (200, {}))
    run_id = execute(client, _one_call(f"{peer.url}/limited"))
    server = InngestServer(client, inngest_app.events(RUN_REQUESTED)[0])
    server.drive()
    trace = server.trace_text()
    retried = re.search(r"t=\s*(\d+)s call attempt 1 -> StepRun call", trace)
    assert retried is not None, trace
    assert 85 <= int(retried.group(1)) <= 90, trace
    run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run
    logs = client.get(f"/runs/{run_id}/logs").json()["logs"]
    calls = [(r["status"], r["attempt"]) for r in logs if r["node_id"] == "call"]
    assert calls == [("retrying", 1), ("succeeded", 2)]
