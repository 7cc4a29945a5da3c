"""Events, webhook deliveries and the event waits they resolve, each owned by a user: an event
resolves only its owner's waits."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn, jsonb


async def insert(conn: Conn, name: str, data: Any, source: str, owner: UUID) -> UUID:
    """Record the owner's event; returns its id."""
    cur = await conn.execute(
        "insert into events (owner_id, name, data, source) values (%s, %s, %s, %s) returning id",
        (owner, name, jsonb(data), source),
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row["id"]))


async def record_delivery(
    conn: Conn,
    provider: str,
    delivery_id: str,
    event_name: str,
    *,
    owner: UUID,
    body_sha256: str | None = None,
) -> bool:
    """Remember a webhook delivery for ``owner``. Returns False when it was seen before: the
    same ``delivery_id``, or the same ``body_sha256`` (when given) from this provider."""
    cur = await conn.execute(
        "insert into webhook_deliveries (provider, delivery_id, event_name, body_sha256,"
        " owner_id) values (%s, %s, %s, %s, %s) on conflict do nothing returning id",
        (provider, delivery_id, event_name, body_sha256, owner),
    )
    return await cur.fetchone() is not None


async def link_delivery(conn: Conn, provider: str, delivery_id: str, event_id: UUID) -> None:
    """Point a delivery at the event it produced."""
    await conn.execute(
        "update webhook_deliveries set event_id = %s where provider = %s and delivery_id = %s",
        (event_id, provider, delivery_id),
    )


async def open_waits_for(conn: Conn, event_name: str, owner: UUID) -> list[DictRow]:
    """The owner's unresolved, unexpired waits for ``event_name``, locked for this
    transaction."""
    cur = await conn.execute(
        "select run_id, step_id, match, context from run_waits"
        " where owner_id = %s and kind = 'event' and event_name = %s and resolved_at is null"
        " and wake_at > now() order by created_at for update",
        (owner, event_name),
    )
    return await cur.fetchall()


async def resolve_wait(conn: Conn, run_id: UUID, step_id: str, event: Any) -> None:
    """Deliver ``event`` to a wait and make its run claimable at once."""
    await conn.execute(
        "update run_waits set event = %s, resolved_at = now() where run_id = %s and step_id = %s",
        (jsonb(event), run_id, step_id),
    )
    await conn.execute(
        "update workflow_runs set status = 'queued', wake_at = null, updated_at = now()"
        " where id = %s and status = 'waiting' and engine = 'embedded'",
        (run_id,),
    )
