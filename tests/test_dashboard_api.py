"""The API the dashboard lists from: GET /workflows, DELETE /workflows/{id} (archive),
GET /runs across workflows, GET /runs/stream, GET /config/public."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import make_settings
from tests.support import JWT_SECRET, ONE_STEP, Reader, as_user, wait_for_run

QUICK = ONE_STEP
WAITS = {
    "nodes": [
        {"id": "start", "type": "trigger"},
        {"id": "paid", "type": "wait_for_event", "event": "order/paid", "timeout": "1h"},
    ],
    "edges": [{"source": "start", "target": "paid"}],
}


class User:
    """A fresh user of the ``accounts`` API, so lists hold only what the test made."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers = as_user(str(uuid.uuid4()))

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, headers=self.headers, **kwargs)

    def workflow(self, name: str, blueprint: dict[str, Any] = QUICK, **extra: Any) -> str:
        created = self.call(
            "POST", "/workflows", json={"blueprint": blueprint, "name": name, **extra}
        )
        assert created.status_code == 201, created.text
        workflow_id: str = created.json()["id"]
        return workflow_id

    def run(self, workflow_id: str) -> str:
        started = self.call("POST", "/workflow/execute", json={"workflow_id": workflow_id})
        assert started.status_code == 202, started.text
        run_id: str = started.json()["run_id"]
        return run_id

    def wait(self, run_id: str, *statuses: str) -> dict[str, Any]:
        return wait_for_run(self.client, run_id, statuses or ("succeeded",), headers=self.headers)


@pytest.fixture
def user(accounts: TestClient) -> User:
    return User(accounts)


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


def test_workflows_are_listed_latest_first_with_their_last_run(user: User) -> None:
    older = user.workflow("Payment receipt", description="WhatsApp a receipt")
    newer = user.workflow("Refund alert")
    run_id = user.run(older)  # running it does not reorder the list
    user.wait(run_id)
    user.call("POST", f"/workflows/{newer}/activate")
    user.call("POST", "/workflow/execute", json={"blueprint": QUICK})  # ad hoc: not listed

    listed = user.call("GET", "/workflows").json()
    assert [w["id"] for w in listed["workflows"]] == [newer, older]
    assert listed["next_cursor"] is None
    first, second = listed["workflows"]
    assert first["active"] and first["active_version"] == 1 and first["last_run"] is None
    assert not second["active"] and second["last_run"]["id"] == run_id
    assert second["last_run"]["status"] == "succeeded"

    def names(**params: Any) -> list[str]:
        page = user.call("GET", "/workflows", params=params)
        assert page.status_code == 200, page.text
        return [w["name"] for w in page.json()["workflows"]]

    assert names(active="true") == ["Refund alert"]
    assert names(active="false") == ["Payment receipt"]
    assert names(q="RECEIPT") == ["Payment receipt"]
    assert names(q="whatsapp") == ["Payment receipt"]  # the description counts
    assert names(q="%") == [] and names(q="_") == []  # taken literally, not as patterns


def test_workflow_pages_follow_their_cursor_without_gaps(user: User) -> None:
    made = [user.workflow(f"Flow {n}") for n in range(5)]
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = user.call("GET", "/workflows", params=params).json()
        seen += [w["id"] for w in page["workflows"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    error(user.call("GET", "/workflows", params={"cursor": "not-ours"}), 422, "validation_error")
    error(user.call("GET", "/workflows", params={"limit": 0}), 422, "validation_error")


def test_archiving_waits_for_unfinished_runs_then_keeps_history_readable(user: User) -> None:
    workflow_id = user.workflow("Waits for payment", WAITS)
    run_id = user.run(workflow_id)
    user.wait(run_id, "waiting")

    busy = error(user.call("DELETE", f"/workflows/{workflow_id}"), 409, "workflow_busy")
    assert busy["details"]["run_ids"] == [run_id]
    assert user.call("GET", f"/workflows/{workflow_id}").json()["archived_at"] is None

    assert user.call("POST", f"/runs/{run_id}/cancel").status_code == 200
    archived = user.call("DELETE", f"/workflows/{workflow_id}")
    assert archived.status_code == 204 and archived.content == b""
    assert user.call("DELETE", f"/workflows/{workflow_id}").status_code == 204  # no-op

    assert user.call("GET", "/workflows").json()["workflows"] == []
    kept = user.call("GET", f"/workflows/{workflow_id}").json()
    assert kept["archived_at"] is not None and not kept["active"]
    assert user.call("GET", f"/runs/{run_id}").json()["status"] == "cancelled"
    error(
        user.call("POST", "/workflow/execute", json={"workflow_id": workflow_id}),
        409,
        "workflow_archived",
    )
    error(user.call("POST", f"/workflows/{workflow_id}/activate"), 409, "workflow_archived")
    error(
        user.call("PUT", f"/workflows/{workflow_id}", json={"blueprint": WAITS}),
        409,
        "workflow_archived",
    )
    error(user.call("DELETE", f"/workflows/{uuid.uuid4()}"), 404, "not_found")


def test_runs_are_listed_across_workflows_and_filtered(user: User) -> None:
    quick = user.workflow("Quick")
    waits = user.workflow("Waits", WAITS)
    done = user.run(quick)
    user.wait(done)
    parked = user.run(waits)
    user.wait(parked, "waiting")

    runs = user.call("GET", "/runs").json()
    assert [(r["id"], r["workflow_name"]) for r in runs["runs"]] == [
        (parked, "Waits"),
        (done, "Quick"),
    ]
    by_status = user.call("GET", "/runs", params={"status": "waiting"}).json()["runs"]
    assert [r["id"] for r in by_status] == [parked]
    by_workflow = user.call("GET", "/runs", params={"workflow_id": quick}).json()["runs"]
    assert [r["id"] for r in by_workflow] == [done]
    first = user.call("GET", "/runs", params={"limit": 1}).json()
    rest = user.call("GET", "/runs", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in first["runs"] + rest["runs"]] == [parked, done]

    error(user.call("GET", "/runs", params={"status": "lost"}), 422, "validation_error")
    error(user.call("GET", "/runs", params={"workflow_id": str(uuid.uuid4())}), 404, "not_found")
    error(user.call("GET", "/runs", params={"workflow_id": "nope"}), 422, "validation_error")


def test_the_runs_stream_shows_every_run_of_yours_as_it_changes(user: User) -> None:
    quick = user.workflow("Quick")
    started: set[str] = set()

    def all_done(events: list[dict[str, Any]]) -> bool:
        latest = {json.loads(e["data"])["id"]: json.loads(e["data"]) for e in events}
        return bool(started) and all(
            latest.get(r, {}).get("status") == "succeeded" for r in started
        )

    for _ in range(3):
        started.add(user.run(quick))
    reader = Reader(user.client, "/runs/stream?last_id=0", stop=all_done, **user.headers)
    reader.start()
    events = [json.loads(e["data"]) for e in reader.finish()]
    assert {e["id"] for e in events} == started
    assert {e["workflow_name"] for e in events} == {"Quick"}


def test_public_config_says_how_to_sign_in(database_url: str) -> None:
    cases = [
        ({}, "local", None),
        ({"api_keys": ["service-key"]}, "api_key", None),
        ({"supabase_jwt_secret": JWT_SECRET}, "api_key", None),  # no anon key: keys only
        (
            {
                "supabase_url": "https://demo.supabase.co",
                "supabase_anon_key": "anon-public-key",
                "supabase_jwt_secret": JWT_SECRET,
            },
            "supabase",
            "https://demo.supabase.co",
        ),
    ]
    for extra, mode, url in cases:
        with TestClient(create_app(make_settings(database_url, **extra))) as client:
            answer = client.get("/config/public")  # no credentials
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["auth"]["mode"] == mode and body["auth"]["supabase_url"] == url
            assert body["engine"] == "embedded" and body["version"]
            assert JWT_SECRET not in answer.text and "service-key" not in answer.text
