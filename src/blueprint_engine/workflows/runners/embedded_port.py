"""The embedded runner's step port: one pass of a claimed run, recorded in PostgreSQL.

- Attempts are counted durably, fenced on the pass's lease, before they run (unless the step
  is pure): an action runs at most ``max_attempts`` times, crashes included, and a pass that
  lost its run stops at the latest before its next action. A step whose every allowed
  attempt began and never finished fails with ``attempt_lost``.
- A failed attempt that may be retried is retried in this process, after the pause of
  :class:`~blueprint_engine.workflows.runners.recorder.StepRecorder`.
- A step's result (checkpoint and ``workflow_logs`` row) is held back and written by the
  pass's next write, usually the attempt count of the action that follows; the writes of
  concurrent passes share statements (:mod:`.writer`, group commit).
- Delays and waits are rows in ``run_waits``: the step suspends until its timer is due or an
  event resolved it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from blueprint_engine.store import children
from blueprint_engine.store import steps as steps_store
from blueprint_engine.store.db import Pool
from blueprint_engine.store.logs import LogRow
from blueprint_engine.store.steps import Lease
from blueprint_engine.workflows.runners.recorder import Pause, StepRecorder, replay
from blueprint_engine.workflows.runners.writer import StepWriter
from blueprint_engine.workflows.steps import (
    ChildRun,
    Retry,
    StepFailed,
    StepFn,
    Suspended,
    child_error,
)

#: Called with (run_id, node_id, event, detail) as steps start and finish; for live displays.
StepObserver = Callable[[UUID, str, str, dict[str, Any]], None]


def _now() -> datetime:
    return datetime.now(UTC)


class EmbeddedPort:
    """:class:`~blueprint_engine.workflows.engine.StepPort` over PostgreSQL for one run pass.

    A step's result (checkpoint and log row) is held back and written by the pass's next
    write: usually the attempt count of the action that follows it, so a chain of actions
    commits once a step; else by :meth:`flush`. Writes of a pass are serialized and each
    carries every result held so far, so a result is durable before any step that started
    after it counts its attempt, i.e. before that step's side effect. Those writes go through
    the runner's :class:`StepWriter`, which commits the writes of concurrent passes together.
    Observers hear of a result once it is written.

    Args:
        retry_after_max: the longest pause before a retry that a ``Retry-After`` may ask for
            (seconds, ``RETRY_AFTER_MAX_SECONDS``).
    """

    def __init__(
        self,
        pool: Pool,
        writer: StepWriter,
        run_id: UUID,
        lease: Lease,
        state: steps_store.ReplayState,
        observer: StepObserver | None = None,
        *,
        retry_after_max: float,
    ) -> None:
        self.pool = pool
        self.writer = writer
        self.run_id = run_id
        self.lease = lease
        self.state = state
        self.observer = observer
        self._recorder = StepRecorder(self, retry_after_max)
        self._held: list[tuple[LogRow, dict[str, Any]]] = []
        self._ever_held = 0  # results held since the pass began
        self._written = 0  # of those, how many a write took
        self._writing = asyncio.Lock()  # one write of the pass at a time, in order

    def _notify(self, node_id: str, event: str, **detail: Any) -> None:
        if self.observer is not None:
            self.observer(self.run_id, node_id, event, detail)

    def _hold(self, log_row: LogRow, **detail: Any) -> None:
        """Keep a step's result for the next write; ``detail`` is for the observer."""
        self._held.append((log_row, detail))
        self._ever_held += 1

    async def _write_held(self, start: str | None = None, then: LogRow | None = None) -> int | None:
        """Write the held results, then the log row ``then``, and, if ``start``, count an
        attempt of that step (its number is returned). The caller holds ``_writing``.

        Raises:
            LeaseLost: the run is no longer held by this claim.
        """
        held, self._held = self._held, []
        self._written += len(held)
        rows = [row for row, _ in held]
        if then is not None:
            rows.append(then)
        if not rows and start is None:
            return None
        written = await self.writer.write(steps_store.Write(self.run_id, self.lease, rows, start))
        for row, detail in held:
            self._notify(row.step_id, row.status, **detail)
        return written.attempt

    async def flush(self) -> None:
        """Write the results held now, unless another write takes them first.

        Raises:
            LeaseLost: the run is no longer held by this claim.
        """
        wanted = self._ever_held
        if self._written >= wanted:
            return
        async with self._writing:
            if self._written < wanted:
                await self._write_held()

    # -- actions, triggers, routers, ends ------------------------------------------------

    async def run(self, step_id: str, fn: StepFn, retry: Retry, *, pure: bool = False) -> Any:
        """Replay the checkpoint, else run ``fn``; retry per ``retry``, logging every attempt.

        Unless ``pure``, each attempt is counted (fenced on the lease) before it runs, so
        attempts whose process died count too, and a pass that lost its lease stops here.
        The result is held back for the next write (see the class).
        """
        checkpoint = self.state.checkpoints.get(step_id)
        if checkpoint is not None:
            return replay(checkpoint)
        started = self.state.attempts.get(step_id, 0)
        if started >= retry.max_attempts:
            self._attempts_lost(step_id, started)
        result = await self._recorder.run(
            step_id, fn, retry, first=started + 1, limit=retry.max_attempts, pure=pure
        )
        return replay(result)

    async def begin(self, step_id: str, attempt: int, *, pure: bool) -> int:
        """Unless ``pure``, write the held results and count an attempt of ``step_id``; its
        number (durable, so a crashed attempt counts) is the one returned.

        Raises:
            LeaseLost: the run is no longer held by this claim.
        """
        if not pure:
            async with self._writing:
                counted = await self._write_held(start=step_id)
            assert counted is not None
            attempt = counted
        self._notify(step_id, "started", attempt=attempt)
        return attempt

    async def retry(self, row: LogRow, pause: Pause) -> None:
        """Write the ``retrying`` row after the held results (log rows stay in the order
        things happened), then wait ``pause.seconds`` here.

        Raises:
            LeaseLost: the run is no longer held by this claim.
        """
        async with self._writing:
            await self._write_held(then=row)
        self._notify(row.step_id, "retrying", attempt=row.attempt, error=row.error)
        await asyncio.sleep(pause.seconds)

    async def record(self, row: LogRow) -> LogRow:
        """Hold the step's result for the next write."""
        if row.status == "succeeded":
            self._hold(row, attempt=row.attempt, duration_ms=row.duration_ms)
        else:
            self._hold(row, attempt=row.attempt, error=row.error)
        return row

    def _attempts_lost(self, step_id: str, started: int) -> NoReturn:
        """Every allowed attempt was started and the last never finished (its process died or
        lost the run): fail the step rather than run it once more than allowed.

        Raises:
            StepFailed: always (the failure is held for the next write).
        """
        error = {
            "code": "attempt_lost",
            "message": f"attempt {started} was interrupted before it finished (its worker "
            "stopped or lost the run) and no attempts are left",
            "attempts": started,
        }
        now = _now()
        self._hold(
            LogRow.failed(step_id, started, now, error=error, finished=now),
            attempt=started,
            error=error,
        )
        raise StepFailed(error)

    # -- delays, waits, skipped nodes ----------------------------------------------------

    async def sleep(self, step_id: str, seconds: float) -> None:
        """Durable timer backed by ``run_waits``."""
        if step_id in self.state.checkpoints:
            return
        wait = self.state.waits.get(step_id)
        if wait is None:
            await self._open_wait(step_id, "sleep", seconds)
        assert wait is not None
        if not wait.due:
            raise Suspended(wait.wake_at)
        began = wait.wake_at - timedelta(seconds=seconds)
        self._hold(LogRow.succeeded(step_id, 1, began, output={"slept_seconds": seconds}))

    async def wait_for_event(
        self,
        step_id: str,
        event: str,
        match: str | None,
        context: dict[str, Any],
        timeout_seconds: float,
    ) -> dict[str, Any] | None:
        """Event wait backed by ``run_waits``; ``POST /events`` resolves it."""
        checkpoint = self.state.checkpoints.get(step_id)
        if checkpoint is not None:
            received: dict[str, Any] | None = checkpoint.output["event"]
            return received
        wait = self.state.waits.get(step_id)
        if wait is None:
            await self._open_wait(
                step_id, "event", timeout_seconds, event_name=event, match=match, context=context
            )
        assert wait is not None
        received = await self._resolution(step_id, wait)
        output = {"event": received, "timed_out": received is None}
        self._hold(
            LogRow.succeeded(step_id, 1, wait.created_at, output=output),
            timed_out=received is None,
        )
        return received

    async def _resolution(self, step_id: str, wait: steps_store.Wait) -> Any:
        """What resolved an event or child wait (the event, the child's end), or None once it
        timed out (unless a resolution won the race).

        Raises:
            Suspended: neither yet.
        """
        if wait.resolved and not wait.timed_out:
            return wait.event
        if wait.resolved or wait.due:
            async with self.pool.connection() as conn:
                return await steps_store.time_out_wait(conn, self.run_id, step_id)
        raise Suspended(wait.wake_at)

    async def run_child(self, step_id: str, child: ChildRun) -> Any:
        """Start the child run and park on a ``child`` wait that its end resolves (a trigger
        in the database); then record its output, its failure, or a timeout."""
        checkpoint = self.state.checkpoints.get(step_id)
        if checkpoint is not None:
            return replay(checkpoint)
        wait = self.state.waits.get(step_id)
        if wait is None:
            await self._start_child(step_id, child)
        assert wait is not None
        ended = await self._resolution(step_id, wait)
        if ended is None:  # timed out: the child is not waited for any more
            async with self.pool.connection() as conn:
                await children.cancel(conn, self.run_id, step_id)
        error = child_error(ended, child.timeout_seconds)
        if error is not None:
            self._hold(LogRow.failed(step_id, 1, wait.created_at, error=error), error=error)
            raise StepFailed(error)
        self._hold(LogRow.succeeded(step_id, 1, wait.created_at, output=ended["output"]))
        return ended["output"]

    async def _start_child(self, step_id: str, child: ChildRun) -> NoReturn:
        """Queue the child and open the parent's wait on it, in one transaction.

        Raises:
            Suspended: the child started.
            StepFailed: it cannot start (recorded with the refusal's code).
        """
        error: dict[str, Any] | None = None
        async with self._writing:
            await self._write_held()
            async with self.pool.connection() as conn, conn.transaction():
                try:
                    started = await children.start(conn, self.run_id, step_id, child)
                except children.ChildRefused as refused:
                    error = refused.to_error()
                else:
                    wake_at = await steps_store.open_wait(
                        conn,
                        self.run_id,
                        self.lease,
                        step_id=step_id,
                        kind="child",
                        seconds=child.timeout_seconds,
                        context={"run_id": str(started["run_id"])},
                    )
        if error is not None:
            self._hold(LogRow.failed(step_id, 1, _now(), error=error), error=error)
            raise StepFailed(error)
        self._notify(step_id, "waiting", wake_at=wake_at.isoformat())
        raise Suspended(wake_at)

    async def _open_wait(self, step_id: str, kind: str, seconds: float, **extra: Any) -> None:
        async with self._writing:
            await self._write_held()
            async with self.pool.connection() as conn:
                wake_at = await steps_store.open_wait(
                    conn,
                    self.run_id,
                    self.lease,
                    step_id=step_id,
                    kind=kind,
                    seconds=seconds,
                    **extra,
                )
        self._notify(step_id, "waiting", wake_at=wake_at.isoformat())
        raise Suspended(wake_at)

    async def skip(self, node_ids: list[str]) -> None:
        """Hold skipped nodes for the next write, but those recorded by an earlier pass."""
        now = _now()
        for node_id in node_ids:
            if node_id not in self.state.checkpoints:
                self._hold(LogRow.skipped(node_id, now))
