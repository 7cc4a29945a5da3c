"""Schedule triggers: activation starts firing on the cron, deactivation stops it."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.support import wait_for_run


def _blueprint(cron: str, timezone: str = "UTC") -> dict[str, Any]:
    return {
        "name": "Every two seconds",
        "nodes": [
            {
                "id": "tick",
                "type": "trigger",
                "trigger": "schedule",
                "cron": cron,
                "timezone": timezone,
            },
            {"id": "note", "type": "end", "output": "{{ trigger_data.scheduled_for }}"},
        ],
        "edges": [{"source": "tick", "target": "note"}],
    }


def test_active_schedule_fires_runs_until_deactivated(
    client: TestClient, database_url: str
) -> None:
    wf = client.post("/workflows", json={"blueprint": _blueprint("* * * * * */2")}).json()
    assert client.post(f"/workflows/{wf['id']}/activate").status_code == 200
    deadline = time.monotonic() + 10
    runs: list[dict[str, Any]] = []
    while len(runs) < 2 and time.monotonic() < deadline:
        runs = client.get(f"/workflows/{wf['id']}/runs").json()["runs"]
        time.sleep(0.2)
    assert len(runs) >= 2, "fires every two seconds"
    run = wait_for_run(client, runs[-1]["id"])
    fired = datetime.fromisoformat(run["output"])
    assert fired.second % 2 == 0 and fired.microsecond == 0
    assert run["trigger_data"]["cron"] == "* * * * * */2"

    assert client.post(f"/workflows/{wf['id']}/deactivate").status_code == 200
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from workflow_schedules").fetchone() == (0,)
    count = len(client.get(f"/workflows/{wf['id']}/runs").json()["runs"])
    time.sleep(2.5)
    assert len(client.get(f"/workflows/{wf['id']}/runs").json()["runs"]) == count


def test_schedule_times_follow_the_time_zone(client: TestClient, database_url: str) -> None:
    wf = client.post("/workflows", json={"blueprint": _blueprint("0 9 * * *", "Asia/Kolkata")})
    assert client.post(f"/workflows/{wf.json()['id']}/activate").status_code == 200
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select next_fire_at from workflow_schedules").fetchone()
    assert row is not None
    next_fire: datetime = row[0]
    assert (next_fire.hour, next_fire.minute) == (3, 30), "09:00 IST is 03:30 UTC"


def test_bad_cron_or_zone_is_422(client: TestClient) -> None:
    response = client.post("/workflows", json={"blueprint": _blueprint("every day", "Mars/Base")})
    assert response.status_code == 422
    problems = {tuple(d["loc"]): d for d in response.json()["error"]["details"]}
    assert problems[("nodes", 0, "cron")]["node_id"] == "tick"
    assert "Mars/Base" in problems[("nodes", 0, "timezone")]["message"]
