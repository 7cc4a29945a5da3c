"""Step checkpoints, attempts, log rows, timers and event waits of a run.

Every write is fenced on the run's lease: it succeeds only while the claim that wrote it (its
``lease_token``, new on every claim) still holds the run and the run is ``running``. A
checkpoint and its log row are written by one statement (:func:`write`, one transaction),
keyed by ``(run_id, step_id)`` so a step is recorded at most once; the same statement may
carry the results of several steps of several runs, and count their next attempts. Inngest
runs have no lease (``lease`` None): their writes need only an unfinished run.

Values are written through :mod:`~blueprint_engine.store.storable`: outputs must already be
storable (the engine checks them and fails the step otherwise); inputs and errors, which are
diagnostics, are scrubbed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from blueprint_engine.store.db import Conn, jsonb
from blueprint_engine.store.storable import scrub


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


@dataclass(frozen=True)
class LogRow:
    """One step attempt as written to ``workflow_logs``."""

    node_id: str
    step_id: str
    status: str
    attempt: int
    started_at: datetime
    finished_at: datetime
    input: Any = None
    output: Any = None
    error: Any = None

    @property
    def duration_ms(self) -> float:
        """Wall time of the attempt in milliseconds."""
        return (self.finished_at - self.started_at).total_seconds() * 1000


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


# A write is allowed while the run is held: by the claim with ``token`` (embedded runner), or,
# when ``token`` is None (Inngest, which runs each step once), by no one and not finished. A
# write that records progress (a step's result) also clears the run's count of failed passes.
_FENCE = """
with fence as (
    update workflow_runs
       set lease_expires_at = case when lease_token is null then null
                                   else greatest(lease_expires_at,
                                                 now() + make_interval(secs => %(lease)s)) end,
           status = 'running', updated_at = now() {progress}
     where id = %(run_id)s
       and ((lease_token = %(token)s and status = 'running')
            or (%(token)s::uuid is null and lease_token is null
                and status in ('queued', 'running', 'waiting')))
    returning id, owner_id)
"""
_PROGRESS_FENCE = _FENCE.format(progress=", pass_failures = 0")
_FENCE = _FENCE.format(progress="")


def _lease(run_id: UUID, lease: Lease | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "token": None if lease is None else lease.token,
        "lease": 0 if lease is None else lease.seconds,
    }


_LOG_COLUMNS = (
    "run_id, owner_id, node_id, step_id, status, attempt, input, output, error,"
    " started_at, finished_at, duration_ms"
)
_LOG_VALUES = (
    "%(node_id)s, %(step_id)s, %(log_status)s, %(attempt)s, %(input)s, %(output)s, %(error)s,"
    " %(started_at)s, %(finished_at)s, %(duration_ms)s"
)


def _params(run_id: UUID, lease: Lease | None, log: LogRow) -> dict[str, Any]:
    return {
        **_lease(run_id, lease),
        "node_id": log.node_id,
        "step_id": log.step_id,
        "log_status": log.status,
        "attempt": log.attempt,
        "input": jsonb(scrub(log.input)),
        "output": jsonb(log.output),
        "error": jsonb(scrub(log.error)),
        "started_at": log.started_at,
        "finished_at": log.finished_at,
        "duration_ms": log.duration_ms,
    }


@dataclass(frozen=True)
class Write:
    """One pass's part of a :func:`write`: finished steps to checkpoint, each with its log row
    (the checkpoint's status is the row's: ``succeeded``, ``failed`` or ``skipped``), and the
    step whose attempt to count as started, before it runs. Either may be empty."""

    run_id: UUID
    lease: Lease | None
    logs: Sequence[LogRow] = ()
    start: str | None = None


@dataclass(frozen=True)
class Written:
    """What :func:`write` did for one :class:`Write`: ``recorded``, the step ids it
    checkpointed (a step already checkpointed, by an earlier replay, is not recorded again);
    ``attempt``, the number of the attempt it counted (1, 2, …), or None when it counted none."""

    recorded: frozenset[str]
    attempt: int | None


# The writes and their log rows travel as two JSON arrays (two parameters, one serialization
# each); ``i`` ties a row to its write and ``n`` keeps the rows' order, so their ids follow the
# order the steps finished in. Runs are locked in id order (as by the heartbeat), so two
# statements that lock several runs never deadlock; a run whose fence fails is not locked.
_WRITE = """
with req as (
    select * from jsonb_to_recordset(%(writes)s::jsonb) as q(
        i integer, run_id uuid, token uuid, lease double precision, progress boolean,
        start text)),
held as (
    select w.id, q.i from workflow_runs w join req q on q.run_id = w.id
     where (w.lease_token = q.token and w.status = 'running')
        or (q.token is null and w.lease_token is null
            and w.status in ('queued', 'running', 'waiting'))
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
               i integer, step_id text, node_id text, status text, attempt integer,
               input jsonb, output jsonb, error jsonb, started_at timestamptz,
               finished_at timestamptz, duration_ms double precision))
           with ordinality as r(i, step_id, node_id, status, attempt, input, output, error,
                                started_at, finished_at, duration_ms, n)),
ck as (
    insert into step_checkpoints (run_id, step_id, node_id, status, output, error)
    select f.id, r.step_id, r.node_id, r.status, r.output, r.error
      from fence f join results r on r.i = f.i
    on conflict do nothing
    returning run_id, step_id),
logs as (
    insert into workflow_logs ("""
_WRITE += _LOG_COLUMNS
_WRITE += """)
    select f.id, f.owner_id, r.node_id, r.step_id, r.status, r.attempt, r.input, r.output,
           r.error, r.started_at, r.finished_at, r.duration_ms
      from fence f join results r on r.i = f.i
     where (f.id, r.step_id) in (select run_id, step_id from ck)
     order by r.n
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


def _log_json(i: int, log: LogRow) -> dict[str, Any]:
    return {
        "i": i,
        "step_id": log.step_id,
        "node_id": log.node_id,
        "status": log.status,
        "attempt": log.attempt,
        "input": scrub(log.input),
        "output": log.output,
        "error": scrub(log.error),
        "started_at": log.started_at.isoformat(),
        "finished_at": log.finished_at.isoformat(),
        "duration_ms": log.duration_ms,
    }


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
                        "progress": bool(w.logs),
                        "start": w.start,
                    }
                    for i, w in enumerate(writes)
                ]
            ),
            "logs": jsonb([_log_json(i, log) for i, w in enumerate(writes) for log in w.logs]),
        },
    )
    done: list[Written | None] = [None] * len(writes)
    for row in await cur.fetchall():
        if row["held"]:
            done[row["i"]] = Written(frozenset(row["recorded"]), row["attempt"])
    return done


async def log_attempt(conn: Conn, run_id: UUID, lease: Lease | None, log: LogRow) -> None:
    """Write a log row without a checkpoint (a failed attempt that will be retried, a wait start).

    Raises:
        LeaseLost: the run is no longer held by this claim.
    """
    cur = await conn.execute(
        _FENCE
        + "insert into workflow_logs ("
        + _LOG_COLUMNS
        + ") select id, owner_id, "
        + _LOG_VALUES
        + " from fence returning id",
        _params(run_id, lease, log),
    )
    if await cur.fetchone() is None:
        raise LeaseLost(str(run_id))


async def _check_fence(conn: Conn, run_id: UUID, lease: Lease | None) -> None:
    cur = await conn.execute(
        "select 1 from workflow_runs where id = %(run_id)s and ((lease_token = %(token)s"
        " and status = 'running') or (%(token)s::uuid is null and lease_token is null"
        " and status in ('queued', 'running', 'waiting')))",
        _lease(run_id, lease),
    )
    if await cur.fetchone() is None:
        raise LeaseLost(str(run_id))


async def record_skipped(
    conn: Conn, run_id: UUID, lease: Lease | None, node_ids: list[str], at: datetime
) -> None:
    """Checkpoint and log nodes (by step id) that will not run (branch not taken), once each;
    a loop body's step ``each.3.send`` is logged as node ``send``. Nodes all
    recorded already (a replay) make it a no-op, whatever the run's state.

    Raises:
        LeaseLost: the run is no longer held by this claim and there was something to record.
    """
    cur = await conn.execute(
        _PROGRESS_FENCE
        + """,
        ck as (
            insert into step_checkpoints (run_id, step_id, node_id, status)
            select fence.id, n, regexp_replace(n, '^.*[.]', ''), 'skipped'
              from fence, unnest(%(nodes)s::text[]) as n
            on conflict do nothing
            returning run_id, step_id, node_id)
        insert into workflow_logs (run_id, owner_id, node_id, step_id, status, attempt,
                                   started_at, finished_at, duration_ms)
        select ck.run_id, fence.owner_id, ck.node_id, ck.step_id, 'skipped', 0, %(at)s, %(at)s, 0
          from ck, fence
        returning 1""",
        {**_lease(run_id, lease), "nodes": node_ids, "at": at},
    )
    if await cur.fetchone() is None and not await _all_checkpointed(conn, run_id, node_ids):
        await _check_fence(conn, run_id, lease)


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
    log = LogRow(step_id.rpartition(".")[2], step_id, "waiting", 1, now, now, input=waiting)
    async with conn.transaction():
        await log_attempt(conn, run_id, lease, log)
        cur = await conn.execute(
            "insert into run_waits (run_id, owner_id, step_id, node_id, kind, event_name, match,"
            " context, wake_at) select id, owner_id, %s, %s, %s, %s, %s, %s,"
            " now() + make_interval(secs => %s) from workflow_runs where id = %s"
            " on conflict (run_id, step_id) do update set run_id = excluded.run_id"
            " returning wake_at",
            (log.step_id, log.node_id, kind, event_name, match, jsonb(context), seconds, run_id),
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
