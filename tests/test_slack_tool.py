"""The slack tool: the real ``slack_sdk`` client against a local server that answers like
Slack's Web API (``tests.support.Peer`` at ``SLACK_API_URL``), recording what it was sent; how
Slack's errors map to retryable or not; sandbox mode; and a run whose node names a stored
``slack`` connection."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.integrations.base import ToolError
from blueprint_engine.integrations.slack_tool import PostMessage, SlackCredential, SlackTool
from tests.conftest import ALICE, make_settings
from tests.support import Peer, as_user, call_task, wait_for_run
from tests.test_credentials import KEY_A, _create, _dump

TOKEN = "xoxb-1111-2222-PLANTEDslackToken"
PATH = "/api/chat.postMessage"


def _settings(peer_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "postgresql://unused",
        "tools": {"slack": {"bot_token": TOKEN, "api_url": f"{peer_url}/api/"}},
        "http_timeout_seconds": 5,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _post(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    message = PostMessage.model_validate(params)
    return call_task(SlackTool(), "post_message", message, settings, key="run:slack")


def _failure(settings: Settings, params: dict[str, Any]) -> ToolError:
    with pytest.raises(ToolError) as caught:
        _post(settings, params)
    return caught.value


def _ok(body: Any) -> tuple[int, Any]:
    return 200, {"ok": True, "channel": "C0123ABCD", "ts": "1700000000.000200", "message": {}}


def test_the_message_reaches_chat_post_message_with_the_bot_token(peer: Peer) -> None:
    peer.handlers[PATH] = _ok
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Paid* ₹500"}}]
    result = _post(
        _settings(peer.url),
        {
            "channel": "C0123ABCD",
            "text": "Paid ₹500",
            "blocks": blocks,
            "thread_ts": "1699999999.000100",
        },
    )
    assert result == {
        "channel": "C0123ABCD",
        "ts": "1700000000.000200",
        "thread_ts": "1699999999.000100",
    }
    [body] = peer.bodies[PATH]
    assert body == {
        "channel": "C0123ABCD",
        "text": "Paid ₹500",
        "blocks": blocks,
        "thread_ts": "1699999999.000100",
    }
    assert peer.headers[PATH][0]["Authorization"] == f"Bearer {TOKEN}"


def test_a_rate_limit_is_retryable_and_says_when_to_retry(peer: Peer) -> None:
    peer.handlers[PATH] = lambda body: (
        429,
        {"ok": False, "error": "ratelimited"},
        {"Retry-After": "30"},
    )
    error = _failure(_settings(peer.url), {"channel": "#general", "text": "hi"})
    assert (error.code, error.retryable) == ("slack_rate_limited", True)
    assert error.details == {"status": 429, "error": "ratelimited"}
    assert error.retry_after == 30
    assert peer.hits[PATH] == 1, "the SDK does not retry on its own"


@pytest.mark.parametrize(
    ("status", "slack_error", "code", "retryable"),
    [
        (200, "channel_not_found", "slack_channel_unavailable", False),
        (200, "not_in_channel", "slack_channel_unavailable", False),
        (200, "invalid_auth", "slack_auth_failed", False),
        (200, "invalid_blocks", "slack_error", False),
        (200, "internal_error", "slack_unavailable", True),
        (503, "service_unavailable", "slack_unavailable", True),
    ],
)
def test_slack_errors_map_to_codes(
    peer: Peer, status: int, slack_error: str, code: str, retryable: bool
) -> None:
    peer.handlers[PATH] = lambda body: (status, {"ok": False, "error": slack_error})
    error = _failure(_settings(peer.url), {"channel": "C0123ABCD", "text": "hi"})
    assert (error.code, error.retryable) == (code, retryable)
    assert error.details["error"] == slack_error and error.details["status"] == status
    assert TOKEN not in error.message


def test_network_trouble_is_retryable(peer: Peer) -> None:
    def slow(body: Any) -> tuple[int, Any]:
        time.sleep(1.5)
        return _ok(body)

    peer.handlers[PATH] = slow
    late = _failure(_settings(peer.url, http_timeout_seconds=0.3), {"channel": "C1", "text": "x"})
    assert (late.code, late.retryable) == ("timeout", True)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    gone = _failure(_settings(closed), {"channel": "C1", "text": "x"})
    assert (gone.code, gone.retryable) == ("network_error", True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": "x" * 40_001}, "text"),
        ({"text": ""}, "text"),
        ({"blocks": [{"type": "divider"}] * 51}, "blocks"),
        ({"blocks": [{"text": "no type"}]}, "blocks"),
        ({"thread_ts": "yesterday"}, "thread_ts"),
        ({"channel": "general channel"}, "channel"),
    ],
)
def test_params_over_slacks_limits_are_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostMessage.model_validate({"channel": "C0123ABCD", "text": "hi", **change})
    assert caught.value.errors()[0]["loc"][0] == field


def test_only_bot_tokens_are_stored() -> None:
    assert SlackCredential.model_validate({"bot_token": TOKEN}).secrets() == [TOKEN]
    for bad in ("xoxp-user-token-1234", "xoxb-with space", "xoxb-line\nbreak"):
        with pytest.raises(ValidationError):
            SlackCredential.model_validate({"bot_token": bad})


def test_sandbox_mode_returns_the_call_and_a_thread_ready_ts() -> None:
    settings = Settings(_env_file=None, database_url="postgresql://unused")  # type: ignore[call-arg]
    result = _post(settings, {"channel": "#general", "text": "hi"})
    assert result["sandbox"] is True and result["channel"] == "#general"
    assert result["ts"].startswith("0000000000.")
    PostMessage.model_validate({"channel": "#general", "text": "reply", "thread_ts": result["ts"]})
    assert result["request"]["url"] == "https://slack.com/api/chat.postMessage"
    assert result["request"]["headers"] == {"Authorization": "Bearer [redacted]"}
    assert result["request"]["body"] == {"channel": "#general", "text": "hi"}


# --- through a run, with a stored connection -------------------------------------------------


def test_a_run_posts_with_the_nodes_slack_connection_retries_a_rate_limit_and_records_no_token(
    database_url: str, peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = iter(
        [
            (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
            _ok(None),
        ]
    )
    peer.handlers[PATH] = lambda body: next(answers)
    settings = make_settings(
        database_url,
        credentials_key=KEY_A,
        supabase_jwt_secret="test-supabase-jwt-secret-with-32-bytes-or-more",
        tools={"slack": {"api_url": f"{peer.url}/api/"}},
    )
    with TestClient(create_app(settings)) as client:
        _create(client, ALICE, "team", "slack", {"bot_token": TOKEN})
        blueprint = {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "notify",
                    "type": "action",
                    "service": "slack",
                    "task": "post_message",
                    "credential": "team",
                    "params": {"channel": "C0123ABCD", "text": "Order {{ trigger_data.order }}"},
                },
            ],
            "edges": [{"source": "start", "target": "notify"}],
        }
        started = client.post(
            "/workflow/execute",
            json={"blueprint": blueprint, "payload": {"order": "A-7"}},
            headers=as_user(ALICE),
        )
        assert started.status_code == 202, started.text
        run = wait_for_run(client, started.json()["run_id"], headers=as_user(ALICE))
        assert run["status"] == "succeeded", run["error"]
        seen = [
            client.get(path, headers=as_user(ALICE)).text
            for path in (f"/runs/{run['id']}", f"/runs/{run['id']}/logs", "/credentials")
        ]
    node = next(n for n in run["nodes"] if n["id"] == "notify")
    assert node["attempt"] == 2, "the rate-limited attempt was retried"
    assert node["output"] == {"channel": "C0123ABCD", "ts": "1700000000.000200", "thread_ts": None}
    assert peer.bodies[PATH][-1] == {"channel": "C0123ABCD", "text": "Order A-7"}
    assert [h["Authorization"] for h in peer.headers[PATH]] == [f"Bearer {TOKEN}"] * 2
    assert TOKEN not in "\n".join(seen)
    assert TOKEN not in _dump(database_url)
    assert TOKEN not in "\n".join(r.getMessage() for r in caplog.records)
