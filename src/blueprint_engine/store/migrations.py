"""Apply ``supabase/migrations/*.sql`` in order, recording them the way the Supabase CLI does.

The bookkeeping table is ``supabase_migrations.schema_migrations (version, statements, name)``,
so ``supabase db push`` and ``wf migrate`` agree about what is applied. Each file runs in its own
transaction under an advisory lock, so concurrent migrators do not race.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources.abc import Traversable

import psycopg
from psycopg import conninfo, sql

from blueprint_engine import resources

_LOCK_KEY = 0x5F1A_0001


@dataclass(frozen=True)
class Migration:
    """One migration file: ``<version>_<name>.sql`` (a file of the package or of a directory)."""

    version: str
    name: str
    path: Traversable


def discover(directory: Traversable | None = None) -> list[Migration]:
    """List the migration files of ``directory`` (default: the package's) sorted by version.

    Raises:
        ValueError: a file name does not start with a numeric version and ``_``.
    """
    found = []
    where = resources.migrations() if directory is None else directory
    entries = [entry for entry in where.iterdir() if entry.name.endswith(".sql")]
    for path in sorted(entries, key=lambda entry: entry.name):
        version, sep, name = path.name.removesuffix(".sql").partition("_")
        if not sep or not version.isdigit():
            raise ValueError(f"{path.name}: migration names look like 20261122030000_init.sql")
        found.append(Migration(version, name, path))
    return found


def ensure_database(database_url: str) -> bool:
    """Create the database named in ``database_url`` if it does not exist.

    Returns:
        True when it was created.

    Raises:
        psycopg.OperationalError: the server is unreachable.
    """
    params = conninfo.conninfo_to_dict(database_url)
    dbname = str(params.get("dbname") or "postgres")
    admin = conninfo.make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        return True


def migrate(database_url: str, directory: Traversable | None = None) -> list[str]:
    """Apply pending migrations (of ``directory``, default: the package's).

    Returns:
        The file names applied by this call (empty when up to date).

    Raises:
        psycopg.Error: a migration failed; its transaction is rolled back.
    """
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("create schema if not exists supabase_migrations")
            conn.execute(
                "create table if not exists supabase_migrations.schema_migrations "
                "(version text primary key, statements text[], name text)"
            )
            rows = conn.execute("select version from supabase_migrations.schema_migrations")
            done = {row[0] for row in rows.fetchall()}
            for migration in discover(directory):
                if migration.version in done:
                    continue
                text = migration.path.read_text(encoding="utf-8")
                with conn.transaction():
                    conn.execute(text.encode())
                    conn.execute(
                        "insert into supabase_migrations.schema_migrations"
                        " (version, statements, name)"
                        " values (%s, %s, %s)",
                        (migration.version, [text], migration.name),
                    )
                applied_now.append(migration.path.name)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
