"""Step checkpoints, log rows, timers and event waits of a run.

Every write is fenced on the run's lease: it succeeds only while ``lease_owner`` still holds the
run and the run is ``running``. A checkpoint and its log row are one statement (one
transaction), keyed by ``(run_id, step_id)`` so a step is recorded at most once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from backend.app.store.db import Conn, jsonb


class LeaseLost(Exception):
    """The run is no longer held by this worker (lease expired and taken, or run cancelled)."""


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
    """What a run has already done, loaded once per execution."""

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
    """Checkpoints, waits and prior attempt counts of ``run_id``."""
    state = ReplayState()
    cur = await conn.execute(
        "select step_id, status, output, error from step_checkpoints where run_id = %s", (run_id,)
    )
    for row in await cur.fetchall():
        state.checkpoints[row["step_id"]] = Checkpoint(row["status"], row["output"], row["error"])
    cur = await conn.execute(
        "select step_id, kind, created_at, wake_at, wake_at <= now() as due, event, timed_out,"
        " resolved_at is not null as resolved from run_waits where run_id = %s",
        (run_id,),
    )
    for row in await cur.fetchall():
        state.waits[row["step_id"]] = Wait(
            row["kind"],
            row["created_at"],
            row["wake_at"],
            row["due"],
            row["event"],
            row["timed_out"],
            row["resolved"],
        )
    cur = await conn.execute(
        "select step_id, max(attempt) as attempts from workflow_logs"
        " where run_id = %s and status = 'retrying' group by step_id",
        (run_id,),
    )
    for row in await cur.fetchall():
        state.attempts[row["step_id"]] = row["attempts"]
    return state


async def get_checkpoint(conn: Conn, run_id: UUID, step_id: str) -> Checkpoint | None:
    """One recorded step result, or None."""
    cur = await conn.execute(
        "select status, output, error from step_checkpoints where run_id = %s and step_id = %s",
        (run_id, step_id),
    )
    row = await cur.fetchone()
    return None if row is None else Checkpoint(row["status"], row["output"], row["error"])


# A write is allowed while the run is held: by ``owner``'s lease (embedded runner), or, when
# ``owner`` is None (Inngest, which runs each step once), by no one and not finished.
_FENCE = """
with fence as (
    update workflow_runs
       set lease_expires_at = case when lease_owner is null then null
                                   else greatest(lease_expires_at,
                                                 now() + make_interval(secs => %(lease)s)) end,
           status = 'running', updated_at = now()
     where id = %(run_id)s
       and ((lease_owner = %(owner)s and status = 'running')
            or (%(owner)s::text is null and lease_owner is null
                and status in ('queued', 'running', 'waiting')))
    returning id)
"""

_LOG_COLUMNS = (
    "run_id, node_id, step_id, status, attempt, input, output, error,"
    " started_at, finished_at, duration_ms"
)
_LOG_VALUES = (
    "%(node_id)s, %(step_id)s, %(log_status)s, %(attempt)s, %(input)s, %(output)s, %(error)s,"
    " %(started_at)s, %(finished_at)s, %(duration_ms)s"
)


def _params(run_id: UUID, owner: str | None, lease: float, log: LogRow) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "owner": owner,
        "lease": lease,
        "node_id": log.node_id,
        "step_id": log.step_id,
        "log_status": log.status,
        "attempt": log.attempt,
        "input": jsonb(log.input),
        "output": jsonb(log.output),
        "error": jsonb(log.error),
        "started_at": log.started_at,
        "finished_at": log.finished_at,
        "duration_ms": log.duration_ms,
    }


async def record(
    conn: Conn,
    run_id: UUID,
    owner: str | None,
    lease: float,
    *,
    checkpoint_status: str,
    log: LogRow,
) -> bool:
    """Write a step's checkpoint and its log row in one statement.

    Returns:
        False when the step was already checkpointed (by an earlier replay).

    Raises:
        LeaseLost: the run is no longer held by ``owner``.
    """
    cur = await conn.execute(
        _FENCE
        + """,
        ck as (
            insert into step_checkpoints (run_id, step_id, node_id, status, output, error)
            select id, %(step_id)s, %(node_id)s, %(ck_status)s, %(output)s, %(error)s from fence
            on conflict do nothing
            returning run_id)
        insert into workflow_logs ("""
        + _LOG_COLUMNS
        + ") select run_id, "
        + _LOG_VALUES
        + """ from ck
        returning 1""",
        {**_params(run_id, owner, lease, log), "ck_status": checkpoint_status},
    )
    row = await cur.fetchone()
    if row is not None:
        return True
    await _check_fence(conn, run_id, owner)
    return False


async def log_attempt(
    conn: Conn, run_id: UUID, owner: str | None, lease: float, log: LogRow
) -> None:
    """Write a log row without a checkpoint (a failed attempt that will be retried, a wait start).

    Raises:
        LeaseLost: the run is no longer held by ``owner``.
    """
    cur = await conn.execute(
        _FENCE
        + "insert into workflow_logs ("
        + _LOG_COLUMNS
        + ") select id, "
        + _LOG_VALUES
        + " from fence returning id",
        _params(run_id, owner, lease, log),
    )
    if await cur.fetchone() is None:
        raise LeaseLost(str(run_id))


async def _check_fence(conn: Conn, run_id: UUID, owner: str | None) -> None:
    cur = await conn.execute(
        "select 1 from workflow_runs where id = %(run_id)s and ((lease_owner = %(owner)s"
        " and status = 'running') or (%(owner)s::text is null and lease_owner is null"
        " and status in ('queued', 'running', 'waiting')))",
        {"run_id": run_id, "owner": owner},
    )
    if await cur.fetchone() is None:
        raise LeaseLost(str(run_id))


async def record_skipped(
    conn: Conn, run_id: UUID, owner: str | None, lease: float, node_ids: list[str], at: datetime
) -> None:
    """Checkpoint and log nodes that will not run (branch not taken), once each. Nodes all
    recorded already (a replay) make it a no-op, whatever the run's state.

    Raises:
        LeaseLost: the run is no longer held by ``owner`` and there was something to record.
    """
    cur = await conn.execute(
        _FENCE
        + """,
        ck as (
            insert into step_checkpoints (run_id, step_id, node_id, status)
            select fence.id, n, n, 'skipped' from fence, unnest(%(nodes)s::text[]) as n
            on conflict do nothing
            returning run_id, node_id)
        insert into workflow_logs (run_id, node_id, step_id, status, attempt, started_at,
                                   finished_at, duration_ms)
        select run_id, node_id, node_id, 'skipped', 0, %(at)s, %(at)s, 0 from ck
        returning 1""",
        {"run_id": run_id, "owner": owner, "lease": lease, "nodes": node_ids, "at": at},
    )
    if await cur.fetchone() is None and not await _all_checkpointed(conn, run_id, node_ids):
        await _check_fence(conn, run_id, owner)


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
    owner: str | None,
    lease: float,
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
        LeaseLost: the run is no longer held by ``owner``.
    """
    now = datetime.now(UTC)
    waiting: dict[str, Any] = {"seconds": seconds}
    if kind == "event":
        waiting.update(event_name=event_name, match=match)
    log = LogRow(step_id, step_id, "waiting", 1, now, now, input=waiting)
    async with conn.transaction():
        await log_attempt(conn, run_id, owner, lease, log)
        cur = await conn.execute(
            "insert into run_waits (run_id, step_id, node_id, kind, event_name, match, context,"
            " wake_at) values (%s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
            " on conflict (run_id, step_id) do update set run_id = excluded.run_id"
            " returning wake_at",
            (run_id, log.step_id, log.node_id, kind, event_name, match, jsonb(context), seconds),
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
