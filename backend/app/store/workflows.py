"""Workflows and their immutable versions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from backend.app.store.db import Conn, jsonb


async def create(
    conn: Conn,
    *,
    name: str,
    description: str | None,
    user_id: str | None,
    origin: str,
    blueprint: dict[str, Any],
    trigger_kind: str,
    trigger_event: str | None,
) -> DictRow:
    """Insert a workflow with version 1 (call inside a transaction). Returns the workflow row."""
    cur = await conn.execute(
        "insert into workflows (name, description, user_id, origin) values (%s, %s, %s, %s)"
        " returning *",
        (name, description, user_id, origin),
    )
    row = await cur.fetchone()
    assert row is not None
    await _insert_version(conn, row["id"], 1, blueprint, trigger_kind, trigger_event)
    return row


async def add_version(
    conn: Conn,
    workflow_id: UUID,
    *,
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
        " where id = %s returning *",
        (name, description, workflow_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    await _insert_version(
        conn, workflow_id, row["latest_version"], blueprint, trigger_kind, trigger_event
    )
    return row


async def _insert_version(
    conn: Conn,
    workflow_id: UUID,
    version: int,
    blueprint: dict[str, Any],
    trigger_kind: str,
    trigger_event: str | None,
) -> None:
    await conn.execute(
        "insert into workflow_versions"
        " (workflow_id, version, blueprint, trigger_kind, trigger_event)"
        " values (%s, %s, %s, %s, %s)",
        (workflow_id, version, jsonb(blueprint), trigger_kind, trigger_event),
    )


async def get(conn: Conn, workflow_id: UUID) -> DictRow | None:
    """The workflow row, or None."""
    cur = await conn.execute("select * from workflows where id = %s", (workflow_id,))
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


async def set_active_version(conn: Conn, workflow_id: UUID, version: int | None) -> DictRow | None:
    """Pin the live version (None deactivates). Returns the workflow, None if absent."""
    cur = await conn.execute(
        "update workflows set active_version = %s, updated_at = now() where id = %s returning *",
        (version, workflow_id),
    )
    return await cur.fetchone()


async def active_for_event(conn: Conn, event_name: str) -> list[DictRow]:
    """Active workflows whose live version is triggered by ``event_name``."""
    cur = await conn.execute(
        "select w.id as workflow_id, w.active_version as version, w.user_id from workflows w"
        " join workflow_versions v on v.workflow_id = w.id and v.version = w.active_version"
        " where v.trigger_event = %s and v.trigger_kind in ('event', 'webhook')"
        " order by w.created_at",
        (event_name,),
    )
    return await cur.fetchall()


async def active_with_intent_triggers(conn: Conn) -> list[DictRow]:
    """Active workflows whose live version starts from an ``intent`` trigger, with blueprints."""
    cur = await conn.execute(
        "select w.id as workflow_id, w.active_version as version, w.name, w.user_id, v.blueprint"
        " from workflows w"
        " join workflow_versions v on v.workflow_id = w.id and v.version = w.active_version"
        " where v.trigger_kind = 'intent' order by w.created_at"
    )
    return await cur.fetchall()


async def find_system(conn: Conn, name: str) -> DictRow | None:
    """A system workflow (origin ``system``) by name."""
    cur = await conn.execute(
        "select * from workflows where origin = 'system' and name = %s order by created_at limit 1",
        (name,),
    )
    return await cur.fetchone()
