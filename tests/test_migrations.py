"""Migrations apply on plain PostgreSQL (the suite's own database) and on a Supabase-like one,
where the guarded statements run: Realtime publication and row-level security.

The Supabase-like database has what a Supabase project gives every table in ``public``: the
roles ``anon``, ``authenticated`` and ``service_role`` (BYPASSRLS) with every privilege, and an
``auth.uid()`` that reads the ``sub`` of the JWT claims PostgREST and Realtime set for a request.
A dashboard's reads are replayed the way PostgREST runs them: in a transaction, ``set local
role``, the claims in ``request.jwt.claims``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from blueprint_engine.store import migrations
from tests.conftest import ALICE, BOB

#: What a dashboard reads straight from Supabase (PostgREST, Realtime): each user their own rows.
DASHBOARD = (
    "workflows",
    "workflow_versions",
    "workflow_runs",
    "workflow_logs",
    "sessions",
    "session_messages",
)
#: A user reads their own profile row. Every other table, whatever a later migration adds (the
#: tests list tables from the catalog), is the engine's: closed to ``anon`` and ``authenticated``.
PROFILE = "users"
BOOKKEEPING = "supabase_migrations.schema_migrations"

#: Supabase's roles are cluster-wide: created once if missing, never dropped.
ROLES = {
    "anon": "nologin noinherit",
    "authenticated": "nologin noinherit",
    "service_role": "nologin noinherit bypassrls",
}

#: The claims' ``sub``, as Supabase's (which tries the older ``request.jwt.claim.sub`` first).
AUTH_UID = """
create function auth.uid() returns uuid language sql stable as $$
    select (nullif(current_setting('request.jwt.claims', true), '')::json ->> 'sub')::uuid
$$
"""


@dataclass(frozen=True)
class SupabaseLike:
    url: str
    applied: list[str]


def _ensure_roles(conn: psycopg.Connection[Any]) -> None:
    for role, options in ROLES.items():
        conn.execute(
            sql.SQL(
                "do $$ begin"
                " if not exists (select from pg_roles where rolname = {name}) then"
                " create role {role} " + options + "; end if;"
                # another test session may create it between the check and the create
                " exception when duplicate_object or unique_violation then null; end $$"
            ).format(name=sql.Literal(role), role=sql.Identifier(role))
        )


def _provision(conn: psycopg.Connection[Any]) -> None:
    """What a new Supabase project has before the first migration."""
    conn.execute("create schema auth")
    conn.execute(AUTH_UID)
    roles = sql.SQL(", ").join(sql.Identifier(role) for role in ROLES)
    conn.execute(sql.SQL("grant usage on schema auth, public to {}").format(roles))
    for objects in ("tables", "sequences", "functions"):
        conn.execute(
            sql.SQL("alter default privileges in schema public grant all on {} to {}").format(
                sql.SQL(objects), roles
            )
        )
    conn.execute("create publication supabase_realtime")


def _seed(conn: psycopg.Connection[Any], owner: str) -> None:
    """One row of every table for ``owner``, written as the backend writes them."""

    def write(statement: str, *params: Any) -> None:
        conn.execute(statement, params)

    def new_id(statement: str, *params: Any) -> Any:
        row = conn.execute(statement + " returning id", params).fetchone()
        assert row is not None
        return row[0]

    write("insert into users (id, display_name) values (%s, 'someone')", owner)
    write(
        "insert into api_keys (user_id, name, prefix, key_sha256)"
        " values (%s, 'laptop', 'bpk_', md5(%s))",
        owner,
        owner,
    )
    workflow = new_id("insert into workflows (owner_id, name) values (%s, 'w')", owner)
    write(
        "insert into workflow_versions (workflow_id, version, blueprint, trigger_kind, owner_id)"
        " values (%s, 1, '{}', 'manual', %s)",
        workflow,
        owner,
    )
    write(
        "insert into workflow_schedules (workflow_id, version, cron, next_fire_at, owner_id)"
        " values (%s, 1, '* * * * *', now(), %s)",
        workflow,
        owner,
    )
    run = new_id(
        "insert into workflow_runs (workflow_id, version, owner_id) values (%s, 1, %s)",
        workflow,
        owner,
    )
    write(
        "insert into step_checkpoints (run_id, step_id, node_id, status)"
        " values (%s, 'a', 'a', 'succeeded')",
        run,
    )
    write("insert into step_attempts (run_id, step_id, started) values (%s, 'a', 1)", run)
    write(
        "insert into run_waits (run_id, step_id, node_id, kind, wake_at, owner_id)"
        " values (%s, 'b', 'b', 'sleep', now(), %s)",
        run,
        owner,
    )
    write(
        "insert into workflow_logs (run_id, node_id, step_id, status, owner_id)"
        " values (%s, 'a', 'a', 'succeeded', %s)",
        run,
        owner,
    )
    event = new_id("insert into events (name, owner_id) values ('order.paid', %s)", owner)
    write(
        "insert into webhook_deliveries (provider, delivery_id, event_id, event_name, owner_id)"
        " values ('razorpay', %s, %s, 'order.paid', %s)",
        f"evt_{owner}",
        event,
        owner,
    )
    session = new_id(
        "insert into sessions (channel, user_ref, owner_id)"
        " values ('whatsapp', '+919800000001', %s)",
        owner,
    )
    write(
        "insert into session_messages (session_id, direction, text, owner_id)"
        " values (%s, 'in', 'refund pay_123', %s)",
        session,
        owner,
    )


@pytest.fixture(scope="module")
def supabase(database_url: str) -> Iterator[SupabaseLike]:
    """A migrated Supabase-like database with one row of every table for ALICE and for BOB."""
    name = str(conninfo.conninfo_to_dict(database_url)["dbname"]) + "_supabase"
    admin = conninfo.make_conninfo(database_url, dbname="postgres")
    url = conninfo.make_conninfo(database_url, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        _ensure_roles(conn)
    with psycopg.connect(url, autocommit=True) as conn:
        _provision(conn)
    applied = migrations.migrate(url)
    with psycopg.connect(url) as conn:
        _seed(conn, ALICE)
        _seed(conn, BOB)
    yield SupabaseLike(url, applied)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


@contextmanager
def acting_as(url: str, role: str, user: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    """A connection inside one transaction (rolled back) as PostgREST runs a request: ``role``
    with the JWT claims of ``user`` (none for ``anon``)."""
    claims: dict[str, str] = {"role": role} | ({"sub": user} if user else {})
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield conn


def _tables(url: str) -> dict[str, bool]:
    """Every table of the schema, from the catalog: name -> row-level security enabled."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select relname, relrowsecurity from pg_class"
            " where relnamespace = 'public'::regnamespace and relkind in ('r', 'p')"
        )
        return dict(rows.fetchall())


def _denied(conn: psycopg.Connection[Any], statement: str | sql.Composable) -> bool:
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def _readable(conn: psycopg.Connection[Any], tables: Iterable[str]) -> list[str]:
    select = sql.SQL("select * from {}")
    return [t for t in tables if not _denied(conn, select.format(sql.Identifier(t)))]


def test_supabase_only_statements_run_on_supabase(supabase: SupabaseLike) -> None:
    assert supabase.applied == [m.path.name for m in migrations.discover()]
    with psycopg.connect(supabase.url) as conn:
        recorded = [
            r[0]
            for r in conn.execute(
                "select name from supabase_migrations.schema_migrations order by version"
            )
        ]
    assert recorded == [m.name for m in migrations.discover()]


def test_every_table_has_row_level_security(supabase: SupabaseLike) -> None:
    tables = _tables(supabase.url)
    assert {*DASHBOARD, PROFILE, "step_checkpoints", "api_keys"} <= tables.keys()
    assert [table for table, secured in tables.items() if not secured] == []


@pytest.mark.parametrize("user", [ALICE, BOB])
def test_a_user_reads_only_their_own_rows(supabase: SupabaseLike, user: str) -> None:
    """Alice's token (PostgREST, Realtime) reads Alice's rows, never Bob's or the local user's."""
    with acting_as(supabase.url, "authenticated", user) as conn:
        for table in DASHBOARD:
            owners = conn.execute(
                sql.SQL("select owner_id::text from {}").format(sql.Identifier(table))
            )
            assert [r[0] for r in owners] == [user], table
        profiles = conn.execute("select id::text from users").fetchall()
        assert profiles == [(user,)]


def test_internal_tables_are_closed_to_signed_in_users(supabase: SupabaseLike) -> None:
    internal = _tables(supabase.url).keys() - {*DASHBOARD, PROFILE}
    with acting_as(supabase.url, "authenticated", ALICE) as conn:
        assert _readable(conn, internal) == []
        assert _denied(conn, f"select * from {BOOKKEEPING}")


def test_the_anon_key_reads_nothing(supabase: SupabaseLike) -> None:
    with acting_as(supabase.url, "anon") as conn:
        assert _readable(conn, _tables(supabase.url)) == []
        assert _denied(conn, f"select * from {BOOKKEEPING}")


@pytest.mark.parametrize(
    "statement",
    [
        "insert into sessions (channel, user_ref, owner_id)"
        f" values ('whatsapp', '+10000000000', '{ALICE}')",
        f"insert into workflows (owner_id, name) values ('{ALICE}', 'mine')",
        "update workflow_runs set status = 'succeeded'",
        "delete from session_messages",
        "truncate workflow_logs",  # TRUNCATE is not subject to row-level security
        "update users set phone = '+10000000000'",
        "select nextval(pg_get_serial_sequence('workflow_logs', 'id'))",
    ],
)
def test_signed_in_users_cannot_write(supabase: SupabaseLike, statement: str) -> None:
    """The API is the only write path: it validates, fences and records every change."""
    with acting_as(supabase.url, "authenticated", ALICE) as conn:
        assert _denied(conn, statement)


def test_the_backend_role_sees_every_users_rows(supabase: SupabaseLike) -> None:
    """``service_role`` (BYPASSRLS) reads everything, as the tables' owner does (the rest of the
    suite runs as the owner)."""
    with acting_as(supabase.url, "service_role") as conn:
        for table in DASHBOARD:
            owners = conn.execute(
                sql.SQL("select distinct owner_id::text from {}").format(sql.Identifier(table))
            )
            assert {r[0] for r in owners} == {ALICE, BOB}, table


def test_realtime_publishes_only_tables_their_owner_alone_can_read(
    supabase: SupabaseLike,
) -> None:
    """Realtime sends a change to a subscriber only if its RLS policies let them select the row:
    every published table is a dashboard table under RLS (owner-only, as proven above)."""
    with psycopg.connect(supabase.url) as conn:
        published = dict(
            conn.execute(
                "select t.tablename, c.relrowsecurity"
                " from pg_publication_tables t join pg_class c"
                " on c.oid = format('%I.%I', t.schemaname, t.tablename)::regclass"
                " where t.pubname = 'supabase_realtime'"
            ).fetchall()
        )
    assert published == {"workflow_logs": True, "workflow_runs": True, "session_messages": True}
    assert set(published) <= set(DASHBOARD)


def test_plain_postgres_skips_them(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rls = conn.execute("select count(*) from pg_class where relrowsecurity")
        assert rls.fetchone() == (0,)
        versions = conn.execute("select count(*) from supabase_migrations.schema_migrations")
        assert versions.fetchone() == (len(migrations.discover()),)
