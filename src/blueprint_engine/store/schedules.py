"""Active schedules of schedule-triggered workflows."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn


async def upsert(
    conn: Conn, workflow_id: UUID, version: int, cron: str, timezone: str, next_fire_at: datetime
) -> None:
    """Create or replace the schedule of a workflow (owned by the workflow's owner)."""
    await conn.execute(
        "insert into workflow_schedules"
        " (workflow_id, owner_id, version, cron, timezone, next_fire_at)"
        " select id, owner_id, %s, %s, %s, %s from workflows where id = %s"
        " on conflict (workflow_id) do update set"
        " version = excluded.version, cron = excluded.cron, timezone = excluded.timezone,"
        " next_fire_at = excluded.next_fire_at, updated_at = now()",
        (version, cron, timezone, next_fire_at, workflow_id),
    )


async def delete(conn: Conn, workflow_id: UUID) -> None:
    """Stop a workflow's schedule."""
    await conn.execute("delete from workflow_schedules where workflow_id = %s", (workflow_id,))


async def get(conn: Conn, workflow_id: UUID) -> DictRow | None:
    """A workflow's schedule, or None."""
    cur = await conn.execute(
        "select * from workflow_schedules where workflow_id = %s", (workflow_id,)
    )
    return await cur.fetchone()


async def due(conn: Conn, limit: int) -> list[DictRow]:
    """Schedules whose time has come, locked for this transaction (other processes skip them)."""
    cur = await conn.execute(
        "select s.* from workflow_schedules s"
        " where s.next_fire_at <= now() order by s.next_fire_at limit %s"
        " for update of s skip locked",
        (limit,),
    )
    return await cur.fetchall()


async def advance(
    conn: Conn, workflow_id: UUID, fired_at: datetime, next_fire_at: datetime
) -> None:
    """Record a firing and the next time."""
    await conn.execute(
        "update workflow_schedules set last_fired_at = %s, next_fire_at = %s, updated_at = now()"
        " where workflow_id = %s",
        (fired_at, next_fire_at, workflow_id),
    )
