"""One user's data as a whole: the pages an export reads, and what an erasure stops and
deletes (:mod:`blueprint_engine.services.account_data_service` puts them together)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine import metrics
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Conn
from blueprint_engine.store.retention import Counts

#: Every table that holds a user's rows, and the column naming the user; a run's checkpoints
#: and attempt counts (no owner column) are theirs through the run (:data:`RUN_OWNED`).
OWNED: tuple[tuple[str, str], ...] = (
    ("users", "id"),
    ("api_keys", "user_id"),
    ("credentials", "owner_id"),
    ("channel_links", "owner_id"),
    ("channel_link_codes", "owner_id"),
    ("retention_policies", "owner_id"),
    ("workflows", "owner_id"),
    ("workflow_versions", "owner_id"),
    ("workflow_schedules", "owner_id"),
    ("workflow_runs", "owner_id"),
    ("workflow_logs", "owner_id"),
    ("run_waits", "owner_id"),
    ("events", "owner_id"),
    ("webhook_deliveries", "owner_id"),
    ("sessions", "owner_id"),
    ("session_messages", "owner_id"),
)
RUN_OWNED = ("step_checkpoints", "step_attempts")


async def row_counts(conn: Conn, owner: UUID) -> dict[str, int]:
    """How many rows of each table of :data:`OWNED` and :data:`RUN_OWNED` are the user's."""
    parts = [
        f"(select count(*) from {table} where {column} = %(owner)s) as {table}"
        for table, column in OWNED
    ] + [
        f"(select count(*) from {table} t join workflow_runs r on r.id = t.run_id"
        f" where r.owner_id = %(owner)s) as {table}"
        for table in RUN_OWNED
    ]
    cur = await conn.execute(("select " + ", ".join(parts)).encode(), {"owner": owner})
    row = await cur.fetchone()
    assert row is not None
    return {table: int(n) for table, n in row.items()}


# -- export --------------------------------------------------------------------------------


async def workflows_page(conn: Conn, owner: UUID, after: UUID | None, limit: int) -> list[DictRow]:
    """The user's workflows (every origin, archived ones too) in id order, after ``after``."""
    cur = await conn.execute(
        "select id, name, description, origin, latest_version, active_version, archived_at,"
        " legacy_user_id, created_at, updated_at from workflows"
        " where owner_id = %s and (%s::uuid is null or id > %s) order by id limit %s",
        (owner, after, after, limit),
    )
    return await cur.fetchall()


async def versions_of(conn: Conn, workflow_ids: list[UUID]) -> list[DictRow]:
    """Every version (with its blueprint) of these workflows, by workflow and number."""
    cur = await conn.execute(
        "select workflow_id, version, blueprint, trigger_kind, trigger_event, created_at"
        " from workflow_versions where workflow_id = any(%s) order by workflow_id, version",
        (workflow_ids,),
    )
    return await cur.fetchall()


async def workflow_policies(conn: Conn, workflow_ids: list[UUID]) -> dict[UUID, DictRow]:
    """The retention overrides of those of these workflows that have one."""
    cur = await conn.execute(
        "select workflow_id, succeeded_runs_days, failed_runs_days from retention_policies"
        " where workflow_id = any(%s)",
        (workflow_ids,),
    )
    return {row["workflow_id"]: row for row in await cur.fetchall()}


async def runs_page(
    conn: Conn, owner: UUID, after: tuple[datetime, UUID] | None, limit: int
) -> list[DictRow]:
    """The user's runs, oldest first (keyset on ``(created_at, id)``), without lease columns."""
    at, ident = after if after is not None else (None, None)
    cur = await conn.execute(
        "select id, workflow_id, version, status, engine, trigger_data, output, error,"
        " idempotency_key, trace_id, owner_profile, wake_at, created_at, started_at,"
        " finished_at, updated_at from workflow_runs where owner_id = %s"
        " and (%s::timestamptz is null or (created_at, id) > (%s, %s))"
        " order by created_at, id limit %s",
        (owner, at, at, ident, limit),
    )
    return await cur.fetchall()


async def sessions_page(
    conn: Conn, owner: UUID, after: tuple[datetime, UUID] | None, limit: int
) -> list[DictRow]:
    """The user's conversations, oldest first (keyset on ``(created_at, id)``)."""
    at, ident = after if after is not None else (None, None)
    cur = await conn.execute(
        "select id, channel, user_ref, status, state, summary, summary_source,"
        " last_activity_at, closed_at, created_at from sessions where owner_id = %s"
        " and (%s::timestamptz is null or (created_at, id) > (%s, %s))"
        " order by created_at, id limit %s",
        (owner, at, at, ident, limit),
    )
    return await cur.fetchall()


async def messages_of(conn: Conn, session_ids: list[UUID]) -> list[DictRow]:
    """The messages of these conversations, by conversation and order."""
    cur = await conn.execute(
        "select id, session_id, direction, text, transcript, media, intent, entities,"
        " trace_id, provider_message_id, delivery, created_at from session_messages"
        " where session_id = any(%s) order by session_id, id",
        (session_ids,),
    )
    return await cur.fetchall()


async def events_page(
    conn: Conn, owner: UUID, after: tuple[datetime, UUID] | None, limit: int
) -> list[DictRow]:
    """The user's events, oldest first (keyset on ``(created_at, id)``)."""
    at, ident = after if after is not None else (None, None)
    cur = await conn.execute(
        "select id, name, data, source, created_at from events where owner_id = %s"
        " and (%s::timestamptz is null or (created_at, id) > (%s, %s))"
        " order by created_at, id limit %s",
        (owner, at, at, ident, limit),
    )
    return await cur.fetchall()


# -- erasure -------------------------------------------------------------------------------


async def stop(conn: Conn, owner: UUID) -> tuple[Counts, list[DictRow], int]:
    """Stop everything that could act for the user or add to their data (inside a
    transaction): their API keys, linked numbers and link codes, credentials (their
    per-credential webhooks stop matching), schedules and retention overrides are deleted, their
    workflows deactivated (no event or intent starts them) and their unfinished runs cancelled
    (a step in flight finishes; the lease fence stops the rest).

    Returns:
        Rows deleted per table, the cancelled runs (``id``, ``engine``), and how many
        workflows were deactivated.
    """
    counts = Counts()
    for table, column in (
        ("api_keys", "user_id"),
        ("channel_link_codes", "owner_id"),
        ("channel_links", "owner_id"),
        ("credentials", "owner_id"),
        ("workflow_schedules", "owner_id"),
        ("retention_policies", "owner_id"),
    ):
        cur = await conn.execute(f"delete from {table} where {column} = %s".encode(), (owner,))
        counts[table] += cur.rowcount
    cur = await conn.execute(
        "update workflows set active_version = null, updated_at = now()"
        " where owner_id = %s and active_version is not null",
        (owner,),
    )
    deactivated = cur.rowcount
    cur = await conn.execute(
        "update workflow_runs set status = 'cancelled', finished_at = now(), updated_at = now(),"
        " lease_owner = null, lease_token = null, lease_expires_at = null, wake_at = null"
        " where owner_id = %s and status in ('queued', 'running', 'waiting')"
        " returning id, engine",
        (owner,),
    )
    cancelled = await cur.fetchall()
    for _ in cancelled:
        metrics.run_finished("cancelled")
    return counts, cancelled, deactivated


#: Batches of one user's rows, locked (``SKIP LOCKED``: a row a runner or request holds this
#: instant is taken by a later batch), in the order an erasure deletes them.
BATCHES = {
    "workflow_runs": "select id from workflow_runs where owner_id = %s"
    " order by id limit %s for update skip locked",
    "sessions": "select id from sessions where owner_id = %s"
    " order by id limit %s for update skip locked",
    "webhook_deliveries": "select id from webhook_deliveries where owner_id = %s"
    " order by id limit %s for update skip locked",
    "events": "select id from events where owner_id = %s"
    " order by id limit %s for update skip locked",
    "workflows": "select id from workflows where owner_id = %s"
    " order by id limit %s for update skip locked",
}


async def batch(conn: Conn, table: str, owner: UUID, limit: int) -> list[Any]:
    """Lock up to ``limit`` of the user's rows of ``table`` (a key of :data:`BATCHES`)."""
    cur = await conn.execute(BATCHES[table].encode(), (owner, limit))
    return [row["id"] for row in await cur.fetchall()]


async def remaining(conn: Conn, table: str, owner: UUID) -> bool:
    """Whether the user still has rows in ``table`` (a key of :data:`BATCHES`)."""
    cur = await conn.execute(
        f"select exists (select 1 from {table} where owner_id = %s) as left".encode(), (owner,)
    )
    row = await cur.fetchone()
    return bool(row and row["left"])


async def forget_user(conn: Conn, owner: UUID) -> int:
    """Delete the user's profile row, and with it (by cascade) anything of theirs written
    while the erasure ran. The local user, who owns what arrives without identity, stays, with
    an empty profile. Returns the users deleted (0 or 1)."""
    if owner == LOCAL_USER_ID:
        await conn.execute(
            "update users set display_name = 'Local user', email = null, phone = null,"
            " updated_at = now() where id = %s",
            (owner,),
        )
        return 0
    cur = await conn.execute("delete from users where id = %s", (owner,))
    return cur.rowcount
