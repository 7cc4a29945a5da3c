"""A user's data as a whole, through the real entry points (HTTP and ``wf``) on PostgreSQL:
the export holds everything of theirs and no secret, its workflows import into a fresh
account, and erasing one user leaves every row of another exactly as it was (counted per
table, over every table of the catalog that names an owner), stops their runs and schedules
first, and is idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg import sql

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.store import account_data
from tests.conftest import ALICE, BOB, make_settings
from tests.support import JWT_SECRET, Peer, as_user, wait_for_run
from tests.test_audio_kept import SERVICE_KEY, FakeStorage
from tests.test_channels import FakeOpenAI, wav_bytes
from tests.test_cli import wf
from tests.test_ownership import ALICES_NUMBER, CAROL, Account, populate, waiting_workflow
from tests.test_retention import _old_runs, _row, prune


def schedule_workflow() -> dict[str, Any]:
    return {
        "name": "every morning",
        "nodes": [
            {"id": "tick", "type": "trigger", "trigger": "schedule", "cron": "0 9 * * 1-5"},
            {
                "id": "note",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": {"at": "{{ trigger_data.scheduled_for }}"}},
            },
        ],
        "edges": [{"source": "tick", "target": "note"}],
    }


def http_workflow(url: str) -> dict[str, Any]:
    return {
        "name": "call",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "call",
                "type": "action",
                "service": "http",
                "task": "request",
                "params": {"url": url},
            },
        ],
        "edges": [{"source": "start", "target": "call"}],
    }


@dataclass
class Users:
    client: TestClient
    database_url: str
    peer: Peer
    alice: Account
    bob: Account
    audio_dir: Path


def more(client: TestClient, peer: Peer, account: Account, number: str, database_url: str) -> None:
    """What ``populate`` does not make: a schedule, a run with attempt counts, a second
    version, a link code, a webhook delivery, a retention override."""
    h = account.headers
    made = client.post("/workflows", json={"blueprint": schedule_workflow()}, headers=h)
    assert client.post(f"/workflows/{made.json()['id']}/activate", headers=h).status_code == 200
    put = client.put(
        f"/workflows/{account.wait_wf}", json={"blueprint": waiting_workflow("v2")}, headers=h
    )
    assert put.status_code == 200, put.text
    peer.handlers["/ok"] = lambda body: (200, {"ok": True})
    run = client.post(
        "/workflow/execute", json={"blueprint": http_workflow(f"{peer.url}/ok")}, headers=h
    )
    assert wait_for_run(client, run.json()["run_id"], headers=h)["status"] == "succeeded"
    code = client.post("/me/channels/whatsapp", json={"number": number}, headers=h)
    assert code.status_code == 201, code.text
    assert client.put("/me/retention", json={"failed_runs_days": 120}, headers=h).status_code == 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        [(event_id,)] = conn.execute(
            "select id from events where owner_id = %s limit 1", (account.user,)
        ).fetchall()
        conn.execute(
            "insert into webhook_deliveries (provider, delivery_id, event_id, event_name,"
            " owner_id) values ('razorpay', %s, %s, 'order/placed', %s)",
            (f"evt_{account.user}", event_id, account.user),
        )


@pytest.fixture
def users(database_url: str, peer: Peer, tmp_path: Path) -> Iterator[Users]:
    llm = FakeOpenAI(peer)
    settings = make_settings(
        database_url,
        supabase_jwt_secret=JWT_SECRET,
        openai_base_url=llm.url,
        openai_api_key="sk-test",
        llm_backoff_seconds=0,
        session_timeout_seconds=3600,
        channel_reply_wait_seconds=5,
        credentials_key=Fernet.generate_key().decode(),
        run_pruner=False,
        audio_dir=tmp_path / "audio",
    )
    for owner in (ALICE, BOB):  # a kept voice note each (as audio_store.keep files them)
        note = tmp_path / "audio" / owner / "note.ogg"
        note.parent.mkdir(parents=True)
        note.write_bytes(b"OggS voice")
    with TestClient(create_app(settings)) as client:
        alice = populate(client, llm, ALICE, "Alice")
        bob = populate(client, llm, BOB, "Bob")
        with psycopg.connect(database_url, autocommit=True) as conn:
            for owner, number in ((ALICE, ALICES_NUMBER), (BOB, "+919800000002")):
                conn.execute(
                    "insert into channel_links (owner_id, channel, number)"
                    " values (%s, 'whatsapp', %s)",
                    (owner, number),
                )
        more(client, peer, alice, "+919800000011", database_url)
        more(client, peer, bob, "+919800000022", database_url)
        yield Users(client, database_url, peer, alice, bob, tmp_path / "audio")


def owner_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Every table of the schema with an owner column (from the catalog, so a table added
    later is counted too), with that column."""
    rows = conn.execute(
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'public' and ((column_name = 'owner_id')"
        " or (table_name, column_name) in (('users', 'id'), ('api_keys', 'user_id')))"
        " order by table_name"
    ).fetchall()
    return [(t, c) for t, c in rows]


def counts(database_url: str, owner: str) -> dict[str, int]:
    """Rows of ``owner`` in every owner table, and in the tables of their runs."""
    with psycopg.connect(database_url) as conn:
        found = {}
        for table, column in owner_tables(conn):
            query = sql.SQL("select count(*) from {} where {} = %s").format(
                sql.Identifier(table), sql.Identifier(column)
            )
            found[table] = conn.execute(query, (owner,)).fetchone()[0]  # type: ignore[index]
        for table in account_data.RUN_OWNED:
            query = sql.SQL(
                "select count(*) from {} t join workflow_runs r on r.id = t.run_id"
                " where r.owner_id = %s"
            ).format(sql.Identifier(table))
            found[table] = conn.execute(query, (owner,)).fetchone()[0]  # type: ignore[index]
    return found


def test_the_erasure_list_covers_every_owner_table(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert sorted(owner_tables(conn)) == sorted(account_data.OWNED)


def test_erasing_one_user_leaves_the_other_untouched(users: Users) -> None:
    alice_before, bob_before = counts(users.database_url, ALICE), counts(users.database_url, BOB)
    # every kind of row exists for both, or the comparison below proves little
    assert [t for t, n in alice_before.items() if n == 0] == []
    assert [t for t, n in bob_before.items() if n == 0] == []
    c, alice = users.client, users.alice.headers

    refused = c.delete("/me/data", headers={"X-API-Key": users.alice.key})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert counts(users.database_url, ALICE) == alice_before

    erased = c.delete("/me/data", headers=alice)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["user_id"] == ALICE
    # it says what it deleted: every row she had
    assert body["deleted"] == {**alice_before, "audio_files": 1}, body
    assert not (users.audio_dir / ALICE).exists(), "her kept voice notes are gone"
    assert (users.audio_dir / BOB / "note.ogg").is_file(), "his are not"
    assert body["cancelled_runs"] == 2  # the parked run and her session's timer
    assert body["deactivated_workflows"] == 2
    assert counts(users.database_url, ALICE) == dict.fromkeys(alice_before, 0)
    assert counts(users.database_url, BOB) == bob_before

    # Again: nothing left but the empty account this very request re-created to act for (a
    # signed-in user's first request creates their account); `wf users erase` answers 0 there.
    again = c.delete("/me/data", headers=alice)
    assert again.status_code == 200
    assert again.json()["deleted"] == {
        **dict.fromkeys(alice_before, 0),
        "users": 1,
        "audio_files": 0,
    }
    assert again.json()["cancelled_runs"] == 0
    assert counts(users.database_url, BOB) == bob_before

    # her key is gone; her token is a fresh, empty account
    assert c.get("/me", headers={"X-API-Key": users.alice.key}).status_code == 401
    me = c.get("/me", headers=alice).json()
    assert me["user"]["display_name"] is None and me["api_keys"] == [] and me["channels"] == []
    assert c.get("/workflows", headers=alice).json()["workflows"] == []
    assert c.get(f"/runs/{users.alice.event_run}", headers=alice).status_code == 404

    # Bob's world still works: his parked run resumes on his event and finishes
    paid = c.post(
        "/events",
        json={"name": "order/paid", "data": {"order": "order-1"}},
        headers=users.bob.headers,
    )
    assert paid.json()["resumed_run_ids"] == [users.bob.waiting_run]
    done = wait_for_run(c, users.bob.waiting_run, headers=users.bob.headers)
    assert done["status"] == "succeeded"


def test_erasure_stops_a_run_in_flight_and_the_runner_goes_on(users: Users, peer: Peer) -> None:
    """A step in flight finishes; nothing of the run is written after the erasure, and the
    runner keeps running other users' work."""
    release = threading.Event()
    peer.handlers["/slow"] = lambda body: (release.wait(30), (200, {"slow": True}))[1]
    started = users.client.post(
        "/workflow/execute",
        json={"blueprint": http_workflow(f"{peer.url}/slow")},
        headers=users.alice.headers,
    )
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 15
    while peer.hits["/slow"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    erased = users.client.delete("/me/data", headers=users.alice.headers)
    assert erased.status_code == 200, erased.text
    assert erased.json()["cancelled_runs"] == 3, erased.json()
    assert erased.json()["deleted"]["users"] == 1, erased.json()
    assert counts(users.database_url, ALICE)["users"] == 0
    release.set()
    bob = users.client.post(
        "/workflow/execute",
        json={"blueprint": http_workflow(f"{peer.url}/ok")},
        headers=users.bob.headers,
    )
    assert (
        wait_for_run(users.client, bob.json()["run_id"], headers=users.bob.headers)["status"]
        == "succeeded"
    )
    time.sleep(0.3)  # the slow step's pass has ended by now
    with psycopg.connect(users.database_url) as conn:
        left = conn.execute(
            "select (select count(*) from workflow_runs where id = %(r)s)"
            " + (select count(*) from workflow_logs where run_id = %(r)s)"
            " + (select count(*) from step_checkpoints where run_id = %(r)s)",
            {"r": run_id},
        ).fetchone()
    assert left == (0,)
    assert counts(users.database_url, ALICE) == dict.fromkeys(counts(users.database_url, BOB), 0)


def test_export_holds_everything_of_yours_and_no_secret(users: Users) -> None:
    c, alice = users.client, users.alice.headers
    response = c.get("/me/export", headers=alice)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    export = json.loads(response.content)
    assert export["format"] == "blueprint-engine/export" and export["version"] == 1
    assert export["user"]["id"] == ALICE and export["user"]["display_name"] == "Alice"
    before = counts(users.database_url, ALICE)
    assert len(export["workflows"]) == before["workflows"]
    assert sum(len(w["versions"]) for w in export["workflows"]) == before["workflow_versions"]
    assert len(export["runs"]) == before["workflow_runs"]
    assert sum(len(r["logs"]) for r in export["runs"]) == before["workflow_logs"]
    assert len(export["sessions"]) == before["sessions"]
    assert sum(len(s["messages"]) for s in export["sessions"]) == before["session_messages"]
    assert len(export["events"]) == before["events"]
    assert {k["name"] for k in export["api_keys"]} == {"Alice's laptop"}
    assert [ch["number"] for ch in export["channels"]] == [ALICES_NUMBER]
    assert {cr["name"] for cr in export["credentials"]} == {"shop", "alice_only"}
    assert export["retention"]["failed_runs_days"] == 120
    messages = [m["text"] for s in export["sessions"] for m in s["messages"]]
    assert any("Alice's secret plan" in (t or "") for t in messages)
    text = response.content.decode()
    for secret in ("Alice-token-1", users.alice.key, "gAAAAA", "key_sha256"):
        assert secret not in text, secret
    ids = {str(users.bob.event_run), users.bob.session_id, users.bob.event_wf}
    assert not [i for i in ids if i in text], "Bob's ids in Alice's export"


def test_export_round_trips_workflows_into_a_fresh_account(users: Users) -> None:
    c, alice, carol = users.client, users.alice.headers, as_user(CAROL)
    export = json.loads(c.get("/me/export", headers=alice).content)
    imported = c.post("/me/import", json={"workflows": export["workflows"]}, headers=carol)
    assert imported.status_code == 201, imported.text
    made = imported.json()["imported"]
    assert {m["source_id"] for m in made} == {
        users.alice.event_wf,
        users.alice.wait_wf,
        *[
            w["id"]
            for w in export["workflows"]
            if w["origin"] == "api" and w["name"] == "every morning"
        ],
    }
    skipped = {s["reason"].split(":")[0] for s in imported.json()["skipped"]}
    assert skipped <= {"origin 'system'", "origin 'channel'", "origin 'adhoc'"} and skipped
    for entry in made:
        source = c.get(f"/workflows/{entry['source_id']}", headers=alice).json()
        copy = c.get(f"/workflows/{entry['id']}", headers=carol).json()
        assert copy["owner_id"] == CAROL and copy["active"] is False
        assert copy["name"] == source["name"]
        assert [v["version"] for v in copy["versions"]] == [
            v["version"] for v in source["versions"]
        ]
        for version in source["versions"]:
            n = version["version"]
            theirs = c.get(f"/workflows/{entry['source_id']}?version={n}", headers=alice).json()
            mine = c.get(f"/workflows/{entry['id']}?version={n}", headers=carol).json()
            assert mine["blueprint"] == theirs["blueprint"]
    # the copies run in the new account
    copy_of_wait = next(m["id"] for m in made if m["source_id"] == users.alice.wait_wf)
    activated = c.post(f"/workflows/{copy_of_wait}/activate", json={"version": 1}, headers=carol)
    assert activated.status_code == 200, activated.text


def test_a_bad_import_names_the_field_and_imports_nothing(users: Users) -> None:
    carol = as_user(CAROL)
    good = {"name": "ok", "versions": [{"version": 1, "blueprint": schedule_workflow()}]}
    bad_blueprint = {**schedule_workflow(), "edges": [{"source": "tick", "target": "nowhere"}]}
    bad = {
        "name": "bad",
        "versions": [
            {"version": 1, "blueprint": schedule_workflow()},
            {"version": 2, "blueprint": bad_blueprint},
        ],
    }
    refused = users.client.post("/me/import", json={"workflows": [good, bad]}, headers=carol)
    assert refused.status_code == 422, refused.text
    loc = refused.json()["error"]["details"][0]["loc"]
    assert loc[:6] == ["body", "workflows", 1, "versions", 1, "blueprint"], loc
    assert users.client.get("/workflows", headers=carol).json()["workflows"] == []
    shapes = [
        ({"workflows": [{"name": "x", "versions": []}]}, ["body", "workflows", 0, "versions"]),
        ({"workflows": "all"}, ["body", "workflows"]),
        ({}, ["body", "workflows"]),
    ]
    for body, where in shapes:
        answer = users.client.post("/me/import", json=body, headers=carol)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["details"][0]["loc"] == where


def test_export_pages_through_many_runs(client: TestClient, settings: Settings) -> None:
    """More runs than a page: every one is in the export once."""
    _old_runs(settings.database_url, 450)
    export = json.loads(client.get("/me/export").content)
    assert len(export["runs"]) == 450
    assert len({r["id"] for r in export["runs"]}) == 450
    assert all(len(r["logs"]) == 2 for r in export["runs"])


def test_wf_users_export_and_erase(users: Users, tmp_path: Path) -> None:
    """The operator's commands, on the same database: export to a file, erase with counts,
    erase again (nothing left)."""
    settings: Settings = users.client.app.state.settings  # type: ignore[attr-defined]
    bob_before = counts(users.database_url, BOB)
    alice_before = counts(users.database_url, ALICE)
    target = tmp_path / "alice.json"
    exported = wf(settings, "users", "export", ALICE, "--output", str(target))
    assert exported.returncode == 0, exported.stderr
    assert len(json.loads(target.read_text())["runs"]) == alice_before["workflow_runs"]

    erased = wf(settings, "users", "erase", ALICE, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert f"erased user {ALICE}" in erased.stdout
    assert _row(erased.stdout, "workflow_runs") == alice_before["workflow_runs"]
    assert _row(erased.stdout, "session_messages") == alice_before["session_messages"]
    assert counts(users.database_url, ALICE) == dict.fromkeys(alice_before, 0)
    assert counts(users.database_url, BOB) == bob_before
    again = wf(settings, "users", "erase", ALICE, "--yes")
    assert again.returncode == 0 and "cancelled 0 unfinished run(s)" in again.stdout

    unconfirmed = subprocess.run(
        [sys.executable, "-m", "blueprint_engine.cli", "users", "erase", BOB],
        input="n\n",
        env={**os.environ, "DATABASE_URL": settings.database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unconfirmed.returncode == 1, unconfirmed.stderr
    assert counts(users.database_url, BOB) == bob_before
    bad = wf(settings, "users", "erase", "not-a-uuid", "--yes")
    assert bad.returncode == 2


@pytest.fixture
def storage() -> Iterator[FakeStorage]:
    fake = FakeStorage()
    yield fake
    fake.server.shutdown()


def test_audio_kept_in_supabase_storage_goes_with_its_owner_and_its_conversation(
    database_url: str, peer: Peer, storage: FakeStorage, tmp_path: Path
) -> None:
    """With Supabase Storage, through real voice turns: erasing Alice removes every object
    under her id and none of Bob's; a dry run counts the audio a pass would delete, and the
    pass deletes it with Bob's closed conversation; an erasure that cannot reach the store is a
    503 and a repeat finishes it."""
    llm = FakeOpenAI(peer)
    settings = make_settings(
        database_url,
        api_keys=["svc"],
        openai_base_url=llm.url,
        openai_api_key="sk-test",
        llm_backoff_seconds=0,
        supabase_url=storage.url,
        supabase_service_role_key=SERVICE_KEY,
        audio_dir=tmp_path,
        run_pruner=False,
    )
    as_alice = {"X-API-Key": "svc", "X-User-Id": ALICE}
    as_bob = {"X-API-Key": "svc", "X-User-Id": BOB}

    def objects(owner: str) -> set[str]:
        return {name for name in storage.objects if name.startswith(f"audio/{owner}/")}

    def voice(client: TestClient, headers: dict[str, str]) -> None:
        llm.transcripts.append("what can you do")
        llm.say(None)
        turn = client.post(
            "/intent-parser",
            data={"session_id": "kiosk", "reply_audio": "true"},
            files={"audio_file": ("question.wav", wav_bytes(), "audio/wav")},
            headers=headers,
        )
        assert turn.status_code == 200, turn.text

    with TestClient(create_app(settings)) as client:
        voice(client, as_alice)
        voice(client, as_bob)
        assert len(objects(ALICE)) == 2 and len(objects(BOB)) == 2  # note and spoken reply
        bobs = objects(BOB)
        erased = client.delete("/me/data", headers=as_alice)
        assert erased.status_code == 200, erased.text
        assert erased.json()["deleted"]["audio_files"] == 2
        assert objects(ALICE) == set() and objects(BOB) == bobs

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "update sessions set status = 'closed', closed_at = now() - interval '91 days'"
                " where owner_id = %s",
                (BOB,),
            )
        dry = prune(settings, datetime.now(UTC), dry_run=True)
        assert dry.rows["audio_files"] == 2 and objects(BOB) == bobs
        report = prune(settings, datetime.now(UTC))
        assert report.rows["sessions"] == 1 and report.rows["audio_files"] == 2
        assert objects(BOB) == set()

        voice(client, as_bob)
        storage.fail = True
        refused = client.delete("/me/data", headers=as_bob)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        storage.fail = False
        again = client.delete("/me/data", headers=as_bob)
        assert again.status_code == 200 and again.json()["deleted"]["audio_files"] == 2
        assert objects(BOB) == set()
