"""Workflows and their immutable versions.

Reads and writes a caller makes are scoped to an ``owner`` (another user's workflow is simply
absent); ``get_version`` is unscoped, for runners that already hold a run of the workflow.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from backend.app.store.db import Conn, jsonb


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


async def get(conn: Conn, workflow_id: UUID, owner: UUID) -> DictRow | None:
    """The owner's workflow row, or None."""
    cur = await conn.execute(
        "select * from workflows where id = %s and owner_id = %s", (workflow_id, owner)
    )
    return await cur.fetchone()


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
