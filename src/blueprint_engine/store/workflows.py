"""Workflows and their immutable versions.

Reads and writes a caller makes are scoped to an ``owner`` (another user's workflow is simply
absent); ``get_version`` is unscoped, for runners that already hold a run of the workflow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn, jsonb


async def create(
    conn: Conn,
    *,
    owner: UUID,
    name: str,
    description: str | None,
    origin: str,
    blueprint: dict[str, Any],
    trigger_kind: str,
    trigger_event: str | None,
) -> DictRow:
    """Insert a workflow with version 1 (call inside a transaction). Returns the workflow row."""
    cur = await conn.execute(
        "insert into workflows (owner_id, name, description, origin) values (%s, %s, %s, %s)"
        " returning *",
        (owner, name, description, origin),
    )
    row = await cur.fetchone()
    assert row is not None
    await _insert_version(conn, row, 1, blueprint, trigger_kind, trigger_event)
    return row


#: Origins whose blueprints are stored once per owner and content (``content_sha256``).
CONTENT_ORIGINS = ("adhoc", "channel")


async def create_once(
    conn: Conn,
    *,
    owner: UUID,
    name: str,
    description: str | None,
    origin: str,
    blueprint: dict[str, Any],
    content_sha256: str,
    trigger_kind: str,
    trigger_event: str | None,
) -> DictRow | None:
    """The owner's unarchived workflow of ``origin`` (one of :data:`CONTENT_ORIGINS`) whose
    version 1 has this content, inserted with version 1 if there is none (call inside a
    transaction). Concurrent callers with the same content get the same row: an insert waits
    for the other's transaction, then finds its row. The row is share-locked until the
    transaction ends, so it cannot be archived under a run being started. None when the row
    was archived between insert and read three times running.

    Raises:
        ValueError: ``origin`` is not one of :data:`CONTENT_ORIGINS`.
    """
    if origin not in CONTENT_ORIGINS:
        raise ValueError(f"origin {origin!r} is not stored by content")
    for _ in range(3):  # an archive can free the slot between the insert and the select
        cur = await conn.execute(
            "insert into workflows (owner_id, name, description, origin, content_sha256)"
            " values (%s, %s, %s, %s, %s)"
            " on conflict (owner_id, origin, content_sha256)"
            " where origin in ('adhoc', 'channel') and archived_at is null do nothing"
            " returning *",
            (owner, name, description, origin, content_sha256),
        )
        row = await cur.fetchone()
        if row is not None:
            await _insert_version(conn, row, 1, blueprint, trigger_kind, trigger_event)
            return row
        cur = await conn.execute(
            "select * from workflows where owner_id = %s and origin = %s"
            " and content_sha256 = %s and archived_at is null for share",
            (owner, origin, content_sha256),
        )
        row = await cur.fetchone()
        if row is not None:
            return row
    return None


async def add_version(
    conn: Conn,
    workflow_id: UUID,
    *,
    owner: UUID,
    blueprint: dict[str, Any],
    trigger_kind: str,
    trigger_event: str | None,
    name: str | None,
    description: str | None,
) -> DictRow | None:
    """Append a version (inside a transaction). Returns the updated workflow, None if absent."""
    cur = await conn.execute(
        "update workflows set latest_version = latest_version + 1, updated_at = now(),"
        " name = coalesce(%s, name), description = coalesce(%s, description)"
        " where id = %s and owner_id = %s returning *",
        (name, description, workflow_id, owner),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    await _insert_version(conn, row, row["latest_version"], blueprint, trigger_kind, trigger_event)
    return row


async def _insert_version(
    conn: Conn,
    workflow: DictRow,
    version: int,
    blueprint: dict[str, Any],
    trigger_kind: str,
    trigger_event: str | None,
) -> None:
    await conn.execute(
        "insert into workflow_versions"
        " (workflow_id, owner_id, version, blueprint, trigger_kind, trigger_event)"
        " values (%s, %s, %s, %s, %s, %s)",
        (
            workflow["id"],
            workflow["owner_id"],
            version,
            jsonb(blueprint),
            trigger_kind,
            trigger_event,
        ),
    )


async def get(conn: Conn, workflow_id: UUID, owner: UUID, *, lock: bool = False) -> DictRow | None:
    """The owner's workflow row, or None. ``lock``: hold a share lock until the transaction
    ends (starting a run: archiving waits for it)."""
    cur = await conn.execute(
        "select * from workflows where id = %s and owner_id = %s" + (" for share" if lock else ""),
        (workflow_id, owner),
    )
    return await cur.fetchone()


_LISTED = """
select w.id, w.name, w.description, w.origin, w.active_version, w.latest_version,
       w.active_version is not null as active, w.created_at, w.updated_at,
       (select jsonb_build_object('id', r.id, 'status', r.status, 'created_at', r.created_at,
                                  'finished_at', r.finished_at)
          from workflow_runs r where r.workflow_id = w.id
         order by r.created_at desc, r.id desc limit 1) as last_run
  from workflows w
 where w.owner_id = %(owner)s and w.archived_at is null and w.origin in ('api', 'draft')
   and (%(pattern)s::text is null or w.name ilike %(pattern)s or w.description ilike %(pattern)s)
   and (%(active)s::boolean is null or (w.active_version is not null) = %(active)s)
   and (%(at)s::timestamptz is null or (w.updated_at, w.id) < (%(at)s, %(id)s))
 order by w.updated_at desc, w.id desc
 limit %(limit)s
"""


async def page(
    conn: Conn,
    owner: UUID,
    *,
    limit: int,
    before: tuple[datetime, UUID] | None,
    search: str | None = None,
    active: bool | None = None,
) -> list[DictRow]:
    """The owner's saved workflows (origin ``api`` or ``draft``; not archived), most recently
    changed first, keyset-paginated on ``(updated_at, id)``, each with its ``last_run``
    (``{id, status, created_at, finished_at}`` or None). ``search``: a case-insensitive
    substring of the name or description."""
    pattern = None
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
    at, ident = before if before is not None else (None, None)
    cur = await conn.execute(
        _LISTED,
        {
            "owner": owner,
            "pattern": pattern,
            "active": active,
            "at": at,
            "id": ident,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def callable_by(conn: Conn, owner: UUID, *, limit: int) -> list[DictRow]:
    """The owner's saved workflows (origin ``api`` or ``draft``; not archived) that a workflow
    may run as child runs, most recently changed first, at most ``limit``: ``{id, name,
    description, active, trigger_kind}`` (of the active version, else the latest)."""
    cur = await conn.execute(
        "select w.id, w.name, w.description, w.active_version is not null as active,"
        " v.trigger_kind from workflows w join workflow_versions v on v.workflow_id = w.id"
        " and v.version = coalesce(w.active_version, w.latest_version)"
        " where w.owner_id = %s and w.archived_at is null and w.origin in ('api', 'draft')"
        " order by w.updated_at desc, w.id desc limit %s",
        (owner, limit),
    )
    return await cur.fetchall()


async def archive(conn: Conn, workflow_id: UUID, owner: UUID) -> DictRow | None:
    """Archive the owner's workflow (not the system's): deactivated, out of the lists, no new
    runs (inside a transaction; the caller removes its schedule). Returns the row, None if
    absent."""
    cur = await conn.execute(
        "update workflows set archived_at = coalesce(archived_at, now()), active_version = null,"
        " updated_at = now() where id = %s and owner_id = %s"
        " and origin not in ('system', 'channel') returning *",
        (workflow_id, owner),
    )
    return await cur.fetchone()


async def unfinished_runs(conn: Conn, workflow_id: UUID) -> list[UUID]:
    """Ids of the workflow's runs that are queued, running or waiting (at most 100)."""
    cur = await conn.execute(
        "select id from workflow_runs where workflow_id = %s"
        " and status in ('queued', 'running', 'waiting') order by created_at limit 100",
        (workflow_id,),
    )
    return [row["id"] for row in await cur.fetchall()]


async def get_version(conn: Conn, workflow_id: UUID, version: int) -> DictRow | None:
    """One version row (with its blueprint), or None."""
    cur = await conn.execute(
        "select * from workflow_versions where workflow_id = %s and version = %s",
        (workflow_id, version),
    )
    return await cur.fetchone()


async def list_versions(conn: Conn, workflow_id: UUID) -> list[DictRow]:
    """Version numbers and timestamps, newest first (without blueprints)."""
    cur = await conn.execute(
        "select version, trigger_kind, trigger_event, created_at from workflow_versions"
        " where workflow_id = %s order by version desc",
        (workflow_id,),
    )
    return await cur.fetchall()


async def set_active_version(
    conn: Conn, workflow_id: UUID, version: int | None, owner: UUID
) -> DictRow | None:
    """Pin the live version (None deactivates). Returns the workflow, None if absent."""
    cur = await conn.execute(
        "update workflows set active_version = %s, updated_at = now()"
        " where id = %s and owner_id = %s returning *",
        (version, workflow_id, owner),
    )
    return await cur.fetchone()


async def active_for_event(conn: Conn, event_name: str, owner: UUID) -> list[DictRow]:
    """The owner's active workflows whose live version is triggered by ``event_name``."""
    cur = await conn.execute(
        "select w.id as workflow_id, w.active_version as version, w.owner_id from workflows w"
        " join workflow_versions v on v.workflow_id = w.id and v.version = w.active_version"
        " where w.owner_id = %s and v.trigger_event = %s"
        " and v.trigger_kind in ('event', 'webhook') order by w.created_at",
        (owner, event_name),
    )
    return await cur.fetchall()


async def active_with_intent_triggers(conn: Conn, owner: UUID) -> list[DictRow]:
    """The owner's active workflows whose live version starts from an ``intent`` trigger, with
    blueprints."""
    cur = await conn.execute(
        "select w.id as workflow_id, w.active_version as version, w.name, w.owner_id,"
        " v.blueprint from workflows w"
        " join workflow_versions v on v.workflow_id = w.id and v.version = w.active_version"
        " where w.owner_id = %s and v.trigger_kind = 'intent' order by w.created_at",
        (owner,),
    )
    return await cur.fetchall()


async def find_system(conn: Conn, name: str, owner: UUID) -> DictRow | None:
    """The owner's system workflow (origin ``system``) of that name."""
    cur = await conn.execute(
        "select * from workflows where origin = 'system' and name = %s and owner_id = %s"
        " order by created_at limit 1",
        (name, owner),
    )
    return await cur.fetchone()
