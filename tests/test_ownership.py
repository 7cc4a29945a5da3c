"""Every route of the API, tried across users: Bob never reaches Alice's objects.

Alice and Bob each get the same world through the API: an active event-triggered workflow and a
run it started, a run parked on an event wait, an active webhook-triggered workflow (its hook),
a voice session with a command run (its trace), and a personal API key. Then, route by route
over ``app.openapi()["paths"]`` (so a new route without a case here fails the test), Bob uses
Alice's ids: every route that takes an id answers 404 ``not_found`` (never 403, never 200),
lists show only one's own, creating never lands in the other account, and afterwards Alice's
objects are exactly as they were.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import ALICE, BOB, make_settings
from tests.support import JWT_SECRET, Peer, as_user
from tests.test_channels import FakeOpenAI

ORDER = "order-1"  # both users' waits wait for the payment of an order with this same id


def event_workflow(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "placed", "type": "trigger", "trigger": "event", "event": "order/placed"},
            {
                "id": "note",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": {"order": "{{ trigger_data.order }}"}},
            },
        ],
        "edges": [{"source": "placed", "target": "note"}],
    }


def waiting_workflow(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "paid",
                "type": "wait_for_event",
                "event": "order/paid",
                "match": "event.data.order == trigger_data.order",
                "timeout": "1d",
            },
            {
                "id": "thanks",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": {"paid": True}},
            },
        ],
        "edges": [
            {"source": "start", "target": "paid"},
            {"source": "paid", "target": "thanks"},
        ],
    }


@dataclass
class Account:
    """One user's objects, made through the API."""

    user: str
    headers: dict[str, str]
    event_wf: str = ""
    wait_wf: str = ""
    event_run: str = ""
    waiting_run: str = ""
    command_run: str = ""
    trace_id: str = ""
    session_id: str = ""
    key_id: str = ""
    key: str = ""
    hook_wf: str = ""
    hook_path: str = ""


@dataclass
class World:
    client: TestClient
    llm: FakeOpenAI
    database_url: str
    alice: Account
    bob: Account

    def as_bob(
        self, method: str, url: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        return self.client.request(
            method, url, headers={**self.bob.headers, **(headers or {})}, **kw
        )

    def as_alice(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, headers=self.alice.headers, **kwargs)


def populate(client: TestClient, llm: FakeOpenAI, user: str, name: str) -> Account:
    account = Account(user, as_user(user))
    h = account.headers

    created = client.post("/workflows", json={"blueprint": event_workflow(name)}, headers=h)
    assert created.status_code == 201, created.text
    account.event_wf = created.json()["id"]
    activated = client.post(f"/workflows/{account.event_wf}/activate", headers=h)
    assert activated.status_code == 200, activated.text
    emitted = client.post(
        "/events", json={"name": "order/placed", "data": {"order": ORDER}}, headers=h
    ).json()
    [account.event_run] = emitted["started_run_ids"]

    created = client.post("/workflows", json={"blueprint": waiting_workflow(name)}, headers=h)
    account.wait_wf = created.json()["id"]
    executed = client.post(
        "/workflow/execute",
        json={"workflow_id": account.wait_wf, "payload": {"order": ORDER}},
        headers=h,
    )
    assert executed.status_code == 202, executed.text
    account.waiting_run = executed.json()["run_id"]

    llm.say("SEND_WHATSAPP", to="+919812345678", message=f"{name}'s secret plan")
    turn = client.post(
        "/intent-parser",
        json={"session_id": "kiosk", "text": f"tell +919812345678 {name}'s secret plan"},
        headers=h,
    )
    assert turn.status_code == 200 and turn.json()["status"] == "completed", turn.text
    account.command_run = turn.json()["run_id"]
    account.trace_id = turn.json()["trace_id"]
    account.session_id = turn.json()["session_id"]

    for credential in ("shop", f"{name.lower()}_only"):
        made = client.post(
            "/credentials",
            json={"name": credential, "type": "http_bearer", "data": {"token": f"{name}-token-1"}},
            headers=h,
        )
        assert made.status_code == 201, made.text

    key = client.post("/me/api-keys", json={"name": f"{name}'s laptop"}, headers=h).json()
    account.key_id, account.key = key["id"], key["key"]
    assert client.patch("/me", json={"display_name": name}, headers=h).status_code == 200

    with_client = _Waiter(client, h)
    with_client.run(account.event_run, {"succeeded"})
    with_client.run(account.waiting_run, {"waiting"})
    with_client.run(account.command_run, {"succeeded"})
    return account


def add_hook(client: TestClient, account: Account) -> None:
    """An active webhook-triggered workflow of the account's user, with its hook."""
    hooked = {"nodes": [{"id": "start", "type": "trigger", "trigger": "webhook"}], "edges": []}
    created = client.post("/workflows", json={"blueprint": hooked}, headers=account.headers)
    assert created.status_code == 201, created.text
    account.hook_wf, account.hook_path = created.json()["id"], created.json()["hook"]["path"]
    activated = client.post(f"/workflows/{account.hook_wf}/activate", headers=account.headers)
    assert activated.status_code == 200, activated.text


class _Waiter:
    """``wait_for_run`` with a user's headers."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    def run(self, run_id: str, statuses: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            run = self.client.get(f"/runs/{run_id}", headers=self.headers).json()
            if run["status"] in statuses:
                return run
            assert time.monotonic() < deadline, run
            time.sleep(0.03)


@pytest.fixture
def world(database_url: str, peer: Peer) -> Iterator[World]:
    llm = FakeOpenAI(peer)
    settings = make_settings(
        database_url,
        supabase_jwt_secret=JWT_SECRET,
        openai_base_url=llm.url,
        openai_api_key="sk-test",
        llm_backoff_seconds=0,
        session_timeout_seconds=3600,
        channel_reply_wait_seconds=5,
        tools={"twilio": {"auth_token": "twilio-auth-token"}},
        credentials_key=Fernet.generate_key().decode(),
    )
    with TestClient(create_app(settings)) as client:
        alice = populate(client, llm, ALICE, "Alice")
        bob = populate(client, llm, BOB, "Bob")
        add_hook(client, alice)
        add_hook(client, bob)
        with psycopg.connect(database_url, autocommit=True) as conn:  # linking has its own tests
            conn.execute(
                "insert into channel_links (owner_id, channel, number) values (%s, 'whatsapp', %s)",
                (ALICE, ALICES_NUMBER),
            )
            # Alice's first message came with a voice note, kept on this machine.
            audio = {"store": "local", "key": f"{ALICE}/note.ogg", "content_type": "audio/ogg"}
            (settings.audio_dir / ALICE).mkdir(parents=True, exist_ok=True)
            (settings.audio_dir / audio["key"]).write_bytes(b"OggS Alice's voice")
            conn.execute(
                "update session_messages set media = jsonb_build_object('audio', %s::jsonb)"
                " where id = (select min(id) from session_messages where session_id = %s)",
                (json.dumps(audio), alice.session_id),
            )
        yield World(client, llm, database_url, alice, bob)


def not_found(response: Any) -> None:
    assert response.status_code == 404, (response.status_code, response.text)
    assert response.json()["error"]["code"] == "not_found", response.text


def snapshot(w: World) -> dict[str, Any]:
    """Everything of Alice's that Bob's requests could have touched, as Alice sees it."""
    a = w.alice
    keys = w.as_alice("GET", "/me/api-keys").json()
    return {
        "me": w.as_alice("GET", "/me").json()["user"],
        "keys": [{k: v for k, v in key.items() if k != "last_used_at"} for key in keys],
        "workflows": [
            w.as_alice("GET", f"/workflows/{wf}").json() for wf in (a.event_wf, a.wait_wf)
        ],
        "runs": [
            w.as_alice("GET", f"/runs/{run}").json()
            for run in (a.event_run, a.waiting_run, a.command_run)
        ],
        "event_wf_runs": w.as_alice("GET", f"/workflows/{a.event_wf}/runs").json(),
        "session": w.as_alice("GET", f"/sessions/{a.session_id}").json(),
        "credentials": w.as_alice("GET", "/credentials").json(),
        "retention": w.as_alice("GET", "/me/retention").json(),
        "workflow_retention": w.as_alice("GET", f"/workflows/{a.event_wf}/retention").json(),
        "hook": w.as_alice("GET", f"/workflows/{a.hook_wf}/hook").json(),
    }


# --- One case per route: what Bob does with Alice's objects, and what he must get -------------


def me_is_mine(w: World) -> None:
    me = w.as_bob("GET", "/me").json()
    assert me["user"]["id"] == BOB
    keys = [k["id"] for k in me["api_keys"]]
    assert w.alice.key_id not in keys and w.bob.key_id in keys


def profile_change_is_mine(w: World) -> None:
    changed = w.as_bob("PATCH", "/me", json={"display_name": "Robert"})
    assert changed.status_code == 200 and changed.json()["id"] == BOB
    assert w.as_alice("GET", "/me").json()["user"]["display_name"] == "Alice"


def new_key_is_mine(w: World) -> None:
    created = w.as_bob("POST", "/me/api-keys", json={"name": "bob's phone"})
    assert created.status_code == 201
    me = w.client.get("/me", headers={"X-API-Key": created.json()["key"]}).json()
    assert me["user"]["id"] == BOB


def key_list_is_mine(w: World) -> None:
    ids = [k["id"] for k in w.as_bob("GET", "/me/api-keys").json()]
    assert w.alice.key_id not in ids and w.bob.key_id in ids


def key_revoke(w: World) -> None:
    not_found(w.as_bob("DELETE", f"/me/api-keys/{w.alice.key_id}"))


def credential_list_is_mine(w: World) -> None:
    alice = [c["id"] for c in w.as_alice("GET", "/credentials").json()]
    bob = [c["id"] for c in w.as_bob("GET", "/credentials").json()]
    assert bob and alice and not set(alice) & set(bob)


def new_credential_is_mine(w: World) -> None:
    """Bob's "shop" is his own (names are per user); a new one lands in his list only."""
    body = {"name": "shop", "type": "http_bearer", "data": {"token": "bob-token-2"}}
    assert w.as_bob("POST", "/credentials", json=body).json()["error"]["code"] == (
        "credential_exists"
    )
    body["name"] = "alice_only"
    assert w.as_bob("POST", "/credentials", json=body).status_code == 201
    assert "alice_only" in [c["name"] for c in w.as_bob("GET", "/credentials").json()]


def rotate_credential(w: World) -> None:
    body = {"data": {"token": "bob-token-3"}}
    not_found(w.as_bob("PUT", "/credentials/not_bobs", json=body))
    assert w.as_bob("PUT", "/credentials/shop", json=body).status_code == 200


def delete_credential(w: World) -> None:
    not_found(w.as_bob("DELETE", "/credentials/not_bobs"))
    assert w.as_bob("DELETE", "/credentials/bob_only").status_code == 204


def catalog_is_the_same_for_everyone(path: str) -> Callable[[World], None]:
    def check(w: World) -> None:
        bob = w.as_bob("GET", path)
        assert bob.status_code == 200 and bob.json() == w.as_alice("GET", path).json()

    return check


def metrics_are_no_users(w: World) -> None:
    """Deployment-wide figures (every user's runs together): no user's token or personal key
    reads them, only a service key or local mode (tests/test_metrics.py)."""
    for headers in (w.bob.headers, {"X-API-Key": w.bob.key}):
        refused = w.client.get("/metrics", headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"


def create_workflow(w: World) -> None:
    body = {"blueprint": event_workflow("Bob's, for Alice"), "user_id": ALICE}
    refused = w.as_bob("POST", "/workflows", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["loc"] == ["body", "user_id"]
    own = w.as_bob("POST", "/workflows", json={"blueprint": event_workflow("Bob's second")})
    assert own.status_code == 201 and own.json()["owner_id"] == BOB


def get_workflow(w: World) -> None:
    for wf in (w.alice.event_wf, w.alice.wait_wf):
        not_found(w.as_bob("GET", f"/workflows/{wf}"))
        not_found(w.as_bob("GET", f"/workflows/{wf}", params={"version": 1}))
        assert w.as_alice("GET", f"/workflows/{wf}").status_code == 200


def put_workflow(w: World) -> None:
    body = {"blueprint": event_workflow("hijacked")}
    not_found(w.as_bob("PUT", f"/workflows/{w.alice.event_wf}", json=body))
    not_found(w.as_bob("PUT", f"/workflows/{w.alice.event_wf}", json={**body, "user_id": BOB}))


def activate(w: World) -> None:
    not_found(w.as_bob("POST", f"/workflows/{w.alice.wait_wf}/activate"))
    not_found(w.as_bob("POST", f"/workflows/{w.alice.wait_wf}/activate", json={"version": 1}))


def deactivate(w: World) -> None:
    not_found(w.as_bob("POST", f"/workflows/{w.alice.event_wf}/deactivate"))


def get_hook(w: World) -> None:
    not_found(w.as_bob("GET", f"/workflows/{w.alice.hook_wf}/hook"))
    assert w.as_alice("GET", f"/workflows/{w.alice.hook_wf}/hook").status_code == 200


def rotate_hook(w: World) -> None:
    """Bob cannot take over Alice's hook by rotating it (the snapshot: her token is as it
    was)."""
    not_found(w.as_bob("POST", f"/workflows/{w.alice.hook_wf}/hook/rotate"))


def workflow_runs(w: World) -> None:
    not_found(w.as_bob("GET", f"/workflows/{w.alice.event_wf}/runs"))
    runs = w.as_alice("GET", f"/workflows/{w.alice.event_wf}/runs").json()["runs"]
    assert [r["id"] for r in runs] == [w.alice.event_run]


def draft(w: World) -> None:
    """Drafting for someone else is refused before the model is asked."""
    prompts = len(w.llm.prompts)
    refused = w.as_bob("POST", "/workflow/draft", json={"prompt": "hello", "user_id": ALICE})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["loc"] == ["body", "user_id"]
    assert len(w.llm.prompts) == prompts


def revise(w: World) -> None:
    body = {"instruction": "send everything to Bob"}
    not_found(w.as_bob("POST", f"/workflows/{w.alice.event_wf}/revise", json=body))


def dry_run(w: World) -> None:
    url = f"/workflows/{w.alice.wait_wf}/dry-run"
    not_found(w.as_bob("POST", url, json={"payload": {"order": ORDER}}))
    assert w.as_alice("POST", url, json={"payload": {"order": ORDER}}).status_code == 200


def execute(w: World) -> None:
    for wf in (w.alice.event_wf, w.alice.wait_wf):
        not_found(w.as_bob("POST", "/workflow/execute", json={"workflow_id": wf}))
        body = {"workflow_id": wf, "idempotency_key": "bob-tries", "version": 1}
        not_found(w.as_bob("POST", "/workflow/execute", json=body))


def list_runs(w: World) -> None:
    bob = w.as_bob("GET", "/runs", params={"trace_id": w.alice.trace_id})
    assert bob.status_code == 200 and bob.json()["runs"] == []
    alice = w.as_alice("GET", "/runs", params={"trace_id": w.alice.trace_id}).json()["runs"]
    assert [r["id"] for r in alice] == [w.alice.command_run]
    bobs = {r["id"] for r in w.as_bob("GET", "/runs", params={"limit": 200}).json()["runs"]}
    assert bobs and not bobs & set(alice_runs(w))
    not_found(w.as_bob("GET", "/runs", params={"workflow_id": w.alice.event_wf}))
    not_found(w.as_bob("GET", "/runs", params={"parent_run_id": w.alice.event_run}))


def all_runs_stream(w: World) -> None:
    """Bob's stream of all his runs, replayed from the start, holds his runs and only his."""
    bobs = {r["id"] for r in w.as_bob("GET", "/runs", params={"limit": 200}).json()["runs"]}
    seen = set()
    with w.client.stream("GET", "/runs/stream?last_id=0", headers=w.bob.headers) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                seen.add(json.loads(line.removeprefix("data:"))["id"])
                if len(seen) == len(bobs):
                    break
    assert seen == bobs


def list_workflows(w: World) -> None:
    bobs = {wf["id"] for wf in w.as_bob("GET", "/workflows").json()["workflows"]}
    alices = {wf["id"] for wf in w.as_alice("GET", "/workflows").json()["workflows"]}
    assert {w.alice.event_wf, w.alice.wait_wf} <= alices and not alices & bobs


def archive(w: World) -> None:
    not_found(w.as_bob("DELETE", f"/workflows/{w.alice.event_wf}"))


def alice_runs(w: World) -> list[str]:
    return [w.alice.event_run, w.alice.waiting_run, w.alice.command_run]


def get_run(w: World) -> None:
    for run in alice_runs(w):
        not_found(w.as_bob("GET", f"/runs/{run}"))
        assert w.as_alice("GET", f"/runs/{run}").status_code == 200


def run_logs(w: World) -> None:
    for run in alice_runs(w):
        not_found(w.as_bob("GET", f"/runs/{run}/logs"))
        not_found(w.as_bob("GET", f"/runs/{run}/logs", params={"after_id": 0, "limit": 1000}))
        assert w.as_alice("GET", f"/runs/{run}/logs").json()["logs"]


def run_stream(w: World) -> None:
    for run in alice_runs(w):
        not_found(w.as_bob("GET", f"/runs/{run}/stream"))
        not_found(w.as_bob("GET", f"/runs/{run}/stream", headers={"Last-Event-ID": "0"}))
    finished = w.as_alice("GET", f"/runs/{w.alice.event_run}/stream")
    assert finished.status_code == 200 and "event: log" in finished.text


def cancel(w: World) -> None:
    for run in alice_runs(w):
        not_found(w.as_bob("POST", f"/runs/{run}/cancel"))


def retry(w: World) -> None:
    for run in alice_runs(w):
        not_found(w.as_bob("POST", f"/runs/{run}/retry"))


def events(w: World) -> None:
    """Bob's event with Alice's event names and her order id resumes only his wait and starts
    only his workflow."""
    paid = w.as_bob("POST", "/events", json={"name": "order/paid", "data": {"order": ORDER}})
    assert paid.status_code == 202 and paid.json()["resumed_run_ids"] == [w.bob.waiting_run]
    placed = w.as_bob("POST", "/events", json={"name": "order/placed", "data": {"order": ORDER}})
    started = placed.json()["started_run_ids"]
    assert len(started) == 1, f"started {started} (Bob has one active workflow for it)"
    assert w.as_bob("GET", f"/runs/{started[0]}").json()["workflow_id"] == w.bob.event_wf
    _Waiter(w.client, w.bob.headers).run(w.bob.waiting_run, {"succeeded"})
    # Alice's run is still parked and her workflow started nothing new: checked by the
    # snapshot, and once more here so that a failure says why.
    assert w.as_alice("GET", f"/runs/{w.alice.waiting_run}").json()["status"] == "waiting"
    runs = w.as_alice("GET", f"/workflows/{w.alice.event_wf}/runs").json()["runs"]
    assert len(runs) == 1


def intent_parser(w: World) -> None:
    """Alice's session reference, or her session's id, is a fresh session of Bob's."""
    for ref in ("kiosk", w.alice.session_id):
        w.llm.say(None)
        turn = w.as_bob("POST", "/intent-parser", json={"session_id": ref, "text": "hello"})
        assert turn.status_code == 200, turn.text
        session_id = turn.json()["session_id"]
        assert session_id != w.alice.session_id
        mine = w.as_bob("GET", f"/sessions/{session_id}").json()
        assert mine["owner_id"] == BOB
        assert not [m for m in mine["messages"] if "Alice" in (m["text"] or "")]
        not_found(w.as_alice("GET", f"/sessions/{session_id}"))


def get_session(w: World) -> None:
    not_found(w.as_bob("GET", f"/sessions/{w.alice.session_id}"))
    assert w.as_alice("GET", f"/sessions/{w.alice.session_id}").status_code == 200


def session_audio(w: World) -> None:
    """Alice's voice note is hers: Bob gets 404 naming her session or his own."""
    mine = w.as_alice("GET", f"/sessions/{w.alice.session_id}").json()
    [voiced] = [m for m in mine["messages"] if m["audio_url"]]
    assert w.as_alice("GET", voiced["audio_url"]).content == b"OggS Alice's voice"
    not_found(w.as_bob("GET", voiced["audio_url"]))
    not_found(w.as_bob("GET", f"/sessions/{w.bob.session_id}/messages/{voiced['id']}/audio"))


def first_event(w: World, url: str) -> str:
    """The first SSE event of Alice's (endless) stream, then hang up."""
    with w.client.stream("GET", url, headers=w.alice.headers) as response:
        assert response.status_code == 200, response.read()
        lines = []
        for line in response.iter_lines():
            if not line and lines:
                return "\n".join(lines)
            lines.append(line)
    raise AssertionError(f"{url}: the stream ended without an event")


def workflow_stream(w: World) -> None:
    url = f"/workflows/{w.alice.event_wf}/stream"
    not_found(w.as_bob("GET", url))
    not_found(w.as_bob("GET", url, headers={"Last-Event-ID": "0"}))
    assert w.alice.event_run in first_event(w, f"{url}?last_id=0")


def session_stream(w: World) -> None:
    url = f"/sessions/{w.alice.session_id}/stream"
    not_found(w.as_bob("GET", url))
    not_found(w.as_bob("GET", f"{url}?last_id=0"))
    assert "event: message" in first_event(w, url)


def list_sessions(w: World) -> None:
    bob = {s["id"] for s in w.as_bob("GET", "/sessions").json()["sessions"]}
    alice = {s["id"] for s in w.as_alice("GET", "/sessions").json()["sessions"]}
    assert w.alice.session_id in alice and w.alice.session_id not in bob
    assert not alice & bob


ALICES_NUMBER = "+919800000001"


def link_code(w: World) -> None:
    """Bob asking for a code for Alice's linked number gets nothing of hers (the number stays
    hers; the code he gets could only ever link it after she unlinks)."""
    asked = w.as_bob("POST", "/me/channels/whatsapp", json={"number": ALICES_NUMBER})
    assert asked.status_code in (201, 409), asked.text
    mine = w.as_alice("GET", "/me").json()["channels"]
    assert [c["number"] for c in mine] == [ALICES_NUMBER]


def unlink(w: World) -> None:
    not_found(w.as_bob("DELETE", f"/me/channels/whatsapp/{ALICES_NUMBER}"))


def retention_is_mine(w: World) -> None:
    mine = w.as_bob("GET", "/me/retention")
    assert mine.status_code == 200 and mine.json()["override"]["failed_runs_days"] is None


def retention_change_is_mine(w: World) -> None:
    changed = w.as_bob("PUT", "/me/retention", json={"failed_runs_days": 7})
    assert changed.status_code == 200 and changed.json()["effective"]["failed_runs_days"] == 7
    assert w.as_alice("GET", "/me/retention").json()["effective"]["failed_runs_days"] == 90


def workflow_retention(w: World) -> None:
    not_found(w.as_bob("GET", f"/workflows/{w.alice.event_wf}/retention"))


def workflow_retention_change(w: World) -> None:
    url = f"/workflows/{w.alice.event_wf}/retention"
    not_found(w.as_bob("PUT", url, json={"succeeded_runs_days": 1}))
    assert w.as_bob("PUT", f"/workflows/{w.bob.event_wf}/retention", json={}).status_code == 200


def export_is_mine(w: World) -> None:
    """Bob's export holds his objects and none of Alice's."""
    export = w.as_bob("GET", "/me/export")
    assert export.status_code == 200
    text = export.text
    assert w.bob.event_run in text and w.bob.session_id in text
    alices = [w.alice.event_wf, w.alice.wait_wf, *alice_runs(w), w.alice.session_id, ALICE]
    assert not [i for i in alices if i in text]
    assert "Alice" not in text


def import_is_mine(w: World) -> None:
    """An import naming Alice's workflow (and her as user) makes a workflow of Bob's."""
    body = {
        "user_id": ALICE,
        "workflows": [
            {
                "id": w.alice.event_wf,
                "name": "copied",
                "versions": [{"version": 1, "blueprint": event_workflow("copied")}],
            }
        ],
    }
    made = w.as_bob("POST", "/me/import", json=body)
    assert made.status_code == 201, made.text
    [entry] = made.json()["imported"]
    assert w.as_bob("GET", f"/workflows/{entry['id']}").json()["owner_id"] == BOB
    not_found(w.as_alice("GET", f"/workflows/{entry['id']}"))


CAROL = "ca201000-0000-4000-8000-000000000003"


def erase_is_mine(w: World) -> None:
    """Erasing acts on the caller only: Bob's token cannot name Alice (X-User-Id is a service
    key's), his personal key cannot erase at all, and Carol erasing herself leaves Alice and
    Bob as they were (Alice checked by the snapshot)."""
    refused = w.as_bob("DELETE", "/me/data", headers={"X-User-Id": ALICE})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_header"
    forbidden = w.client.delete("/me/data", headers={"X-API-Key": w.bob.key})
    assert forbidden.status_code == 403, forbidden.text
    carol = as_user(CAROL)
    made = w.client.post("/workflows", json={"blueprint": event_workflow("Carol's")}, headers=carol)
    assert made.status_code == 201
    bob_before = w.as_bob("GET", "/workflows").json()
    erased = w.client.delete("/me/data", headers=carol)
    assert erased.status_code == 200 and erased.json()["deleted"]["workflows"] == 1
    assert w.as_bob("GET", "/workflows").json() == bob_before
    assert w.as_bob("GET", f"/runs/{w.bob.event_run}").status_code == 200


CASES: dict[tuple[str, str], Callable[[World], None]] = {
    ("GET", "/me"): me_is_mine,
    ("PATCH", "/me"): profile_change_is_mine,
    ("POST", "/me/api-keys"): new_key_is_mine,
    ("GET", "/me/api-keys"): key_list_is_mine,
    ("DELETE", "/me/api-keys/{key_id}"): key_revoke,
    ("GET", "/blueprint/schema"): catalog_is_the_same_for_everyone("/blueprint/schema"),
    ("GET", "/tools"): catalog_is_the_same_for_everyone("/tools"),
    ("GET", "/credentials/types"): catalog_is_the_same_for_everyone("/credentials/types"),
    ("GET", "/credentials"): credential_list_is_mine,
    ("POST", "/credentials"): new_credential_is_mine,
    ("PUT", "/credentials/{name}"): rotate_credential,
    ("DELETE", "/credentials/{name}"): delete_credential,
    ("GET", "/metrics"): metrics_are_no_users,
    ("POST", "/workflows"): create_workflow,
    ("GET", "/workflows/{workflow_id}"): get_workflow,
    ("PUT", "/workflows/{workflow_id}"): put_workflow,
    ("POST", "/workflows/{workflow_id}/activate"): activate,
    ("POST", "/workflows/{workflow_id}/deactivate"): deactivate,
    ("GET", "/workflows/{workflow_id}/runs"): workflow_runs,
    ("GET", "/workflows/{workflow_id}/hook"): get_hook,
    ("POST", "/workflows/{workflow_id}/hook/rotate"): rotate_hook,
    ("GET", "/workflows/{workflow_id}/stream"): workflow_stream,
    ("POST", "/workflow/draft"): draft,
    ("POST", "/workflows/{workflow_id}/revise"): revise,
    ("POST", "/workflows/{workflow_id}/dry-run"): dry_run,
    ("POST", "/workflow/execute"): execute,
    ("GET", "/runs"): list_runs,
    ("GET", "/runs/stream"): all_runs_stream,
    ("GET", "/workflows"): list_workflows,
    ("DELETE", "/workflows/{workflow_id}"): archive,
    ("GET", "/runs/{run_id}"): get_run,
    ("GET", "/runs/{run_id}/logs"): run_logs,
    ("GET", "/runs/{run_id}/stream"): run_stream,
    ("POST", "/runs/{run_id}/cancel"): cancel,
    ("POST", "/runs/{run_id}/retry"): retry,
    ("POST", "/events"): events,
    ("POST", "/intent-parser"): intent_parser,
    ("GET", "/sessions/{session_id}"): get_session,
    ("GET", "/sessions/{session_id}/stream"): session_stream,
    ("GET", "/sessions/{session_id}/messages/{message_id}/audio"): session_audio,
    ("GET", "/sessions"): list_sessions,
    ("POST", "/me/channels/whatsapp"): link_code,
    ("DELETE", "/me/channels/whatsapp/{number}"): unlink,
    ("GET", "/me/retention"): retention_is_mine,
    ("PUT", "/me/retention"): retention_change_is_mine,
    ("GET", "/workflows/{workflow_id}/retention"): workflow_retention,
    ("PUT", "/workflows/{workflow_id}/retention"): workflow_retention_change,
    ("GET", "/me/export"): export_is_mine,
    ("POST", "/me/import"): import_is_mine,
    ("DELETE", "/me/data"): erase_is_mine,
}

#: Routes without a user's credentials, and why.
EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/health"): "liveness: no user data",
    ("GET", "/config/public"): "how to sign in: no user data, nothing secret",
    ("POST", "/webhooks/razorpay"): "signed with the deployment's RAZORPAY_WEBHOOK_SECRET; its "
    "events belong to the local user",
    ("POST", "/webhooks/razorpay/{credential_id}"): "signed with that credential's webhook "
    "secret; its events belong to the credential's owner (tests/test_credentials.py)",
    ("POST", "/whatsapp/{credential_id}"): "signed by Twilio with that credential's auth token; "
    "only its owner's linked senders act (tests/test_credentials.py)",
    ("POST", "/whatsapp"): "signed by Twilio (X-Twilio-Signature); the sender's number decides "
    "the user",
    ("POST", "/hooks/{workflow_id}/{token}"): "the token in the URL is the credential (kept "
    "only as its SHA-256); runs belong to the workflow's owner (tests/test_hooks.py)",
    ("GET", "/api/inngest"): "ENGINE=inngest only; signed with INNGEST_SIGNING_KEY",
    ("PUT", "/api/inngest"): "ENGINE=inngest only; signed with INNGEST_SIGNING_KEY",
    ("POST", "/api/inngest"): "ENGINE=inngest only; signed with INNGEST_SIGNING_KEY",
    # /docs, /redoc and /openapi.json are not in the schema's paths: API description only.
}


def test_every_route_keeps_users_apart(world: World) -> None:
    operations = {
        (method.upper(), path)
        for path, item in world.client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in item
    }
    missing = sorted(operations - set(CASES) - set(EXEMPT))
    assert not missing, f"routes without an ownership case in tests/test_ownership.py: {missing}"
    stale = sorted(set(CASES) - operations)
    assert not stale, f"cases for routes that no longer exist: {stale}"

    before = snapshot(world)
    problems = []
    for operation in sorted(CASES):
        try:
            CASES[operation](world)
        except AssertionError as exc:
            problems.append(f"{' '.join(operation)}: {exc}")
    assert not problems, "\n".join(problems)
    assert snapshot(world) == before, "Bob's requests changed Alice's objects"


def test_exempt_routes_take_no_user_credentials(world: World) -> None:
    """The exempt routes answer without a token (the signed ones check their signature), so
    they are not a way around the checks above either."""
    assert world.client.get("/health").status_code == 200
    razorpay = world.client.post("/webhooks/razorpay", content=b"{}")
    assert razorpay.json()["error"]["code"] == "invalid_signature"
    whatsapp = world.client.post("/whatsapp", data={"MessageSid": "SM1", "From": "whatsapp:+1"})
    assert whatsapp.status_code == 403
    assert world.client.get("/me").status_code == 401
    # Alice's hook token on Bob's workflow: no hook there (the same 404 as any wrong URL)
    token = world.alice.hook_path.rsplit("/", 1)[1]
    crossed = world.client.post(f"/hooks/{world.bob.hook_wf}/{token}", json={})
    assert crossed.status_code == 404 and crossed.json()["error"]["code"] == "hook_not_found"


def test_idempotency_keys_are_per_user(world: World) -> None:
    body = {"blueprint": event_workflow("adhoc"), "payload": {"order": ORDER}}
    body["idempotency_key"] = "invoice-42"
    alice = world.as_alice("POST", "/workflow/execute", json=body)
    bob = world.as_bob("POST", "/workflow/execute", json=body)
    assert alice.status_code == bob.status_code == 202, (alice.text, bob.text)
    assert alice.json()["run_id"] != bob.json()["run_id"]
    again = world.as_alice("POST", "/workflow/execute", json=body)
    assert again.status_code == 200 and again.json()["run_id"] == alice.json()["run_id"]
    assert not again.json()["created"]
    not_found(world.as_bob("GET", f"/runs/{alice.json()['run_id']}"))


def test_a_system_workflow_cannot_be_pointed_at_another_users_session(world: World) -> None:
    """The session-timeout system workflow is Bob's own (its runs are his, like his session),
    and its blueprint uses the internal ``sessions`` tool on ``trigger_data.session_id``. Run
    by hand with Alice's session id, it would close her session and put her transcript into
    Bob's run logs. Its id is no secret: a dashboard lists its user's workflows (on Supabase,
    directly under row-level security), as the query here does. System workflows run only on
    their own triggers."""
    with psycopg.connect(world.database_url) as conn:
        [(system_wf,)] = conn.execute(
            "select id from workflows where owner_id = %s and origin = 'system'", (BOB,)
        ).fetchall()
        [(command_wf,)] = conn.execute(
            "select workflow_id from workflow_runs where id = %s", (world.bob.command_run,)
        ).fetchall()
    for workflow_id in (system_wf, command_wf):
        body = {"workflow_id": str(workflow_id), "payload": {"session_id": world.alice.session_id}}
        refused = world.as_bob("POST", "/workflow/execute", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["loc"] == ["body", "workflow_id"]
    with psycopg.connect(world.database_url) as conn:
        [(count,)] = conn.execute(
            "select count(*) from workflow_runs where trigger_data->>'session_id' = %s"
            " and owner_id = %s",
            (world.alice.session_id, BOB),
        ).fetchall()
    assert count == 0
    session = world.as_alice("GET", f"/sessions/{world.alice.session_id}").json()
    assert session["status"] == "open" and session["summary"] is None
