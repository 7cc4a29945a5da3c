"""Live progress over server-sent events, with resume by Last-Event-ID."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.support import execute

BLUEPRINT = {
    "nodes": [
        {"id": "start", "type": "trigger"},
        {"id": "pause", "type": "delay", "duration": "300ms"},
        {
            "id": "shape",
            "type": "action",
            "service": "transform",
            "task": "build",
            "params": {"fields": {"ok": True}},
        },
    ],
    "edges": [{"source": "start", "target": "pause"}, {"source": "pause", "target": "shape"}],
}


def read_events(client: TestClient, url: str, **headers: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "data" in current:
                    events.append(current)
                current = {}
            elif ":" in line and not line.startswith(":"):
                key, _, value = line.partition(":")
                current[key] = value.strip()
    return events


def test_stream_shows_every_step_then_ends_and_resumes(client: TestClient) -> None:
    run_id = execute(client, BLUEPRINT)
    events = read_events(client, f"/runs/{run_id}/stream")
    logs = [json.loads(e["data"]) for e in events if e["event"] == "log"]
    assert [(row["node_id"], row["status"]) for row in logs] == [
        ("start", "succeeded"),
        ("pause", "waiting"),
        ("pause", "succeeded"),
        ("shape", "succeeded"),
    ]
    assert [int(e["id"]) for e in events if e["event"] == "log"] == [row["id"] for row in logs]
    statuses = [json.loads(e["data"])["status"] for e in events if e["event"] == "run"]
    assert statuses[-1] == "succeeded"

    resumed = read_events(client, f"/runs/{run_id}/stream", **{"Last-Event-ID": str(logs[1]["id"])})
    again = [json.loads(e["data"])["node_id"] for e in resumed if e["event"] == "log"]
    assert again == ["pause", "shape"]


def test_stream_of_unknown_run_is_404(client: TestClient) -> None:
    response = client.get(f"/runs/{uuid.uuid4()}/stream")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
