"""The tool contract (``integrations/base.py``): a tool added as one class and one registry
entry runs end to end with its own settings from its prefixed environment variables, and every
step's HTTP goes through the process's one client (its connections reused)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from blueprint_engine.agents.architect import system_prompt
from blueprint_engine.app import create_app
from blueprint_engine.config import ToolSettings
from blueprint_engine.integrations import TOOL_REGISTRY
from blueprint_engine.integrations.base import (
    BaseTool,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    fake_id,
    task,
)
from tests.conftest import make_settings
from tests.support import Peer, execute, wait_for_run

# -- a new tool, as its own file would declare it -------------------------------------------


class GreeterSettings(ToolSettings):
    """``GREETER_URL``: where greetings come from; unset, the tool runs in sandbox mode."""

    model_config = SettingsConfigDict(env_prefix="GREETER_")

    url: str | None = None
    punctuation: str = "!"

    def ready(self) -> bool:
        return self.url is not None


class Greet(TaskParams):
    name: str = Field(min_length=1, max_length=50)


class Greeting(TaskResult):
    text: str = Field(description="The greeting.")
    id: str = Field(description="The greeting's id.")


class GreeterTool(BaseTool):
    service = "greeter"
    description = "Greet someone with the greeting a service gives."
    settings_type = GreeterSettings

    @task(params=Greet, result=Greeting, description="Greet one person.")
    async def greet(self, params: Greet, ctx: ToolContext) -> Greeting:
        own = ctx.settings.tool(GreeterSettings)
        response = await ctx.http.post(f"{own.url}/greeting", json={"name": params.name})
        if response.status_code != 200:
            raise ToolError("no greeting", code="greeter_status", retryable=False)
        word = response.json()["word"]
        return Greeting(text=f"{word}, {params.name}{own.punctuation}", id=ctx.idempotency_key)

    @greet.request
    def greet_request(self, params: Greet, ctx: ToolContext) -> dict[str, Any]:
        return {"method": "POST", "url": "/greeting", "body": {"name": params.name}}

    @greet.sandbox
    def greet_sandbox(self, params: Greet, ctx: ToolContext) -> Greeting:
        return Greeting(text=f"(sandbox) {params.name}", id=fake_id("gr", ctx.idempotency_key))


# -------------------------------------------------------------------------------------------


@pytest.fixture
def greeter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one registry line."""
    monkeypatch.setitem(TOOL_REGISTRY, "greeter", GreeterTool())


def _greet_blueprint(name: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "greet",
                "type": "action",
                "service": "greeter",
                "task": "greet",
                "params": {"name": name},
            },
            {
                "id": "done",
                "type": "end",
                "output": {"said": "{{ steps.greet.output.text }}"},
            },
        ],
        "edges": [{"source": "start", "target": "greet"}, {"source": "greet", "target": "done"}],
    }


def test_a_tool_added_as_one_class_and_one_registry_line_runs_with_its_own_settings(
    greeter: None, database_url: str, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer.handlers["/greeting"] = lambda body: (200, {"word": "Namaste"})
    monkeypatch.setenv("GREETER_URL", peer.url)
    monkeypatch.setenv("GREETER_PUNCTUATION", " 🙏")
    with TestClient(create_app(make_settings(database_url))) as client:
        catalog = {t["service"]: t for t in client.get("/tools").json()["tools"]}
        [greet] = catalog["greeter"]["tasks"]
        assert catalog["greeter"]["sandbox"] is False, "GREETER_URL is set"
        assert greet["params"]["properties"]["name"]["type"] == "string"
        assert greet["result"]["properties"]["text"]["description"] == "The greeting."

        run_id = execute(client, _greet_blueprint("Asha"))
        run = wait_for_run(client, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["output"] == {"said": "Namaste, Asha 🙏"}
    step = next(n for n in run["nodes"] if n["id"] == "greet")
    assert step["output"] == {"text": "Namaste, Asha 🙏", "id": f"{run_id}:greet"}
    assert peer.bodies["/greeting"] == [{"name": "Asha"}]
    prompt = system_prompt()
    assert "service `greeter`" in prompt and '"text": "string: The greeting."' in prompt


def test_without_its_settings_the_new_tool_runs_in_sandbox_mode(
    greeter: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GREETER_URL", raising=False)
    with TestClient(create_app(make_settings(database_url))) as client:
        catalog = {t["service"]: t for t in client.get("/tools").json()["tools"]}
        assert catalog["greeter"]["sandbox"] is True
        run = wait_for_run(client, execute(client, _greet_blueprint("Asha")))
    assert run["status"] == "succeeded", run["error"]
    step = next(n for n in run["nodes"] if n["id"] == "greet")
    assert step["output"]["sandbox"] is True
    assert step["output"]["request"] == {
        "method": "POST",
        "url": "/greeting",
        "body": {"name": "Asha"},
    }
    assert step["output"]["text"] == "(sandbox) Asha"
    assert step["output"]["id"].startswith("gr_sandbox_")


def test_the_settings_passed_for_a_tool_override_its_environment(
    greeter: None, database_url: str, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer.handlers["/greeting"] = lambda body: (200, {"word": "Hello"})
    monkeypatch.setenv("GREETER_URL", "http://greeter.invalid")
    settings = make_settings(database_url, tools={"greeter": {"url": peer.url}})
    assert settings.tool(GreeterSettings).url == peer.url
    with TestClient(create_app(settings)) as client:
        run = wait_for_run(client, execute(client, _greet_blueprint("Ravi")))
    assert run["output"] == {"said": "Hello, Ravi!"}


def test_a_tool_with_side_effects_must_declare_its_sandbox_result() -> None:
    with pytest.raises(TypeError, match=r"Careless.greet has side effects.*@greet.sandbox"):

        class Careless(BaseTool):
            service = "careless"
            description = "Forgets its sandbox."

            @task(params=Greet, result=Greeting, description="Greet.")
            async def greet(self, params: Greet, ctx: ToolContext) -> Greeting:
                raise AssertionError("never called")


def test_an_unknown_tool_setting_is_refused(database_url: str) -> None:
    settings = make_settings(database_url, tools={"greeter": {"adress": "typo"}})
    with pytest.raises(ValueError, match="adress"):
        settings.tool(GreeterSettings)


# -- the shared HTTP client ---------------------------------------------------------------


class KeepAlive:
    """An HTTP/1.1 server on 127.0.0.1 that keeps connections open and records, per request,
    the client's port: requests over one connection share it."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body without a delayed-ACK stall

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                server.ports.append(self.client_address[1])
                data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def keep_alive() -> Iterator[KeepAlive]:
    server = KeepAlive()
    yield server
    server.close()


def test_steps_share_one_http_client_and_its_connections(
    client: TestClient, keep_alive: KeepAlive
) -> None:
    """Two http steps in a run, then another run: one TCP connection carries all four requests
    (a client per call would open four)."""
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "trigger"}]
    edges = []
    for index in range(2):
        nodes.append(
            {
                "id": f"call{index}",
                "type": "action",
                "service": "http",
                "task": "request",
                "params": {"url": f"{keep_alive.url}/hook", "json": {"n": index}},
            }
        )
        edges.append({"source": nodes[-2]["id"], "target": f"call{index}"})
    blueprint = {"nodes": nodes, "edges": edges}
    for _ in range(2):
        run = wait_for_run(client, execute(client, blueprint))
        assert run["status"] == "succeeded", run["error"]
    assert len(keep_alive.ports) == 4
    assert len(set(keep_alive.ports)) == 1, f"connections opened: {set(keep_alive.ports)}"
    tools = client.app.state.tools  # type: ignore[attr-defined]
    assert tools.http is tools.http, "made once, kept"
