"""Migrations apply on plain PostgreSQL (the suite's own database) and on a Supabase-like one,
where the guarded statements run: Realtime publication and row-level security."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import conninfo, sql

from backend.app.store import migrations


@pytest.fixture
def supabase_like(database_url: str) -> Iterator[str]:
    name = str(conninfo.conninfo_to_dict(database_url)["dbname"]) + "_supabase"
    admin = conninfo.make_conninfo(database_url, dbname="postgres")
    url = conninfo.make_conninfo(database_url, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema auth")
        conn.execute(
            "create function auth.uid() returns uuid language sql stable as $$ select null::uuid $$"
        )
        conn.execute("create publication supabase_realtime")
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def test_supabase_only_statements_run_on_supabase(supabase_like: str) -> None:
    applied = migrations.migrate(supabase_like)
    assert applied == [m.path.name for m in migrations.discover()]
    with psycopg.connect(supabase_like) as conn:
        published = {
            r[0]
            for r in conn.execute(
                "select tablename from pg_publication_tables where pubname = 'supabase_realtime'"
            )
        }
        secured = dict(
            conn.execute(
                "select relname, relrowsecurity from pg_class"
                " where relname in ('workflows', 'workflow_runs', 'workflow_logs')"
            ).fetchall()
        )
        recorded = [
            r[0]
            for r in conn.execute(
                "select name from supabase_migrations.schema_migrations order by version"
            )
        ]
    assert published == {"workflow_logs", "workflow_runs", "session_messages"}
    assert secured == {"workflows": True, "workflow_runs": True, "workflow_logs": True}
    assert recorded == [m.name for m in migrations.discover()]


def test_plain_postgres_skips_them(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rls = conn.execute("select relrowsecurity from pg_class where relname = 'workflows'")
        assert rls.fetchone() == (False,)
        versions = conn.execute("select count(*) from supabase_migrations.schema_migrations")
        assert versions.fetchone() == (len(migrations.discover()),)
