"""Step checkpoints, attempt counts, timers and event waits of a run.

Every write is fenced on the run's lease (:func:`held`): it succeeds only while the claim that
wrote it (its ``lease_token``, new on every claim) still holds the run and the run is
``running``. A checkpoint and its ``workflow_logs`` row (:mod:`~blueprint_engine.store.logs`)
are written by one statement (:func:`write`, one transaction), keyed by ``(run_id, step_id)``
so a step is recorded at most once; the same statement may carry the results of several steps
of several runs, log rows that record no result, and count their next attempts. Inngest runs
have no lease (``lease`` None): their writes need only an unfinished run.

Outputs must already be storable (:mod:`~blueprint_engine.store.storable`: the engine checks
them and fails the step otherwise); log rows scrub their inputs and errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from blueprint_engine.store import logs as logs_store
from blueprint_engine.store.db import Conn, jsonb
from blueprint_engine.store.logs import LogRow, node_of


class LeaseLost(Exception):
    """The run is no longer held by this claim (lease expired and taken, or run cancelled)."""


@dataclass(frozen=True)
class Lease:
    """One claim of a run: its token, and how far each fenced write extends it (seconds)."""

    token: UUID
    seconds: float


@dataclass
class Checkpoint:
    """A recorded step result."""

    status: str
    output: Any
    error: Any


@dataclass
class Wait:
    """An open or resolved timer/event wait; ``due`` is the database's view at load time."""

    kind: str
    created_at: datetime
    wake_at: datetime
    due: bool
    event: Any
    timed_out: bool
    resolved: bool


@dataclass
class ReplayState:
    """What a run has already done, loaded once per execution; ``attempts``: how many
    attempts of each step were started (finished or not)."""

    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    waits: dict[str, Wait] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)


async def load(conn: Conn, run_id: UUID) -> ReplayState:
    """Checkpoints, waits and prior attempt counts of ``run_id`` (one round trip)."""
    state = ReplayState()
    async with conn.pipeline():
        checkpoints = await conn.execute(
            "select step_id, status, output, error from step_checkpoints where run_id = %s",
            (run_id,),
        )
        waits = await conn.execute(
            "select step_id, kind, created_at, wake_at, wake_at <= now() as due, event,"
            " timed_out, resolved_at is not null as resolved from run_waits where run_id = %s",
            (run_id,),
        )
        attempts = await conn.execute(
            "select step_id, started from step_attempts where run_id = %s", (run_id,)
        )
        for row in await checkpoints.fetchall():
            state.checkpoints[row["step_id"]] = Checkpoint(
                row["status"], row["output"], row["error"]
            )
        for row in await waits.fetchall():
            state.waits[row["step_id"]] = Wait(
                row["kind"],
                row["created_at"],
                row["wake_at"],
                row["due"],
                row["event"],
                row["timed_out"],
                row["resolved"],
            )
        for row in await attempts.fetchall():
            state.attempts[row["step_id"]] = row["started"]
    return state


async def get_checkpoint(conn: Conn, run_id: UUID, step_id: str) -> Checkpoint | None:
    """One recorded step result, or None."""
    cur = await conn.execute(
        "select status, output, error from step_checkpoints where run_id = %s and step_id = %s",
        (run_id, step_id),
    )
    row = await cur.fetchone()
    return None if row is None else Checkpoint(row["status"], row["output"], row["error"])


def held(run: str, token: str) -> str:
    """The lease fence, as an SQL condition: the ``workflow_runs`` row ``run`` (a table name or
    alias) is held by the claim whose token is the SQL expression ``token`` (a ``uuid``): by
    that claim while ``running`` (embedded runner), or, when the token is null (Inngest, which
    runs each step once at a time), by no claim and not finished."""
    return (
        f"(({run}.lease_token = {token} and {run}.status = 'running')"
        f" or ({token} is null and {run}.lease_token is null"
        f" and {run}.status in ('queued', 'running', 'waiting')))"
    )


@dataclass(frozen=True)
class Write:
    """One pass's part of a :func:`write`: log rows in the order things happened, and the step
    whose attempt to count as started, before it runs. A result row (``succeeded``,
    ``failed``, ``skipped``) checkpoints its step with its status; the others (``retrying``,
    ``waiting``) are log rows alone. Either may be empty."""

    run_id: UUID
    lease: Lease | None
    logs: Sequence[LogRow] = ()
    start: str | None = None


@dataclass(frozen=True)
class Written:
    """What :func:`write` did for one :class:`Write`: ``recorded``, the step ids it
    checkpointed (a step already checkpointed, by an earlier replay, is not recorded again,
    nor is its result row logged); ``attempt``, the number of the attempt it counted (1, 2,
    …), or None when it counted none."""

    recorded: frozenset[str]
    attempt: int | None


# The writes and their log rows travel as two JSON arrays (two parameters, one serialization
# each); ``i`` ties a row to its write and ``ordinality`` keeps the rows' order, so their ids
# follow the order things happened in. Runs are locked in id order (as by the heartbeat), so
# two statements that lock several runs never deadlock; a run whose fence fails is not
# locked. A write that records a result (progress) also clears the run's count of failed
# passes.
_WRITE = f"""
with req as (
    select * from jsonb_to_recordset(%(writes)s::jsonb) as q(
        i integer, run_id uuid, token uuid, lease double precision, progress boolean,
        start text)),
held as (
    select w.id, q.i from workflow_runs w join req q on q.run_id = w.id
     where {held("w", "q.token")}
     order by w.id
       for no key update of w),
fence as (
    update workflow_runs w
       set lease_expires_at = case when w.lease_token is null then null
                                   else greatest(w.lease_expires_at,
                                                 now() + make_interval(secs => q.lease)) end,
           status = 'running', updated_at = now(),
           pass_failures = case when q.progress then 0 else w.pass_failures end
      from held h join req q on q.i = h.i
     where w.id = h.id
    returning w.id, w.owner_id, q.i),
results as (
    select * from rows from (jsonb_to_recordset(%(logs)s::jsonb) as (
               i integer, result boolean, {logs_store.RECORD}))
           with ordinality as r),
ck as (
    insert into step_checkpoints (run_id, step_id, node_id, status, output, error)
    select f.id, r.step_id, r.node_id, r.status, r.output, r.error
      from fence f join results r on r.i = f.i
     where r.result
    on conflict do nothing
    returning run_id, step_id),
logged as (
    insert into workflow_logs ({logs_store.COLUMNS})
    select f.id, f.owner_id, r.node_id, r.step_id, r.status, r.attempt, r.input, r.output,
           r.error, r.started_at, r.finished_at, r.duration_ms
      from fence f join results r on r.i = f.i
     where not r.result or (f.id, r.step_id) in (select run_id, step_id from ck)
     order by r.ordinality
    returning 1),
counted as (
    insert into step_attempts (run_id, step_id, started)
    select f.id, q.start, 1 from fence f join req q on q.i = f.i where q.start is not null
    on conflict (run_id, step_id)
    do update set started = step_attempts.started + 1, updated_at = now()
    returning run_id, started)
select q.i, f.id is not null as held,
       array(select ck.step_id from ck where ck.run_id = q.run_id) as recorded,
       (select c.started from counted c where c.run_id = q.run_id) as attempt
  from req q left join fence f on f.i = q.i
"""


async def write(conn: Conn, writes: Sequence[Write]) -> list[Written | None]:
    """Do ``writes`` (of different runs) in one statement, one commit: each checkpoints its
    steps, logs them, counts its attempt and extends its lease, if its claim still holds its
    run (a write whose claim lost the run writes nothing, and its attempt must not run).

    Attempt counts are durable (``synchronous_commit`` as configured): an attempt counted
    before a crash of the worker *or of the database server* stays counted. (Committing it
    without waiting for the WAL flush saves about 0.2 ms, but a server crash right after the
    attempt began then forgets it: seen in the outage test.)

    Returns:
        For each write, in order, what it did, or None when its run was not held.
    """
    cur = await conn.execute(
        _WRITE,
        {
            "writes": jsonb(
                [
                    {
                        "i": i,
                        "run_id": str(w.run_id),
                        "token": None if w.lease is None else str(w.lease.token),
                        "lease": 0 if w.lease is None else w.lease.seconds,
                        "progress": any(row.is_result for row in w.logs),
                        "start": w.start,
                    }
                    for i, w in enumerate(writes)
                ]
            ),
            "logs": jsonb(
                [
                    {"i": i, "result": row.is_result, **row.as_json()}
                    for i, w in enumerate(writes)
                    for row in w.logs
                ]
            ),
        },
    )
    done: list[Written | None] = [None] * len(writes)
    for row in await cur.fetchall():
        if row["held"]:
            done[row["i"]] = Written(frozenset(row["recorded"]), row["attempt"])
    return done


async def write_one(conn: Conn, one: Write) -> Written:
    """:func:`write` of one write, alone.

    Raises:
        LeaseLost: its claim no longer holds its run (nothing was written).
    """
    [written] = await write(conn, [one])
    if written is None:
        raise LeaseLost(str(one.run_id))
    return written


async def record_skipped(
    conn: Conn, run_id: UUID, lease: Lease | None, node_ids: list[str], at: datetime
) -> None:
    """Checkpoint and log nodes (by step id) that will not run (branch not taken), once each;
    a loop body's step ``each.3.send`` is logged as node ``send``. Nodes all
    recorded already (a replay) make it a no-op, whatever the run's state.

    Raises:
        LeaseLost: the run is no longer held by this claim and there was something to record.
    """
    rows = [LogRow.skipped(node_id, at) for node_id in node_ids]
    [written] = await write(conn, [Write(run_id, lease, rows)])
    if written is None and not await _all_checkpointed(conn, run_id, node_ids):
        raise LeaseLost(str(run_id))


async def _all_checkpointed(conn: Conn, run_id: UUID, step_ids: list[str]) -> bool:
    cur = await conn.execute(
        "select count(*) as n from step_checkpoints where run_id = %s and step_id = any(%s)",
        (run_id, step_ids),
    )
    row = await cur.fetchone()
    return row is not None and row["n"] == len(set(step_ids))


async def open_wait(
    conn: Conn,
    run_id: UUID,
    lease: Lease | None,
    *,
    step_id: str,
    kind: str,
    seconds: float,
    event_name: str | None = None,
    match: str | None = None,
    context: Any = None,
) -> datetime:
    """Start a timer or event wait and log it as ``waiting`` (input: the seconds, and for an
    event wait its name and match). Returns its wake-up time.

    Idempotent: an existing wait for the step is kept and its wake-up time returned.

    Raises:
        LeaseLost: the run is no longer held by this claim.
    """
    now = datetime.now(UTC)
    waiting: dict[str, Any] = {"seconds": seconds}
    if kind == "event":
        waiting.update(event_name=event_name, match=match)
    async with conn.transaction():
        await write_one(conn, Write(run_id, lease, [LogRow.waiting(step_id, now, input=waiting)]))
        cur = await conn.execute(
            "insert into run_waits (run_id, owner_id, step_id, node_id, kind, event_name, match,"
            " context, wake_at) select id, owner_id, %s, %s, %s, %s, %s, %s,"
            " now() + make_interval(secs => %s) from workflow_runs where id = %s"
            " on conflict (run_id, step_id) do update set run_id = excluded.run_id"
            " returning wake_at",
            (step_id, node_of(step_id), kind, event_name, match, jsonb(context), seconds, run_id),
        )
        row = await cur.fetchone()
    assert row is not None
    wake_at: datetime = row["wake_at"]
    return wake_at


async def time_out_wait(conn: Conn, run_id: UUID, step_id: str) -> Any:
    """Resolve a due event wait as timed out, unless an event won the race.

    Returns:
        None when it timed out, else the event that resolved it.
    """
    cur = await conn.execute(
        "update run_waits set resolved_at = now(), timed_out = true"
        " where run_id = %s and step_id = %s and resolved_at is null returning run_id",
        (run_id, step_id),
    )
    if await cur.fetchone() is not None:
        return None
    cur = await conn.execute(
        "select event, timed_out from run_waits where run_id = %s and step_id = %s",
        (run_id, step_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return None if row["timed_out"] else row["event"]


async def move_sleep(conn: Conn, run_id: UUID, step_id: str, wake_at: datetime) -> bool:
    """Move the timer of ``run_id``'s sleep step ``step_id`` to ``wake_at``, if the run has not
    got past it; call inside a transaction (it locks the run, so no runner claims it meanwhile).

    - a parked timer that is not due yet: its ``run_waits.wake_at`` and, if the run is parked
      on it (``waiting``), the run's ``wake_at`` move;
    - no timer yet: a run that is not ``running`` opens it when a runner next claims it, after
      this transaction (nothing to do); a ``running`` pass may be about to open it, so it is
      opened here with ``wake_at`` (the pass's own opening keeps an existing timer).

    Only embedded runs (lease-fenced, timers in ``run_waits``): Inngest holds its own sleeps.

    Returns:
        True when the run will wake no earlier than ``wake_at``; False when it cannot: unknown,
        finished, not embedded, the step done, or its timer already due (a pass may be past it).
    """
    cur = await conn.execute(
        "select r.status, r.engine, w.wake_at is not null as opened, w.wake_at > now() as pending,"
        " exists (select 1 from step_checkpoints k where k.run_id = r.id and k.step_id = %(step)s)"
        " as done"
        " from workflow_runs r left join run_waits w on w.run_id = r.id and w.step_id = %(step)s"
        " where r.id = %(run_id)s for update of r",
        {"run_id": run_id, "step": step_id},
    )
    run = await cur.fetchone()
    if (
        run is None
        or run["status"] not in ("queued", "running", "waiting")
        or run["engine"] != "embedded"
        or run["done"]
    ):
        return False
    if not run["opened"]:
        if run["status"] == "running":
            # The pass may open it between the select above and here (it does not lock the
            # run row): then this later wake-up replaces the one it wrote.
            await conn.execute(
                "insert into run_waits (run_id, owner_id, step_id, node_id, kind, wake_at)"
                " select id, owner_id, %s, %s, 'sleep', %s from workflow_runs where id = %s"
                " on conflict (run_id, step_id) do update set wake_at = excluded.wake_at"
                " where run_waits.resolved_at is null",
                (step_id, step_id, wake_at, run_id),
            )
        return True
    if not run["pending"]:
        return False
    await conn.execute(
        "update run_waits set wake_at = %s where run_id = %s and step_id = %s",
        (wake_at, run_id, step_id),
    )
    await conn.execute(
        "update workflow_runs set wake_at = %s, updated_at = now()"
        " where id = %s and status = 'waiting'",
        (wake_at, run_id),
    )
    return True
