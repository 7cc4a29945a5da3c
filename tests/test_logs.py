"""Operators' logging: a request id on every response, and JSON log lines (``LOG_FORMAT=json``)
that say which request, run and node they concern — read from a real ``uvicorn`` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.support import Peer

ROOT = Path(__file__).resolve().parents[1]


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    for response in (
        client.get("/health"),
        client.get("/runs/not-a-uuid"),  # 422
        client.get("/nope/nothing"),  # 404
        client.post("/events", content=b"{", headers={"content-type": "application/json"}),
    ):
        assert _is_uuid4(response.headers["x-request-id"]), response.headers
    ids = {client.get("/health").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3, "a new id per request"
    mine = str(uuid.uuid4())
    assert client.get("/health", headers={"X-Request-ID": mine}).headers["x-request-id"] == mine
    forged = client.get("/health", headers={"X-Request-ID": "a\\nb; drop"})
    assert _is_uuid4(forged.headers["x-request-id"]), "a malformed id is replaced"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_json_log_lines_say_which_request_run_and_node(database_url: str, peer: Peer) -> None:
    peer.script["/flaky"] = [503, 503, 200]
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
        "HTTP_ALLOW_HOSTS": '["127.0.0.1"]',
        "RETRY_INITIAL_BACKOFF_SECONDS": "0.01",
        "RETRY_MAX_BACKOFF_SECONDS": "0.02",
        "RETRY_JITTER_SECONDS": "0",
        "WORKER_POLL_SECONDS": "0.05",
        "RUN_SCHEDULER": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "blueprint_engine.app:app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "the API did not start"
            time.sleep(0.1)
        blueprint = {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "call", "type": "action", "service": "http", "task": "request",
                 "params": {"url": f"{peer.url}/flaky"}, "retry": {"max_attempts": 3}},
            ],
            "edges": [{"source": "start", "target": "call"}],
        }  # fmt: skip
        started = httpx.post(f"{base}/workflow/execute", json={"blueprint": blueprint})
        assert started.status_code == 202, started.text
        request_id = started.headers["x-request-id"]
        run_id = started.json()["run_id"]
        while httpx.get(f"{base}/runs/{run_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.05)
        # a hook's token is its credential: the access line shows only its first characters
        hooked = {"nodes": [{"id": "start", "type": "trigger", "trigger": "webhook"}]}
        workflow = httpx.post(f"{base}/workflows", json={"blueprint": hooked}).json()
        httpx.post(f"{base}/workflows/{workflow['id']}/activate")
        hook_path = workflow["hook"]["path"]
        assert httpx.post(f"{base}{hook_path}", json={}).status_code == 202
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    lines: list[dict[str, Any]] = []
    for raw in stderr.splitlines():
        line = json.loads(raw)  # every line is JSON, uvicorn's own included
        assert {"timestamp", "level", "logger", "event"} <= set(line), line
        lines.append(line)
    attempts = [line for line in lines if "attempt" in line["event"] and "failed" in line["event"]]
    assert [a["event"].split(" failed")[0] for a in attempts] == [
        "http.request attempt 1",
        "http.request attempt 2",
    ]
    assert all(a["run_id"] == run_id and a["node_id"] == "call" for a in attempts), attempts
    assert all(a["level"] == "warning" for a in attempts)
    [access] = [
        line
        for line in lines
        if line["logger"] == "uvicorn.access" and "/workflow/execute" in line["event"]
    ]
    assert access["request_id"] == request_id
    token = hook_path.rsplit("/", 1)[1]
    assert token not in stderr
    assert any(f"{hook_path.removesuffix(token)}{token[:4]}…" in line["event"] for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)
