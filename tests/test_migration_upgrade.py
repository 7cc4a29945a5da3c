"""Upgrading a database that has data: accounts give everything that existed to an owner and
lose nothing (plain PostgreSQL; the Supabase variant is in test_migrations). A workflow whose
old free-form ``user_id`` was a user id (spec 004's, a Supabase user id) goes to that user with
everything it has; anything else goes to the local user, the old value kept."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from psycopg import conninfo, sql

from blueprint_engine.store import migrations
from blueprint_engine.store.accounts import LOCAL_USER_ID

ACCOUNTS = "20261122090000"


@pytest.fixture
def before_accounts(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database migrated up to (not including) the accounts migration."""
    name = str(conninfo.conninfo_to_dict(database_url)["dbname"]) + "_upgrade"
    admin = conninfo.make_conninfo(database_url, dbname="postgres")
    url = conninfo.make_conninfo(database_url, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    older = tmp_path / "older"
    older.mkdir()
    for migration in migrations.discover():
        if migration.version < ACCOUNTS:
            shutil.copy(migration.path, older / migration.path.name)
    migrations.migrate(url, older)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


SUPABASE_USER = "7e57ab1e-0000-4000-8000-0000000000aa"


def test_existing_rows_go_to_their_user_or_the_local_user(before_accounts: str) -> None:
    with psycopg.connect(before_accounts, autocommit=True) as conn:
        [(workflow_id,)] = conn.execute(
            "insert into workflows (name, user_id) values ('old', 'someone') returning id"
        ).fetchall()
        conn.execute(
            "insert into workflow_versions (workflow_id, version, blueprint, trigger_kind)"
            " values (%s, 1, '{}', 'manual')",
            (workflow_id,),
        )
        [(run_id,)] = conn.execute(
            "insert into workflow_runs (workflow_id, version, idempotency_key)"
            " values (%s, 1, 'key-1') returning id",
            (workflow_id,),
        ).fetchall()
        conn.execute(
            "insert into workflow_logs (run_id, node_id, step_id, status) values (%s, 'a', 'a',"
            " 'succeeded')",
            (run_id,),
        )
        [(session_id,)] = conn.execute(
            "insert into sessions (channel, user_ref) values ('voice', 'kiosk') returning id"
        ).fetchall()
        conn.execute(
            "insert into session_messages (session_id, direction, text) values (%s, 'in', 'hi')",
            (session_id,),
        )
        conn.execute("insert into events (name) values ('x')")
        [(theirs,)] = conn.execute(
            "insert into workflows (name, user_id) values ('theirs', %s) returning id",
            (SUPABASE_USER,),
        ).fetchall()
        conn.execute(
            "insert into workflow_versions (workflow_id, version, blueprint, trigger_kind)"
            " values (%s, 1, '{}', 'manual')",
            (theirs,),
        )
        [(their_run,)] = conn.execute(
            "insert into workflow_runs (workflow_id, version) values (%s, 1) returning id",
            (theirs,),
        ).fetchall()
        conn.execute(
            "insert into workflow_logs (run_id, node_id, step_id, status) values (%s, 'a', 'a',"
            " 'succeeded')",
            (their_run,),
        )

    applied = migrations.migrate(before_accounts)
    assert applied[0].startswith(ACCOUNTS), applied

    with psycopg.connect(before_accounts) as conn:
        for table in (
            "workflows",
            "workflow_versions",
            "workflow_runs",
            "workflow_logs",
            "sessions",
            "session_messages",
            "events",
        ):
            owners = conn.execute(
                sql.SQL("select distinct owner_id from {} order by 1").format(sql.Identifier(table))
            ).fetchall()
            expected = [LOCAL_USER_ID]
            if table in ("workflows", "workflow_versions", "workflow_runs", "workflow_logs"):
                expected.append(UUID(SUPABASE_USER))
            assert [o for (o,) in owners] == sorted(expected), table
        legacy = conn.execute(
            "select name, legacy_user_id, owner_id from workflows order by name"
        ).fetchall()
        assert legacy == [
            ("old", "someone", LOCAL_USER_ID),
            ("theirs", SUPABASE_USER, UUID(SUPABASE_USER)),
        ]
        assert conn.execute("select 1 from users where id = %s", (SUPABASE_USER,)).fetchone()
        [(key,)] = conn.execute(
            "select idempotency_key from workflow_runs where idempotency_key is not null"
        ).fetchall()
        assert key == "key-1"
        [(text,)] = conn.execute("select text from session_messages").fetchall()
        assert text == "hi"
