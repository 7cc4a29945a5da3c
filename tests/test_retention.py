"""Retention: runs of every status age past their policy and are pruned or kept as specified,
overrides per user and per workflow apply, a run in flight is untouched and completes, several
pruners share the work without blocking each other or the runner, and ``--dry-run`` counts
exactly what a pass then deletes.

The database's ``now()`` cannot be moved, so the pruner takes its clock as a parameter: each
test makes rows through the API (the real runner runs them) and prunes "as of" days later.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.services import retention_service
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import open_pool
from tests.conftest import ALICE, BOB, make_settings
from tests.support import JWT_SECRET, Peer, as_user, execute, wait_for_run
from tests.test_cli import wf

DAY = timedelta(days=1)


def transform(name: str = "note", fields: Any = None) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "note",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": fields if fields is not None else {"n": 1}},
            },
        ],
        "edges": [{"source": "start", "target": "note"}],
    }


def delayed(duration: str) -> dict[str, Any]:
    return {
        "name": f"wait {duration}",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "pause", "type": "delay", "duration": duration},
        ],
        "edges": [{"source": "start", "target": "pause"}],
    }


def slow_call(url: str) -> dict[str, Any]:
    return {
        "name": "slow",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "first",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": {"a": 1}},
            },
            {
                "id": "call",
                "type": "action",
                "service": "http",
                "task": "request",
                "params": {"url": url},
            },
            {
                "id": "after",
                "type": "action",
                "service": "transform",
                "task": "build",
                "params": {"fields": {"b": "{{ steps.call.output.body.slow }}"}},
            },
        ],
        "edges": [
            {"source": "start", "target": "first"},
            {"source": "first", "target": "call"},
            {"source": "call", "target": "after"},
        ],
    }


def prune(settings: Settings, now: datetime, **options: Any) -> retention_service.PruneReport:
    """One pruning pass as of ``now``, with its own pool (as another process would)."""

    async def go() -> retention_service.PruneReport:
        pool = await open_pool(settings.database_url, min_size=1, max_size=2)
        try:
            return await retention_service.prune(pool, settings, now=now, **options)
        finally:
            await pool.close()

    return asyncio.run(go())


def exists(database_url: str, table: str, ident: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"select count(*) from {table} where id = %s", (ident,)).fetchone()
    return bool(row and row[0])


def children(database_url: str, run_id: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(
                f"select count(*) from {table} where run_id = %s", (run_id,)
            ).fetchone()[0]  # type: ignore[index]
            for table in ("workflow_logs", "step_checkpoints", "step_attempts", "run_waits")
        }


@pytest.fixture
def app(database_url: str) -> Iterator[TestClient]:
    """The API with its runner; its own pruner off (the tests prune with their own clock)."""
    settings = make_settings(database_url, run_pruner=False)
    with TestClient(create_app(settings)) as client:
        yield client


def test_each_status_is_pruned_or_kept_as_its_policy_says(
    app: TestClient, settings: Settings, peer: Peer
) -> None:
    """Defaults: succeeded runs 30 days, failed and cancelled 90, unfinished never. A run in
    flight while the pass runs is untouched and completes with every log row."""
    succeeded = execute(app, transform())
    failed = execute(app, transform("broken", {"x": "{{ trigger_data.missing }}"}))
    cancelled = execute(app, delayed("1h"))
    waiting = execute(app, delayed("300d"))
    assert wait_for_run(app, succeeded)["status"] == "succeeded"
    assert wait_for_run(app, failed)["status"] == "failed"
    wait_for_run(app, cancelled, {"waiting"})
    assert app.post(f"/runs/{cancelled}/cancel").status_code == 200
    wait_for_run(app, waiting, {"waiting"})
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        # a queued run no runner here takes (Inngest's), as old as the others
        [(workflow_id,)] = conn.execute(
            "select workflow_id from workflow_runs where id = %s", (succeeded,)
        ).fetchall()
        [(queued,)] = conn.execute(
            "insert into workflow_runs (owner_id, workflow_id, version, engine)"
            " values (%s, %s, 1, 'inngest') returning id",
            (LOCAL_USER_ID, workflow_id),
        ).fetchall()
    assert children(settings.database_url, succeeded)["workflow_logs"] > 0

    release = threading.Event()
    peer.handlers["/slow"] = lambda body: (release.wait(30), (200, {"slow": True}))[1]
    in_flight = execute(app, slow_call(f"{peer.url}/slow"))
    deadline = datetime.now(UTC) + timedelta(seconds=15)
    while peer.hits["/slow"] == 0:
        assert datetime.now(UTC) < deadline, "the slow step never started"
    now = datetime.now(UTC)

    after_31 = prune(settings, now + 31 * DAY)
    assert after_31.complete and after_31.rows["workflow_runs"] == 1
    assert not exists(settings.database_url, "workflow_runs", succeeded)
    assert children(settings.database_url, succeeded) == {
        "workflow_logs": 0,
        "step_checkpoints": 0,
        "step_attempts": 0,
        "run_waits": 0,
    }
    assert app.get(f"/runs/{succeeded}").status_code == 404
    for kept in (failed, cancelled, waiting, in_flight, str(queued)):
        assert exists(settings.database_url, "workflow_runs", kept), kept

    after_91 = prune(settings, now + 91 * DAY)
    assert after_91.rows["workflow_runs"] == 2
    for gone in (failed, cancelled):
        assert app.get(f"/runs/{gone}").status_code == 404
        assert sum(children(settings.database_url, gone).values()) == 0
    # however old, an unfinished run stays, with its wait and its versions
    far = prune(settings, now + 10_000 * DAY)
    assert far.rows["workflow_runs"] == 0
    assert app.get(f"/runs/{waiting}").json()["status"] == "waiting"
    assert children(settings.database_url, waiting)["run_waits"] == 1
    assert exists(settings.database_url, "workflow_runs", str(queued))

    release.set()
    done = wait_for_run(app, in_flight)
    assert done["status"] == "succeeded", done
    assert [n["status"] for n in done["nodes"]] == ["succeeded"] * 4
    assert done["nodes"][-1]["output"] == {"b": True}


def test_overrides_per_user_and_per_workflow(accounts: TestClient, settings: Settings) -> None:
    """Alice keeps succeeded runs 5 days, and one workflow's for 200; Bob keeps the
    deployment's 30."""
    alice, bob = as_user(ALICE), as_user(BOB)

    def saved(headers: dict[str, str], name: str) -> str:
        made = accounts.post("/workflows", json={"blueprint": transform(name)}, headers=headers)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    def ran(headers: dict[str, str], workflow_id: str) -> str:
        started = accounts.post(
            "/workflow/execute", json={"workflow_id": workflow_id}, headers=headers
        )
        run_id = str(started.json()["run_id"])
        assert wait_for_run(accounts, run_id, headers=headers)["status"] == "succeeded"
        return run_id

    plain, kept_long = saved(alice, "plain"), saved(alice, "payments")
    plain_run, long_run = ran(alice, plain), ran(alice, kept_long)
    bob_run = ran(bob, saved(bob, "bob's"))

    put = accounts.put("/me/retention", json={"succeeded_runs_days": 5}, headers=alice)
    assert put.status_code == 200, put.text
    assert put.json()["effective"] == {
        "succeeded_runs_days": 5,
        "failed_runs_days": 90,
        "conversations_days": 90,
    }
    assert put.json()["override"]["failed_runs_days"] is None
    wf_put = accounts.put(
        f"/workflows/{kept_long}/retention", json={"succeeded_runs_days": 200}, headers=alice
    )
    assert wf_put.status_code == 200, wf_put.text
    assert wf_put.json()["effective"] == {"succeeded_runs_days": 200, "failed_runs_days": 90}
    assert wf_put.json()["owner"] == {"succeeded_runs_days": 5, "failed_runs_days": 90}
    got = accounts.get(f"/workflows/{kept_long}/retention", headers=alice).json()
    assert got == wf_put.json()

    now = datetime.now(UTC)
    prune(settings, now + 6 * DAY)
    assert accounts.get(f"/runs/{plain_run}", headers=alice).status_code == 404
    assert accounts.get(f"/runs/{long_run}", headers=alice).status_code == 200
    assert accounts.get(f"/runs/{bob_run}", headers=bob).status_code == 200
    prune(settings, now + 31 * DAY)
    assert accounts.get(f"/runs/{bob_run}", headers=bob).status_code == 404
    assert accounts.get(f"/runs/{long_run}", headers=alice).status_code == 200
    prune(settings, now + 201 * DAY)
    assert accounts.get(f"/runs/{long_run}", headers=alice).status_code == 404
    # the saved workflows themselves stay: only run history goes
    assert accounts.get(f"/workflows/{kept_long}", headers=alice).status_code == 200

    # clearing the override returns to the deployment's policy
    cleared = accounts.put("/me/retention", json={}, headers=alice).json()
    assert cleared["override"] == {
        "succeeded_runs_days": None,
        "failed_runs_days": None,
        "conversations_days": None,
    }
    assert cleared["effective"]["succeeded_runs_days"] == 30


def test_bad_policies_are_refused_with_the_field(accounts: TestClient) -> None:
    alice = as_user(ALICE)
    wf_id = accounts.post("/workflows", json={"blueprint": transform()}, headers=alice).json()["id"]
    cases = [
        ("/me/retention", {"succeeded_runs_days": 0}, ["body", "succeeded_runs_days"]),
        ("/me/retention", {"failed_runs_days": "soon"}, ["body", "failed_runs_days"]),
        ("/me/retention", {"conversations_days": 5000}, ["body", "conversations_days"]),
        ("/me/retention", {"succeeded_run_days": 3}, ["body", "succeeded_run_days"]),
        (
            f"/workflows/{wf_id}/retention",
            {"conversations_days": 3},
            ["body", "conversations_days"],
        ),
        (f"/workflows/{wf_id}/retention", {"failed_runs_days": -1}, ["body", "failed_runs_days"]),
    ]
    for url, body, loc in cases:
        refused = accounts.put(url, json=body, headers=alice)
        assert refused.status_code == 422, (url, body, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "validation_error" and error["message"]
        assert error["details"][0]["loc"] == loc, (body, error)
    assert accounts.get("/me/retention", headers=alice).json()["override"] == {
        "succeeded_runs_days": None,
        "failed_runs_days": None,
        "conversations_days": None,
    }
    key = accounts.post("/me/api-keys", json={"name": "script"}, headers=alice).json()["key"]
    for url in ("/me/retention", f"/workflows/{wf_id}/retention"):
        forbidden = accounts.put(url, json={"succeeded_runs_days": 1}, headers={"X-API-Key": key})
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert accounts.get("/me/retention", headers={"X-API-Key": key}).status_code == 200


def _session(conn: psycopg.Connection[Any], owner: str, closed_days_ago: float | None) -> str:
    status = "open" if closed_days_ago is None else "closed"
    [(session_id,)] = conn.execute(
        "insert into sessions (owner_id, channel, user_ref, status, closed_at)"
        " values (%s, 'whatsapp', %s, %s, now() - make_interval(days => %s)) returning id",
        (owner, f"whatsapp:{uuid.uuid4()}", status, closed_days_ago or 0),
    ).fetchall()
    for text in ("refund pay_123", "Which amount?"):
        conn.execute(
            "insert into session_messages (owner_id, session_id, direction, text)"
            " values (%s, %s, 'in', %s)",
            (owner, session_id, text),
        )
    return str(session_id)


def test_conversations_go_after_they_closed(accounts: TestClient, settings: Settings) -> None:
    """Closed conversations are kept 90 days (Alice: 10) after closing; open ones always."""
    assert (
        accounts.put(
            "/me/retention", json={"conversations_days": 10}, headers=as_user(ALICE)
        ).status_code
        == 200
    )
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("insert into users (id) values (%s) on conflict do nothing", (BOB,))
        alice_old = _session(conn, ALICE, 11)
        alice_recent = _session(conn, ALICE, 9)
        bob_old = _session(conn, BOB, 89)
        bob_older = _session(conn, BOB, 91)
        open_one = _session(conn, BOB, None)
    report = prune(settings, datetime.now(UTC))
    assert report.rows["sessions"] == 2 and report.rows["session_messages"] == 4
    for gone in (alice_old, bob_older):
        assert not exists(settings.database_url, "sessions", gone)
    for kept in (alice_recent, bob_old, open_one):
        assert exists(settings.database_url, "sessions", kept)
    with psycopg.connect(settings.database_url) as conn:
        [(orphans,)] = conn.execute(
            "select count(*) from session_messages m"
            " where not exists (select 1 from sessions s where s.id = m.session_id)"
        ).fetchall()
    assert orphans == 0


def test_workflows_nobody_needs_go_with_their_last_run(app: TestClient, settings: Settings) -> None:
    """A stored copy of an unsaved blueprint and an archived workflow go (with their
    versions) once their runs did; a saved, an active, or a still-referenced one stays."""
    adhoc_run = execute(app, transform("one-off"))
    saved = app.post("/workflows", json={"blueprint": transform("saved")}).json()["id"]
    assert (
        app.put(f"/workflows/{saved}", json={"blueprint": transform("saved v2")}).status_code == 200
    )
    saved_run = app.post("/workflow/execute", json={"workflow_id": saved, "version": 1}).json()
    archived = app.post("/workflows", json={"blueprint": transform("old")}).json()["id"]
    archived_run = app.post("/workflow/execute", json={"workflow_id": archived}).json()["run_id"]
    active = app.post("/workflows", json={"blueprint": transform("live")}).json()["id"]
    assert app.post(f"/workflows/{active}/activate").status_code == 200
    waiting_run = execute(app, delayed("300d"))
    for run_id in (adhoc_run, saved_run["run_id"], archived_run):
        wait_for_run(app, run_id)
    wait_for_run(app, waiting_run, {"waiting"})
    assert app.delete(f"/workflows/{archived}").status_code == 204
    adhoc = app.get(f"/runs/{adhoc_run}").json()["workflow_id"]
    parked = app.get(f"/runs/{waiting_run}").json()["workflow_id"]

    dry = prune(settings, datetime.now(UTC) + 31 * DAY, dry_run=True)
    report = prune(settings, datetime.now(UTC) + 31 * DAY)
    assert report.rows == dry.rows, "a dry run counts what the pass then deletes"
    assert report.rows["workflows"] == 2 and report.rows["workflow_versions"] == 2
    for gone in (adhoc, archived):
        assert not exists(settings.database_url, "workflows", gone)
    for kept in (saved, active, parked):
        assert exists(settings.database_url, "workflows", kept)
    versions = app.get(f"/workflows/{saved}").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]


def _old_runs(database_url: str, count: int, days: int = 400) -> str:
    """``count`` succeeded runs of one workflow, finished ``days`` ago, with two log rows and
    a checkpoint each (written as the runner writes them)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        [(workflow_id,)] = conn.execute(
            "insert into workflows (owner_id, name) values (%s, 'bulk') returning id",
            (LOCAL_USER_ID,),
        ).fetchall()
        conn.execute(
            "insert into workflow_versions (workflow_id, owner_id, version, blueprint,"
            " trigger_kind) values (%s, %s, 1, '{}', 'manual')",
            (workflow_id, LOCAL_USER_ID),
        )
        conn.execute(
            "with runs as (insert into workflow_runs (owner_id, workflow_id, version, status,"
            " created_at, finished_at) select %(owner)s, %(wf)s, 1, 'succeeded',"
            " now() - make_interval(days => %(days)s), now() - make_interval(days => %(days)s)"
            " from generate_series(1, %(n)s) returning id),"
            " logs as (insert into workflow_logs (run_id, owner_id, node_id, step_id, status)"
            " select id, %(owner)s, s, s, 'succeeded' from runs, unnest(array['a', 'b']) s)"
            " insert into step_checkpoints (run_id, step_id, node_id, status)"
            " select id, 'a', 'a', 'succeeded' from runs",
            {"owner": LOCAL_USER_ID, "wf": workflow_id, "days": days, "n": count},
        )
    return str(workflow_id)


def _count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        return int(conn.execute(f"select count(*) from {table}").fetchone()[0])  # type: ignore[index]


def test_pruners_in_several_processes_share_the_work(settings: Settings) -> None:
    """Three passes at once (as three processes would run them), small batches: every old
    run is deleted exactly once, no pass fails or waits for another."""
    _old_runs(settings.database_url, 600)

    async def together() -> list[retention_service.PruneReport]:
        pools = [await open_pool(settings.database_url, min_size=1, max_size=2) for _ in range(3)]
        try:
            return await asyncio.gather(
                *(retention_service.prune(p, settings, batch_size=40) for p in pools)
            )
        finally:
            for p in pools:
                await p.close()

    reports = asyncio.run(together())
    assert all(r.complete and r.given_up == 0 for r in reports)
    assert sum(r.rows["workflow_runs"] for r in reports) == 600
    assert sum(r.rows["workflow_logs"] for r in reports) == 1200
    assert _count(settings.database_url, "workflow_runs") == 0
    assert _count(settings.database_url, "workflow_logs") == 0


def test_a_locked_run_is_skipped_not_waited_for(settings: Settings) -> None:
    """A run someone holds (a retry being requested, another pruner) is passed over at once
    and pruned by the next pass."""
    _old_runs(settings.database_url, 5)
    with psycopg.connect(settings.database_url) as holder:
        [(held,)] = holder.execute(
            "select id from workflow_runs order by id limit 1 for update"
        ).fetchall()
        started = datetime.now(UTC)
        report = prune(settings, datetime.now(UTC))
        assert datetime.now(UTC) - started < timedelta(seconds=5)
        assert report.rows["workflow_runs"] == 4
        holder.rollback()
    assert exists(settings.database_url, "workflow_runs", str(held))
    assert prune(settings, datetime.now(UTC)).rows["workflow_runs"] == 1


def test_a_pass_stops_at_its_time_limit_and_the_next_goes_on(settings: Settings) -> None:
    _old_runs(settings.database_url, 50)
    stopped = prune(settings, datetime.now(UTC), batch_size=10, time_limit=0)
    assert not stopped.complete and stopped.total == 0
    assert prune(settings, datetime.now(UTC), batch_size=10).rows["workflow_runs"] == 50


def test_events_and_deliveries_go_with_the_longer_run_policy(
    app: TestClient, settings: Settings
) -> None:
    posted = app.post("/events", json={"name": "order/placed", "data": {"order": 1}})
    assert posted.status_code == 202, posted.text
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        [(event_id,)] = conn.execute("select id from events").fetchall()
        conn.execute(
            "insert into webhook_deliveries (provider, delivery_id, event_id, event_name,"
            " owner_id) values ('razorpay', 'evt_1', %s, 'order/placed', %s)",
            (event_id, LOCAL_USER_ID),
        )
    now = datetime.now(UTC)
    assert prune(settings, now + 31 * DAY).rows["events"] == 0
    report = prune(settings, now + 91 * DAY)
    assert report.rows["events"] == 1 and report.rows["webhook_deliveries"] == 1


def test_pruned_rows_are_counted_in_metrics(app: TestClient, settings: Settings) -> None:
    def pruned_runs() -> float:
        for line in app.get("/metrics").text.splitlines():
            if line.startswith('blueprint_pruned_rows_total{table="workflow_runs"}'):
                return float(line.split()[-1])
        return 0.0

    _old_runs(settings.database_url, 7)
    before = pruned_runs()
    # the API process's own pruner, with the clock it would use
    report = asyncio.run(_prune_in(app))
    assert report.rows["workflow_runs"] == 7
    assert pruned_runs() - before == 7
    text = app.get("/metrics").text
    assert "blueprint_prune_batch_duration_seconds_bucket" in text
    assert 'blueprint_prune_passes_total{outcome="complete"}' in text


async def _prune_in(client: TestClient) -> retention_service.PruneReport:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    pool = await open_pool(settings.database_url, min_size=1, max_size=2)
    try:
        return await retention_service.prune(pool, settings)
    finally:
        await pool.close()


def test_wf_prune_dry_run_then_prune(settings: Settings) -> None:
    """``wf prune --dry-run`` prints what would go and changes nothing; ``wf prune`` deletes
    it; ``--as-of`` moves the clock."""
    _old_runs(settings.database_url, 12, days=20)
    today = wf(settings, "prune", "--dry-run")
    assert today.returncode == 0, today.stderr
    assert "would be deleted (dry run)" in today.stdout
    assert _row(today.stdout, "workflow_runs") == 0
    as_of = (datetime.now(UTC) + 15 * DAY).date().isoformat()
    dry = wf(settings, "prune", "--dry-run", "--as-of", as_of)
    assert dry.returncode == 0, dry.stderr
    assert _row(dry.stdout, "workflow_runs") == 12 and _row(dry.stdout, "workflow_logs") == 24
    assert _count(settings.database_url, "workflow_runs") == 12
    done = wf(settings, "prune", "--as-of", as_of, "--batch-size", "5")
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout and _row(done.stdout, "step_checkpoints") == 12
    assert _count(settings.database_url, "workflow_runs") == 0
    bad = wf(settings, "prune", "--as-of", "next week")
    assert bad.returncode == 2 and "as-of" in bad.stderr


def _row(output: str, table: str) -> int:
    for line in output.splitlines():
        cells = [c.strip() for c in line.replace("│", "|").replace("┃", "|").split("|")]
        cells = [c for c in cells if c]
        if len(cells) == 2 and cells[0] == table:
            return int(cells[1])
    raise AssertionError(f"no row for {table} in:\n{output}")


def test_policy_survives_in_the_export(accounts: TestClient) -> None:
    """The export carries the retention overrides (a sanity check of the shape)."""
    alice = as_user(ALICE)
    accounts.put("/me/retention", json={"failed_runs_days": 120}, headers=alice)
    exported = json.loads(accounts.get("/me/export", headers=alice).content)
    assert exported["retention"]["failed_runs_days"] == 120
    assert JWT_SECRET not in json.dumps(exported)


def test_a_pruned_conversation_takes_its_kept_audio(settings: Settings, tmp_path: Path) -> None:
    """Voice notes kept for a conversation's messages go with it (after the batch commits);
    a kept conversation's stay."""
    local = settings.model_copy(update={"audio_dir": tmp_path})
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("insert into users (id) values (%s) on conflict do nothing", (ALICE,))
        for days, name in ((100, "old"), (5, "recent")):
            session_id = _session(conn, ALICE, days)
            key = f"{ALICE}/{name}.ogg"
            (tmp_path / ALICE).mkdir(exist_ok=True)
            (tmp_path / key).write_bytes(b"OggS voice")
            conn.execute(
                "update session_messages set media = jsonb_build_object('audio',"
                " jsonb_build_object('store', 'local', 'key', %s::text)) where session_id = %s",
                (key, session_id),
            )
    report = prune(local, datetime.now(UTC))
    assert report.rows["sessions"] == 1 and report.rows["audio_files"] == 1
    assert not (tmp_path / ALICE / "old.ogg").exists()
    assert (tmp_path / ALICE / "recent.ogg").is_file()
