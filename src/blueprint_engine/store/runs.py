"""Runs: creation (idempotent), claiming with leases, completion, queries.

Claiming uses ``FOR UPDATE SKIP LOCKED``: concurrent workers never claim the same run. A claim
is a lease (``lease_owner``, a fresh ``lease_token``, ``lease_expires_at``) that the owner's
heartbeat extends; a run whose lease expired (its worker died) is claimable again and resumes
from its checkpoints. Every write of a pass is fenced on its token (see ``steps``), so a pass
that lost its lease records nothing more, even when the same process claimed the run again.

``pass_failures`` counts consecutive passes that ended in an unexpected error or lost their
worker, without recording any progress; the runner backs off between them and gives up after a
limit (:func:`record_pass_failure`).

Every write that ends a run counts it in ``blueprint_runs_finished_total``
(:func:`blueprint_engine.metrics.run_finished`): each such transition is written here, once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine import metrics
from blueprint_engine.store.db import Conn, jsonb
from blueprint_engine.store.steps import Lease, held
from blueprint_engine.store.storable import scrub

TERMINAL = ("succeeded", "failed", "cancelled")

#: The owner's profile as stored on a run (``owner_profile``): what templates see as ``owner``.
_PROFILE_OF = (
    "(select jsonb_build_object('display_name', u.display_name, 'email', u.email,"
    " 'phone', u.phone) from users u where u.id = {owner})"
)


async def create(
    conn: Conn,
    *,
    owner: UUID,
    workflow_id: UUID,
    version: int,
    trigger_data: Any,
    idempotency_key: str | None,
    engine: str = "embedded",
    trace_id: str | None = None,
    sandbox: bool = False,
) -> tuple[UUID, bool]:
    """Queue a run for ``engine``, with a snapshot of the owner's profile (``owner_profile``,
    see :class:`~blueprint_engine.workflows.engine.Engine`). Returns ``(run_id, created)``;
    ``created`` is False when the owner already has a run with the same idempotency key (that
    run's id is returned)."""
    cur = await conn.execute(
        "insert into workflow_runs (owner_id, workflow_id, version, trigger_data,"
        " idempotency_key, engine, trace_id, sandbox, owner_profile)"
        " values (%(owner)s, %(workflow_id)s, %(version)s, %(trigger_data)s,"
        f" %(key)s, %(engine)s, %(trace_id)s, %(sandbox)s, {_PROFILE_OF.format(owner='%(owner)s')})"
        " on conflict (owner_id, idempotency_key) do nothing returning id",
        {
            "owner": owner,
            "workflow_id": workflow_id,
            "version": version,
            "trigger_data": jsonb(trigger_data),
            "key": idempotency_key,
            "engine": engine,
            "trace_id": trace_id,
            "sandbox": sandbox,
        },
    )
    row = await cur.fetchone()
    if row is not None:
        return row["id"], True
    existing = await find_by_idempotency_key(conn, idempotency_key or "", owner)
    assert existing is not None
    return existing, False


async def find_by_idempotency_key(conn: Conn, key: str, owner: UUID) -> UUID | None:
    """The owner's run created with ``key``, if any."""
    cur = await conn.execute(
        "select id from workflow_runs where owner_id = %s and idempotency_key = %s", (owner, key)
    )
    row = await cur.fetchone()
    return None if row is None else UUID(str(row["id"]))


async def get(conn: Conn, run_id: UUID, *, owner: UUID | None) -> DictRow | None:
    """The owner's run row (without lease columns), or None. ``owner`` None is for the
    engine's own use (a runner that holds the run): unscoped."""
    cur = await conn.execute(
        "select id, owner_id, workflow_id, version, status, engine, trigger_data, output, error,"
        " idempotency_key, trace_id, wake_at, created_at, started_at, finished_at, updated_at,"
        " owner_profile, change_seq, parent_run_id, parent_step_id, sandbox"
        " from workflow_runs where id = %s and (%s::uuid is null or owner_id = %s)",
        (run_id, owner, owner),
    )
    return await cur.fetchone()


_SUMMARY = (
    "select r.id, r.workflow_id, w.name as workflow_name, r.version, r.status, r.error,"
    " r.trace_id, r.wake_at, r.created_at, r.started_at, r.finished_at, r.change_seq,"
    " r.parent_run_id, r.parent_step_id"
    " from workflow_runs r join workflows w on w.id = r.workflow_id"
)


def _scope(workflow_id: UUID | None, owner: UUID | None) -> tuple[str, tuple[Any, ...]]:
    """Runs of one workflow, or an owner's runs of the workflows they made (not the system's
    session timers and channel commands)."""
    if workflow_id is not None:
        return "r.workflow_id = %s", (workflow_id,)
    return "r.owner_id = %s and w.origin not in ('system', 'channel')", (owner,)


async def page(
    conn: Conn,
    owner: UUID,
    *,
    limit: int,
    before: tuple[datetime, UUID] | None,
    workflow_id: UUID | None = None,
    status: str | None = None,
    trace_id: str | None = None,
    parent_run_id: UUID | None = None,
) -> list[DictRow]:
    """The owner's runs newest first, keyset-paginated on ``(created_at, id)``: of one
    workflow, of one command (``trace_id``, channel commands included), the child runs of one
    run (``parent_run_id``, whatever their workflow), or of every workflow they made;
    optionally of one ``status``."""
    args: tuple[Any, ...]
    if trace_id is not None:
        where, args = "r.owner_id = %s and r.trace_id = %s", (owner, trace_id)
    elif parent_run_id is not None:
        where, args = "r.owner_id = %s and r.parent_run_id = %s", (owner, parent_run_id)
    else:
        where, args = _scope(workflow_id, owner)
        if workflow_id is not None:
            where += " and r.owner_id = %s"
            args += (owner,)
    if status is not None:
        where += " and r.status = %s"
        args += (status,)
    if before is not None:
        where += " and (r.created_at, r.id) < (%s, %s)"
        args += before
    cur = await conn.execute(
        f"{_SUMMARY} where {where} order by r.created_at desc, r.id desc limit %s",
        (*args, limit),
    )
    return await cur.fetchall()


async def changes(
    conn: Conn,
    *,
    workflow_id: UUID | None = None,
    owner: UUID | None = None,
    after_seq: int,
    limit: int,
) -> list[DictRow]:
    """Runs of a workflow (or an owner's, as in :func:`page`) whose status changed after
    ``after_seq`` (their ``change_seq``), in change order: each once, as it is now."""
    where, args = _scope(workflow_id, owner)
    cur = await conn.execute(
        f"{_SUMMARY} where {where} and r.change_seq > %s order by r.change_seq limit %s",
        (*args, after_seq, limit),
    )
    return await cur.fetchall()


async def summaries(
    conn: Conn,
    run_ids: list[UUID],
    *,
    workflow_id: UUID | None = None,
    owner: UUID | None = None,
) -> list[DictRow]:
    """The given runs of a workflow (or an owner's, as in :func:`page`) as they are now, in
    change order."""
    where, args = _scope(workflow_id, owner)
    cur = await conn.execute(
        f"{_SUMMARY} where {where} and r.id = any(%s) order by r.change_seq", (*args, run_ids)
    )
    return await cur.fetchall()


_CLAIM = """
update workflow_runs r
   set status = 'running', lease_owner = %(owner)s, lease_token = gen_random_uuid(),
       lease_expires_at = now() + make_interval(secs => %(lease)s),
       pass_failures = r.pass_failures + case when r.status = 'running' then 1 else 0 end,
       started_at = coalesce(r.started_at, now()), wake_at = null, updated_at = now()
  from (
    select c.id, c.started_at is null as first_pass from workflow_runs c
     where c.status in ('queued', 'running', 'waiting') and c.engine = 'embedded'
       and c.id <> all(%(exclude)s::uuid[]) {only}
       and ((c.status = 'queued' and (c.wake_at is null or c.wake_at <= now()))
            or (c.status = 'waiting' and c.wake_at <= now())
            or (c.status = 'running' and c.lease_expires_at < now())
            or (c.status = 'waiting' and exists (
                  select 1 from run_waits w
                   where w.run_id = c.id and w.resolved_at is not null
                     and not exists (select 1 from step_checkpoints k
                                      where k.run_id = w.run_id and k.step_id = w.step_id))))
     order by coalesce(c.wake_at, c.created_at)
     limit %(limit)s
     for update skip locked) c
 where r.id = c.id
returning r.id, r.owner_id, r.workflow_id, r.version, r.trigger_data, r.owner_profile,
          r.lease_token, r.pass_failures, r.trace_id, r.sandbox, c.first_pass
"""


async def claim(
    conn: Conn,
    owner: str,
    limit: int,
    lease_seconds: float,
    *,
    run_id: UUID | None = None,
    exclude: list[UUID] | None = None,
) -> list[DictRow]:
    """Lease up to ``limit`` runnable runs (or just ``run_id``) to ``owner``, each under a new
    ``lease_token``; skip the runs in ``exclude`` (the caller's own passes still in flight).

    Runnable: queued (once its ``wake_at``, a back-off, has passed); waiting with a due timer or
    a resolved, unconsumed event wait; running with an expired lease (its worker died: that
    counts as a failed pass in ``pass_failures``). ``first_pass`` in a row: the run was never
    claimed before, so it has no checkpoints, attempts or waits yet.
    """
    params: dict[str, Any] = {
        "owner": owner,
        "lease": lease_seconds,
        "limit": limit,
        "run_id": run_id,
        "exclude": exclude or [],
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


#: The runs of ``{run_id: lease_token}`` (two array parameters) still held by those claims,
#: locked in id order: statements that lock several runs lock them in the same order, so they
#: cannot deadlock (see ``steps.write``).
_HELD = (
    "select r.id from workflow_runs r join unnest(%s::uuid[], %s::uuid[]) as h (id, token)"
    " on r.id = h.id and r.lease_token = h.token and r.status = 'running'"
    " order by r.id for no key update of r"
)


async def heartbeat(conn: Conn, leases: dict[UUID, UUID], lease_seconds: float) -> set[UUID]:
    """Extend the leases ``{run_id: lease_token}``; returns the run ids still held (the others
    were taken over or cancelled). Locks the runs in id order, as step writes do."""
    cur = await conn.execute(
        f"with held as ({_HELD}) update workflow_runs r"
        " set lease_expires_at = now() + make_interval(secs => %s)"
        " from held where r.id = held.id returning r.id",
        (list(leases), list(leases.values()), lease_seconds),
    )
    return {row["id"] for row in await cur.fetchall()}


_FINISH = (
    "update workflow_runs set status = %(status)s, output = %(output)s, error = %(error)s,"
    " wake_at = %(wake_at)s, lease_owner = null, lease_token = null,"
    " lease_expires_at = null, pass_failures = 0, updated_at = now(),"
    " finished_at = case when %(finished)s then now() else null end"
    " where id = %(run_id)s and " + held("workflow_runs", "%(token)s::uuid")
)


async def finish(
    conn: Conn,
    run_id: UUID,
    lease: Lease | None,
    *,
    status: str,
    output: Any = None,
    error: Any = None,
    wake_at: datetime | None = None,
) -> bool:
    """Record a run's outcome (a completed pass) and drop the lease. ``status`` ``waiting``
    keeps it resumable.

    ``lease`` None is for runners without leases (Inngest): the run must just be unfinished.
    Returns False when the claim no longer held the run (lost lease or cancelled).
    """
    finished = status in TERMINAL
    cur = await conn.execute(
        _FINISH,
        {
            "status": status,
            "output": jsonb(output),
            "error": jsonb(scrub(error)),
            "wake_at": wake_at,
            "finished": finished,
            "run_id": run_id,
            "token": None if lease is None else lease.token,
        },
    )
    if cur.rowcount == 1:
        metrics.run_finished(status)
    return cur.rowcount == 1


async def record_pass_failure(
    conn: Conn,
    run_id: UUID,
    lease: Lease,
    error: dict[str, Any],
    *,
    max_failures: int,
    backoff_seconds: float,
) -> str | None:
    """Count a pass that ended in an unexpected error and give the run back: ``queued`` again
    after ``backoff_seconds * 2**(failures - 1)`` (at most an hour), or ``failed`` with
    ``error`` once ``max_failures`` consecutive passes failed.

    Returns:
        The run's new status, or None when this claim no longer held it.
    """
    cur = await conn.execute(
        "update workflow_runs set pass_failures = pass_failures + 1,"
        " status = case when pass_failures + 1 >= %(max)s then 'failed' else 'queued' end,"
        " error = case when pass_failures + 1 >= %(max)s then %(error)s else error end,"
        " finished_at = case when pass_failures + 1 >= %(max)s then now() end,"
        " wake_at = case when pass_failures + 1 >= %(max)s then null"
        "   else now() + make_interval(secs => least(3600, %(backoff)s * 2 ^ pass_failures)) end,"
        " lease_owner = null, lease_token = null, lease_expires_at = null, updated_at = now()"
        " where id = %(run_id)s and lease_token = %(token)s and status = 'running'"
        " returning status",
        {
            "max": max_failures,
            "error": jsonb(scrub(error)),
            "backoff": backoff_seconds,
            "run_id": run_id,
            "token": lease.token,
        },
    )
    row = await cur.fetchone()
    if row is not None:
        metrics.run_finished(row["status"])
    return None if row is None else str(row["status"])


async def set_waiting(conn: Conn, run_id: UUID, wake_at: datetime | None) -> None:
    """Show a lease-less (Inngest) run as parked on a timer or an event."""
    await conn.execute(
        "update workflow_runs set status = 'waiting', wake_at = %s, updated_at = now()"
        " where id = %s and lease_owner is null and status in ('queued', 'running')",
        (wake_at, run_id),
    )


async def fail(
    conn: Conn, run_id: UUID, error: dict[str, Any], *, lease: Lease | None = None
) -> bool:
    """Mark an unfinished run failed with ``error`` (engine unreachable, engine gave up); with
    ``lease``, only while that claim still holds it."""
    cur = await conn.execute(
        "update workflow_runs set status = 'failed', error = %s, finished_at = now(),"
        " updated_at = now(), lease_owner = null, lease_token = null, lease_expires_at = null"
        " where id = %s and status in ('queued', 'running', 'waiting')"
        " and (%s::uuid is null or lease_token = %s)",
        (jsonb(scrub(error)), run_id, *(2 * [None if lease is None else lease.token])),
    )
    if cur.rowcount == 1:
        metrics.run_finished("failed")
    return cur.rowcount == 1


async def release(conn: Conn, leases: dict[UUID, UUID]) -> None:
    """Give leased runs ``{run_id: lease_token}`` back to the queue at once (shutdown)."""
    await conn.execute(
        f"with held as ({_HELD}) update workflow_runs r set status = 'queued',"
        " lease_owner = null, lease_token = null, lease_expires_at = null, wake_at = null,"
        " updated_at = now() from held where r.id = held.id",
        (list(leases), list(leases.values())),
    )


async def cancel(conn: Conn, run_id: UUID, owner: UUID) -> DictRow | None:
    """Cancel the owner's run if it has not finished. Returns the new row, None if absent or
    finished."""
    cur = await conn.execute(
        "update workflow_runs set status = 'cancelled', finished_at = now(), updated_at = now(),"
        " lease_owner = null, lease_token = null, lease_expires_at = null, wake_at = null"
        " where id = %s and owner_id = %s and status in ('queued', 'running', 'waiting')"
        " returning id, status",
        (run_id, owner),
    )
    row = await cur.fetchone()
    if row is not None:
        metrics.run_finished("cancelled")
    return row


async def cancel_descendants(conn: Conn, run_id: UUID) -> list[UUID]:
    """Cancel the unfinished child runs of ``run_id``, their children and so on (a cancelled
    parent waits for nothing). Returns the ids cancelled."""
    cur = await conn.execute("select id from workflow_runs where parent_run_id = %s", (run_id,))
    return await cancel_trees(conn, [row["id"] for row in await cur.fetchall()])


async def cancel_trees(conn: Conn, run_ids: list[UUID]) -> list[UUID]:
    """Cancel the unfinished runs among ``run_ids`` and their descendants (child runs, theirs
    and so on). Returns the ids cancelled."""
    cur = await conn.execute(
        "with recursive tree(id) as ("
        "  select unnest(%s::uuid[])"
        "  union select r.id from workflow_runs r join tree on r.parent_run_id = tree.id)"
        " update workflow_runs set status = 'cancelled', finished_at = now(), updated_at = now(),"
        " lease_owner = null, lease_token = null, lease_expires_at = null, wake_at = null"
        " where id in (select id from tree) and status in ('queued', 'running', 'waiting')"
        " returning id",
        (run_ids,),
    )
    cancelled = [row["id"] for row in await cur.fetchall()]
    for _ in cancelled:
        metrics.run_finished("cancelled")
    return cancelled


async def requeue_failed(conn: Conn, run_id: UUID, owner: UUID) -> bool:
    """Make a failed run resumable: forget its failed checkpoints and attempt counts (each
    unfinished step gets its attempts afresh), take a fresh snapshot of the owner's profile
    (a step that failed on a missing ``owner.phone`` works once the user set it; finished
    steps keep what they recorded) and queue it again."""
    cur = await conn.execute(
        "update workflow_runs set status = 'queued', error = null, finished_at = null,"
        " pass_failures = 0, updated_at = now(), wake_at = null,"
        f" owner_profile = {_PROFILE_OF.format(owner='workflow_runs.owner_id')}"
        " where id = %s and owner_id = %s and status = 'failed' returning id",
        (run_id, owner),
    )
    if await cur.fetchone() is None:
        return False
    await _retry_child_steps(conn, run_id, owner)
    await conn.execute(
        "delete from step_checkpoints where run_id = %s and status = 'failed'", (run_id,)
    )
    await conn.execute("delete from step_attempts where run_id = %s", (run_id,))
    return True


async def _retry_child_steps(conn: Conn, run_id: UUID, owner: UUID) -> None:
    """For each failed step of ``run_id`` that waited on a child run: a failed child is
    retried too (resuming from its own failed step) and the step waits for it again, for as
    long as it first did; a child that succeeded after the step gave up on it counts; a child
    that was cancelled (by hand, or because the step timed out) is let go, so the retried step
    starts a new one."""
    cur = await conn.execute(
        "select w.step_id, r.id as child_id, r.status as child_status from run_waits w"
        " join step_checkpoints c on c.run_id = w.run_id and c.step_id = w.step_id"
        "  and c.status = 'failed'"
        " left join workflow_runs r on r.parent_run_id = w.run_id and r.parent_step_id = w.step_id"
        " where w.run_id = %s and w.kind = 'child'",
        (run_id,),
    )
    for row in await cur.fetchall():
        status = row["child_status"]
        if status == "succeeded":  # it ended after the step gave up on it: take its end
            await conn.execute(
                "update run_waits w set timed_out = false, resolved_at = now(),"
                " event = jsonb_build_object('run_id', r.id, 'status', r.status,"
                "  'output', r.output, 'error', r.error)"
                " from workflow_runs r where r.id = %s and w.run_id = %s and w.step_id = %s",
                (row["child_id"], run_id, row["step_id"]),
            )
            continue
        if status == "failed":
            await requeue_failed(conn, row["child_id"], owner)
        if status in ("failed", "queued", "running", "waiting"):
            await conn.execute(
                "update run_waits set resolved_at = null, event = null, timed_out = false,"
                " wake_at = now() + (wake_at - created_at), created_at = now()"
                " where run_id = %s and step_id = %s",
                (run_id, row["step_id"]),
            )
            continue
        await conn.execute(
            "update workflow_runs set parent_step_id = null where id = %s", (row["child_id"],)
        )
        await conn.execute(
            "delete from run_waits where run_id = %s and step_id = %s", (run_id, row["step_id"])
        )


async def queue_stats(conn: Conn, *, timeout_ms: int) -> tuple[int, float]:
    """Runs ready to be claimed now (queued past any back-off, or waiting on a due timer;
    any engine) and how long, in seconds, the longest-ready has been ready (0 when none). One
    range scan of the claim index, cut off by the server after ``timeout_ms``.

    Raises:
        psycopg.errors.QueryCanceled: the statement took longer than ``timeout_ms``.
    """
    async with conn.transaction():
        await conn.execute(f"set local statement_timeout = {int(timeout_ms)}")
        cur = await conn.execute(
            "select count(*) as depth, coalesce(extract(epoch from"
            " now() - min(coalesce(wake_at, created_at))), 0)::float8 as age"
            " from workflow_runs where status in ('queued', 'running', 'waiting')"
            " and coalesce(wake_at, created_at) <= now()"
            " and (status = 'queued' or (status = 'waiting' and wake_at is not null))"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["depth"]), max(0.0, float(row["age"]))
