"""Runs: creation (idempotent), claiming with leases, completion, queries.

Claiming uses ``FOR UPDATE SKIP LOCKED``: concurrent workers never claim the same run. A claim
is a lease (``lease_owner``, ``lease_expires_at``) that the owner's heartbeat extends; a run whose
lease expired (its worker died) is claimable again and resumes from its checkpoints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from backend.app.store.db import Conn, jsonb

TERMINAL = ("succeeded", "failed", "cancelled")


async def create(
    conn: Conn,
    *,
    workflow_id: UUID,
    version: int,
    trigger_data: Any,
    idempotency_key: str | None,
    engine: str = "embedded",
    trace_id: str | None = None,
) -> tuple[UUID, bool]:
    """Queue a run for ``engine``. Returns ``(run_id, created)``; ``created`` is False when a run
    with the same idempotency key already existed (that run's id is returned)."""
    cur = await conn.execute(
        "insert into workflow_runs"
        " (workflow_id, version, trigger_data, idempotency_key, engine, trace_id)"
        " values (%s, %s, %s, %s, %s, %s) on conflict (idempotency_key) do nothing returning id",
        (workflow_id, version, jsonb(trigger_data), idempotency_key, engine, trace_id),
    )
    row = await cur.fetchone()
    if row is not None:
        return row["id"], True
    existing = await find_by_idempotency_key(conn, idempotency_key or "")
    assert existing is not None
    return existing, False


async def find_by_idempotency_key(conn: Conn, key: str) -> UUID | None:
    """The run created with ``key``, if any."""
    cur = await conn.execute("select id from workflow_runs where idempotency_key = %s", (key,))
    row = await cur.fetchone()
    return None if row is None else UUID(str(row["id"]))


async def get(conn: Conn, run_id: UUID) -> DictRow | None:
    """The run row (without lease columns), or None."""
    cur = await conn.execute(
        "select id, workflow_id, version, status, engine, trigger_data, output, error,"
        " idempotency_key, trace_id, wake_at, created_at, started_at, finished_at, updated_at"
        " from workflow_runs where id = %s",
        (run_id,),
    )
    return await cur.fetchone()


async def list_by_trace(conn: Conn, trace_id: str) -> list[DictRow]:
    """Runs started for one command (trace id), oldest first."""
    cur = await conn.execute(
        "select id, workflow_id, version, status, error, output, trace_id, created_at,"
        " started_at, finished_at from workflow_runs where trace_id = %s order by created_at",
        (trace_id,),
    )
    return await cur.fetchall()


async def list_for_workflow(
    conn: Conn, workflow_id: UUID, *, limit: int, before: tuple[datetime, UUID] | None
) -> list[DictRow]:
    """Runs of a workflow, newest first, keyset-paginated on ``(created_at, id)``."""
    if before is None:
        cur = await conn.execute(
            "select id, workflow_id, version, status, error, created_at, started_at, finished_at"
            " from workflow_runs where workflow_id = %s"
            " order by created_at desc, id desc limit %s",
            (workflow_id, limit),
        )
    else:
        cur = await conn.execute(
            "select id, workflow_id, version, status, error, created_at, started_at, finished_at"
            " from workflow_runs where workflow_id = %s and (created_at, id) < (%s, %s)"
            " order by created_at desc, id desc limit %s",
            (workflow_id, before[0], before[1], limit),
        )
    return await cur.fetchall()


_CLAIM = """
update workflow_runs r
   set status = 'running', lease_owner = %(owner)s,
       lease_expires_at = now() + make_interval(secs => %(lease)s),
       started_at = coalesce(r.started_at, now()), wake_at = null, updated_at = now()
 where r.id in (
    select c.id from workflow_runs c
     where c.status in ('queued', 'running', 'waiting') and c.engine = 'embedded' {only}
       and (c.status = 'queued'
            or (c.status = 'waiting' and c.wake_at <= now())
            or (c.status = 'running' and c.lease_expires_at < now())
            or (c.status = 'waiting' and exists (
                  select 1 from run_waits w
                   where w.run_id = c.id and w.resolved_at is not null
                     and not exists (select 1 from step_checkpoints k
                                      where k.run_id = w.run_id and k.step_id = w.step_id))))
     order by coalesce(c.wake_at, c.created_at)
     limit %(limit)s
     for update skip locked)
returning r.id, r.workflow_id, r.version, r.trigger_data
"""


async def claim(
    conn: Conn, owner: str, limit: int, lease_seconds: float, *, run_id: UUID | None = None
) -> list[DictRow]:
    """Lease up to ``limit`` runnable runs (or just ``run_id``) to ``owner``.

    Runnable: queued; waiting with a due timer or a resolved, unconsumed event wait; running
    with an expired lease (its worker died).
    """
    params: dict[str, Any] = {
        "owner": owner,
        "lease": lease_seconds,
        "limit": limit,
        "run_id": run_id,
    }
    query = _CLAIM.format(only="and c.id = %(run_id)s" if run_id is not None else "")
    cur = await conn.execute(query.encode(), params)
    return await cur.fetchall()


async def expire_leases(conn: Conn, owner: str) -> int:
    """End ``owner``'s leases at once (a restarted process taking back its runs)."""
    cur = await conn.execute(
        "update workflow_runs set lease_expires_at = now() - interval '1 second'"
        " where lease_owner = %s and status = 'running'",
        (owner,),
    )
    return cur.rowcount


async def heartbeat(conn: Conn, owner: str, run_ids: list[UUID], lease_seconds: float) -> set[UUID]:
    """Extend ``owner``'s leases; returns the ids still held (others were lost or cancelled)."""
    cur = await conn.execute(
        "update workflow_runs set lease_expires_at = now() + make_interval(secs => %s)"
        " where id = any(%s) and lease_owner = %s and status = 'running' returning id",
        (lease_seconds, run_ids, owner),
    )
    return {row["id"] for row in await cur.fetchall()}


async def finish(
    conn: Conn,
    run_id: UUID,
    owner: str | None,
    *,
    status: str,
    output: Any = None,
    error: Any = None,
    wake_at: datetime | None = None,
) -> bool:
    """Record a run's outcome and drop the lease. ``status`` ``waiting`` keeps it resumable.

    ``owner`` None is for runners without leases (Inngest): the run must just be unfinished.
    Returns False when ``owner`` no longer held the run (lost lease or cancelled).
    """
    finished = status in TERMINAL
    cur = await conn.execute(
        "update workflow_runs set status = %(status)s, output = %(output)s, error = %(error)s,"
        " wake_at = %(wake_at)s, lease_owner = null, lease_expires_at = null, updated_at = now(),"
        " finished_at = case when %(finished)s then now() else null end"
        " where id = %(run_id)s and ((lease_owner = %(owner)s and status = 'running')"
        " or (%(owner)s::text is null and lease_owner is null"
        " and status in ('queued', 'running', 'waiting')))",
        {
            "status": status,
            "output": jsonb(output),
            "error": jsonb(error),
            "wake_at": wake_at,
            "finished": finished,
            "run_id": run_id,
            "owner": owner,
        },
    )
    return cur.rowcount == 1


async def set_waiting(conn: Conn, run_id: UUID, wake_at: datetime | None) -> None:
    """Show a lease-less (Inngest) run as parked on a timer or an event."""
    await conn.execute(
        "update workflow_runs set status = 'waiting', wake_at = %s, updated_at = now()"
        " where id = %s and lease_owner is null and status in ('queued', 'running')",
        (wake_at, run_id),
    )


async def fail(conn: Conn, run_id: UUID, error: dict[str, Any]) -> bool:
    """Mark an unfinished run failed with ``error`` (engine unreachable, engine gave up)."""
    cur = await conn.execute(
        "update workflow_runs set status = 'failed', error = %s, finished_at = now(),"
        " updated_at = now(), lease_owner = null, lease_expires_at = null"
        " where id = %s and status in ('queued', 'running', 'waiting')",
        (jsonb(error), run_id),
    )
    return cur.rowcount == 1


async def release(conn: Conn, run_ids: list[UUID], owner: str, *, delay_seconds: float = 0) -> None:
    """Give leased runs back to the queue (shutdown, unexpected error)."""
    await conn.execute(
        "update workflow_runs set status = 'queued', lease_owner = null, lease_expires_at = null,"
        " wake_at = now() + make_interval(secs => %s), updated_at = now()"
        " where id = any(%s) and lease_owner = %s and status = 'running'",
        (delay_seconds, run_ids, owner),
    )


async def cancel(conn: Conn, run_id: UUID) -> DictRow | None:
    """Cancel a run that has not finished. Returns the new row, None if absent or finished."""
    cur = await conn.execute(
        "update workflow_runs set status = 'cancelled', finished_at = now(), updated_at = now(),"
        " lease_owner = null, lease_expires_at = null, wake_at = null"
        " where id = %s and status in ('queued', 'running', 'waiting') returning id, status",
        (run_id,),
    )
    return await cur.fetchone()


async def requeue_failed(conn: Conn, run_id: UUID) -> bool:
    """Make a failed run resumable: forget its failed checkpoints and queue it again."""
    cur = await conn.execute(
        "update workflow_runs set status = 'queued', error = null, finished_at = null,"
        " updated_at = now(), wake_at = null where id = %s and status = 'failed' returning id",
        (run_id,),
    )
    if await cur.fetchone() is None:
        return False
    await conn.execute(
        "delete from step_checkpoints where run_id = %s and status = 'failed'", (run_id,)
    )
    return True


async def node_states(conn: Conn, run_id: UUID) -> list[DictRow]:
    """The latest log row of every node that has one."""
    cur = await conn.execute(
        "select distinct on (node_id) node_id, status, attempt, input, output, error,"
        " started_at, finished_at, duration_ms from workflow_logs where run_id = %s"
        " order by node_id, id desc",
        (run_id,),
    )
    return await cur.fetchall()


async def logs(conn: Conn, run_id: UUID, *, after_id: int, limit: int) -> list[DictRow]:
    """Log rows of a run in write order, after ``after_id``."""
    cur = await conn.execute(
        "select id, node_id, step_id, status, attempt, input, output, error, started_at,"
        " finished_at, duration_ms from workflow_logs where run_id = %s and id > %s"
        " order by id limit %s",
        (run_id, after_id, limit),
    )
    return await cur.fetchall()
