"""The instagram tool: its Graph API calls answered at the transport (``httpx.MockTransport``
standing in for graph.facebook.com), the container polled until it is ready, Graph errors
mapped to retryable or not, the image URL vetted by the outbound policy, sandbox mode, and a
run whose node names a stored ``instagram`` connection."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.integrations import TOOL_REGISTRY, resources
from blueprint_engine.integrations.base import ToolError
from blueprint_engine.integrations.instagram_tool import (
    InstagramCredential,
    InstagramTool,
    PublishPost,
)
from tests.conftest import ALICE, make_settings
from tests.support import FakeDNS, as_user, call_task, wait_for_run
from tests.test_credentials import KEY_A, _create, _dump

TOKEN = "IGQVJPLANTEDinstagramToken0123"
USER = "17841400000000001"
GRAPH = "https://graph.facebook.com/v25.0"
IMAGE = "https://cdn.shop.example/p/42.jpg"
CONTAINER = "17890000000000001"
MEDIA = "17900000000000002"


class Graph:
    """The Graph API's content publishing endpoints, scripted: ``statuses`` are the container's
    status codes in turn (the last repeats); ``errors[path suffix]`` answers that call with
    (HTTP status, body) instead; every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses = ["FINISHED"]
        self.errors: dict[str, tuple[int, Any]] = {}
        self.checks = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v25.0")
        for suffix, (status, body) in self.errors.items():
            if path.endswith(suffix):
                if isinstance(body, Exception):
                    raise body
                return httpx.Response(status, json=body)
        if request.method == "POST" and path == f"/{USER}/media":
            return httpx.Response(200, json={"id": CONTAINER})
        if request.method == "GET" and path == f"/{CONTAINER}":
            self.checks += 1
            status = self.statuses[min(self.checks, len(self.statuses)) - 1]
            return httpx.Response(200, json={"status_code": status, "id": CONTAINER})
        if request.method == "POST" and path == f"/{USER}/media_publish":
            return httpx.Response(200, json={"id": MEDIA})
        return httpx.Response(404, json={"error": {"message": "unknown path", "code": 803}})

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix('/v25.0')}" for r in self.requests]

    def form(self, index: int) -> dict[str, list[str]]:
        return parse_qs(self.requests[index].content.decode())


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch, dns: FakeDNS) -> Iterator[Graph]:
    """The tools' shared HTTP client answers through a Graph stand-in (its transport), the
    registered tool without waiting between checks; the image host resolves to a public
    address."""
    fake = Graph()

    def client(settings: Settings, *, timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(fake), timeout=timeout)

    monkeypatch.setattr(resources.outbound, "guarded_client", client)
    monkeypatch.setattr(TOOL_REGISTRY["instagram"], "poll_seconds", 0.0)
    dns.answers["cdn.shop.example"] = [["93.184.215.14"]]
    yield fake


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "postgresql://unused",
        "tools": {"instagram": {"access_token": TOKEN, "user_id": USER}},
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _publish(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    post = PublishPost.model_validate(params)
    return call_task(TOOL_REGISTRY["instagram"], "publish_post", post, settings, key="run:post")


def _failure(settings: Settings, params: dict[str, Any]) -> ToolError:
    with pytest.raises(ToolError) as caught:
        _publish(settings, params)
    return caught.value


POST = {"image_url": IMAGE, "caption": "New in store #handmade @corner.shop"}


def test_container_then_status_checks_then_publish(graph: Graph) -> None:
    graph.statuses = ["IN_PROGRESS", "IN_PROGRESS", "FINISHED"]
    result = _publish(_settings(), POST)
    assert result == {"id": MEDIA, "container_id": CONTAINER}
    assert graph.calls() == [
        f"POST /{USER}/media",
        f"GET /{CONTAINER}",
        f"GET /{CONTAINER}",
        f"GET /{CONTAINER}",
        f"POST /{USER}/media_publish",
    ]
    assert graph.form(0) == {"image_url": [IMAGE], "caption": [POST["caption"]]}
    assert graph.requests[1].url.params["fields"] == "status_code,status"
    assert graph.form(4) == {"creation_id": [CONTAINER]}
    for request in graph.requests:
        assert str(request.url).startswith(GRAPH)
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in str(request.url), "the token never goes in a URL"


def test_a_container_that_fails_is_not_published(graph: Graph) -> None:
    graph.statuses = ["IN_PROGRESS", "ERROR"]
    error = _failure(_settings(), POST)
    assert (error.code, error.retryable) == ("instagram_media_failed", False)
    assert f"POST /{USER}/media_publish" not in graph.calls()


def test_waiting_for_the_container_is_bounded(graph: Graph) -> None:
    graph.statuses = ["IN_PROGRESS"]
    error = _failure(_settings(), POST)
    assert (error.code, error.retryable) == ("instagram_media_not_ready", True)
    assert graph.checks == InstagramTool.max_polls
    assert f"POST /{USER}/media_publish" not in graph.calls()


@pytest.mark.parametrize(
    ("status", "graph_code", "code", "retryable"),
    [
        (400, 4, "instagram_rate_limited", True),
        (400, 17, "instagram_rate_limited", True),
        (400, 32, "instagram_rate_limited", True),
        (400, 613, "instagram_rate_limited", True),
        (400, 190, "instagram_auth_failed", False),
        (403, 10, "instagram_permission_denied", False),
        (400, 100, "instagram_invalid_request", False),
        (500, 2, "instagram_unavailable", True),
        (400, 9004, "instagram_error", False),
    ],
)
def test_graph_errors_map_to_codes(
    graph: Graph, status: int, graph_code: int, code: str, retryable: bool
) -> None:
    graph.errors["/media"] = (
        status,
        {
            "error": {
                "message": "Something went wrong",
                "type": "OAuthException",
                "code": graph_code,
                "error_subcode": 2207001,
                "fbtrace_id": "AbC123",
            }
        },
    )
    error = _failure(_settings(), POST)
    assert (error.code, error.retryable) == (code, retryable)
    assert error.details == {
        "status": status,
        "graph_code": graph_code,
        "error_subcode": 2207001,
        "fbtrace_id": "AbC123",
    }
    assert "Something went wrong" in error.message


def test_a_transient_error_and_a_non_json_answer_are_retryable(graph: Graph) -> None:
    graph.errors["/media"] = (400, {"error": {"message": "x", "code": 9999, "is_transient": True}})
    assert _failure(_settings(), POST).retryable
    graph.errors["/media"] = (502, "<html>Bad gateway</html>")
    error = _failure(_settings(), POST)
    assert (error.code, error.retryable) == ("instagram_unavailable", True)


def test_a_lost_answer_to_the_publish_call_is_retried_and_may_post_twice(graph: Graph) -> None:
    """What the module docstring warns about: the publish call timed out, so the step is
    retryable, although Instagram may have published the post."""
    graph.errors["/media_publish"] = (0, httpx.ReadTimeout("no answer"))
    error = _failure(_settings(), POST)
    assert (error.code, error.retryable) == ("timeout", True)
    assert graph.calls()[-1] == f"POST /{USER}/media_publish"


@pytest.mark.parametrize(
    "url", ["https://10.0.0.5/p.jpg", "https://169.254.169.254/latest/x.jpg", "https://[::1]/a.jpg"]
)
def test_an_image_url_that_is_not_public_is_refused_before_any_call(graph: Graph, url: str) -> None:
    error = _failure(_settings(http_allow_hosts=[]), {"image_url": url})
    assert (error.code, error.retryable) == ("destination_blocked", False)
    assert graph.requests == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image_url": "http://cdn.shop.example/p.jpg"}, "image_url"),
        ({"image_url": "https://user:pw@cdn.shop.example/p.jpg"}, "image_url"),
        ({"caption": "x" * 2201}, "caption"),
        ({"caption": " ".join(f"#tag{i}" for i in range(31))}, "caption"),
        ({"caption": " ".join(f"@user{i}" for i in range(21))}, "caption"),
    ],
)
def test_params_over_metas_limits_are_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PublishPost.model_validate({**POST, **change})
    assert caught.value.errors()[0]["loc"][0] == field


def test_captions_at_metas_limits_are_accepted() -> None:
    caption = " ".join([*(f"#t{i}" for i in range(30)), *(f"@u{i}" for i in range(20))])
    assert PublishPost.model_validate({**POST, "caption": caption}).caption == caption
    # inside a word, # and @ are not tags (an e-mail address, "no#1")
    words = " ".join(f"shop{i}@mail.example no#{i}" for i in range(40))
    PublishPost.model_validate({**POST, "caption": f"{caption} {words}"})


def test_the_credential_needs_a_numeric_user_id() -> None:
    assert InstagramCredential.model_validate({"access_token": TOKEN, "ig_user_id": USER})
    for bad in ({"ig_user_id": "corner.shop"}, {"access_token": "with space inside"}):
        with pytest.raises(ValidationError):
            InstagramCredential.model_validate({"access_token": TOKEN, "ig_user_id": USER, **bad})


def test_sandbox_mode_shows_both_calls_without_the_token() -> None:
    settings = Settings(_env_file=None, database_url="postgresql://unused")  # type: ignore[call-arg]
    result = _publish(settings, POST)
    assert result["sandbox"] is True
    assert result["id"].startswith("ig_media_sandbox_")
    assert result["container_id"].startswith("ig_container_sandbox_")
    request = result["request"]
    assert request["url"] == f"{GRAPH}/IG_USER_SANDBOX/media"
    assert request["body"] == {"image_url": IMAGE, "caption": POST["caption"]}
    assert request["then"]["url"] == f"{GRAPH}/IG_USER_SANDBOX/media_publish"
    assert request["headers"] == {"Authorization": "Bearer [redacted]"}
    forced = _publish(_settings(sandbox=True), POST)
    assert TOKEN not in json.dumps(forced) and USER in forced["request"]["url"]


# --- through a run, with a stored connection -------------------------------------------------


def test_a_run_publishes_with_the_nodes_instagram_connection_and_records_no_token(
    database_url: str, graph: Graph, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.statuses = ["IN_PROGRESS", "FINISHED"]
    settings = make_settings(
        database_url,
        credentials_key=KEY_A,
        supabase_jwt_secret="test-supabase-jwt-secret-with-32-bytes-or-more",
    )
    with TestClient(create_app(settings)) as client:
        _create(client, ALICE, "shop_ig", "instagram", {"access_token": TOKEN, "ig_user_id": USER})
        blueprint = {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "post",
                    "type": "action",
                    "service": "instagram",
                    "task": "publish_post",
                    "credential": "shop_ig",
                    "params": {
                        "image_url": "{{ trigger_data.image_url }}",
                        "caption": "{{ trigger_data.caption }}",
                    },
                },
            ],
            "edges": [{"source": "start", "target": "post"}],
        }
        started = client.post(
            "/workflow/execute",
            json={"blueprint": blueprint, "payload": POST},
            headers=as_user(ALICE),
        )
        assert started.status_code == 202, started.text
        run = wait_for_run(client, started.json()["run_id"], headers=as_user(ALICE))
        assert run["status"] == "succeeded", run["error"]
        seen = [
            client.get(path, headers=as_user(ALICE)).text
            for path in (f"/runs/{run['id']}", f"/runs/{run['id']}/logs", "/credentials")
        ]
    output = next(n for n in run["nodes"] if n["id"] == "post")["output"]
    assert output == {"id": MEDIA, "container_id": CONTAINER}
    assert graph.form(0) == {"image_url": [IMAGE], "caption": [POST["caption"]]}
    assert {r.headers["Authorization"] for r in graph.requests} == {f"Bearer {TOKEN}"}
    assert TOKEN not in "\n".join(seen)
    assert TOKEN not in _dump(database_url)
    assert TOKEN not in "\n".join(r.getMessage() for r in caplog.records)
