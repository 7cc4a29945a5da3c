"""The ``workflow_logs`` table: one row per step attempt, wait and skipped node of a run.

A row is written with the step's checkpoint when it records a result (``succeeded``, ``failed``,
``skipped``: :func:`blueprint_engine.store.steps.write`, which takes the row's JSON form and
columns from here), or alone (``retrying``, ``waiting``). Rows are read back in write order
(their ``id``), which is the order the steps finished in.

Inputs and errors are diagnostics and are scrubbed on the way in
(:func:`~blueprint_engine.store.storable.scrub`); outputs must already be storable (the engine
checks them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn
from blueprint_engine.store.storable import scrub

LogStatus = Literal["succeeded", "failed", "skipped", "retrying", "waiting"]

#: Statuses whose row records the step's result, so is written with its checkpoint.
RESULTS: frozenset[str] = frozenset({"succeeded", "failed", "skipped"})

#: The columns a write fills, in the order of :data:`RECORD` after ``run_id, owner_id``.
COLUMNS = (
    "run_id, owner_id, node_id, step_id, status, attempt, input, output, error,"
    " started_at, finished_at, duration_ms"
)

#: A row's JSON form (:meth:`LogRow.as_json`) as a ``jsonb_to_recordset`` column list.
RECORD = (
    "node_id text, step_id text, status text, attempt integer, input jsonb, output jsonb,"
    " error jsonb, started_at timestamptz, finished_at timestamptz, duration_ms double precision"
)


def _now() -> datetime:
    return datetime.now(UTC)


def node_of(step_id: str) -> str:
    """The node a step id belongs to: ``send`` for ``send`` and for ``each.3.send`` (a step of
    a loop's body is ``<foreach id>.<item index>.<step id>``), ``each`` for ``each.3`` (an
    item of a loop over a saved workflow). Node ids hold no dots and never start with a digit.
    """
    head, _, last = step_id.rpartition(".")
    if last.isdigit():
        return head.rpartition(".")[2]
    return last


@dataclass(frozen=True, kw_only=True)
class LogRow:
    """One row of ``workflow_logs``. Build it with the constructor for its status
    (:meth:`succeeded`, :meth:`failed`, :meth:`retrying`, :meth:`skipped`, :meth:`waiting`);
    a step's node id is its step id. ``attempt``: 1, 2, … (0 for a skipped node); times are
    aware datetimes; ``finished`` defaults to now."""

    node_id: str
    step_id: str
    status: LogStatus
    attempt: int
    started_at: datetime
    finished_at: datetime
    input: Any = None
    output: Any = None
    error: Any = None

    @classmethod
    def succeeded(
        cls,
        step_id: str,
        attempt: int,
        started: datetime,
        *,
        input: Any = None,
        output: Any = None,
        finished: datetime | None = None,
    ) -> LogRow:
        """The attempt that produced the step's output."""
        return cls(
            node_id=node_of(step_id),
            step_id=step_id,
            status="succeeded",
            attempt=attempt,
            started_at=started,
            finished_at=_now() if finished is None else finished,
            input=input,
            output=output,
        )

    @classmethod
    def failed(
        cls,
        step_id: str,
        attempt: int,
        started: datetime,
        *,
        error: dict[str, Any],
        input: Any = None,
        finished: datetime | None = None,
    ) -> LogRow:
        """The attempt after which the step failed for good (``error``: code, message, …)."""
        return cls(
            node_id=node_of(step_id),
            step_id=step_id,
            status="failed",
            attempt=attempt,
            started_at=started,
            finished_at=_now() if finished is None else finished,
            input=input,
            error=error,
        )

    @classmethod
    def retrying(
        cls,
        step_id: str,
        attempt: int,
        started: datetime,
        *,
        error: dict[str, Any],
        input: Any = None,
    ) -> LogRow:
        """An attempt that failed and will be tried again (no checkpoint)."""
        return cls(
            node_id=node_of(step_id),
            step_id=step_id,
            status="retrying",
            attempt=attempt,
            started_at=started,
            finished_at=_now(),
            input=input,
            error=error,
        )

    @classmethod
    def skipped(cls, step_id: str, at: datetime) -> LogRow:
        """A node that will not run (its branch was not taken): attempt 0, no duration."""
        return cls(
            node_id=node_of(step_id),
            step_id=step_id,
            status="skipped",
            attempt=0,
            started_at=at,
            finished_at=at,
        )

    @classmethod
    def waiting(cls, step_id: str, at: datetime, *, input: dict[str, Any]) -> LogRow:
        """A timer or event wait that began (no checkpoint); ``input`` says what it waits for."""
        return cls(
            node_id=node_of(step_id),
            step_id=step_id,
            status="waiting",
            attempt=1,
            started_at=at,
            finished_at=at,
            input=input,
        )

    @property
    def is_result(self) -> bool:
        """Whether the row records the step's result (and is written with its checkpoint)."""
        return self.status in RESULTS

    @property
    def duration_ms(self) -> float:
        """Wall time of the attempt in milliseconds."""
        return (self.finished_at - self.started_at).total_seconds() * 1000

    def as_json(self) -> dict[str, Any]:
        """The row as JSON for a ``jsonb_to_recordset`` of :data:`RECORD` (input and error
        scrubbed)."""
        return {
            "node_id": self.node_id,
            "step_id": self.step_id,
            "status": self.status,
            "attempt": self.attempt,
            "input": scrub(self.input),
            "output": self.output,
            "error": scrub(self.error),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_ms": self.duration_ms,
        }


async def page(conn: Conn, run_id: UUID, *, after_id: int, limit: int) -> list[DictRow]:
    """Up to ``limit`` rows of a run in write order, after the row ``after_id`` (0: from the
    first)."""
    cur = await conn.execute(
        "select id, node_id, step_id, status, attempt, input, output, error, started_at,"
        " finished_at, duration_ms from workflow_logs where run_id = %s and id > %s"
        " order by id limit %s",
        (run_id, after_id, limit),
    )
    return await cur.fetchall()


async def of_runs(conn: Conn, run_ids: list[UUID]) -> list[DictRow]:
    """Every row of these runs, by run and write order (each row also has ``run_id``)."""
    cur = await conn.execute(
        "select id, run_id, node_id, step_id, status, attempt, input, output, error,"
        " started_at, finished_at, duration_ms from workflow_logs where run_id = any(%s)"
        " order by run_id, id",
        (run_ids,),
    )
    return await cur.fetchall()


async def latest_by_node(conn: Conn, run_id: UUID) -> list[DictRow]:
    """The latest row of every node of a run that has one (no ``id``, ``step_id``)."""
    cur = await conn.execute(
        "select distinct on (node_id) node_id, status, attempt, input, output, error,"
        " started_at, finished_at, duration_ms from workflow_logs where run_id = %s"
        " order by node_id, id desc",
        (run_id,),
    )
    return await cur.fetchall()
