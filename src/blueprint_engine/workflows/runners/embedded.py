"""The embedded runner: durable execution on PostgreSQL inside the API (or CLI) process.

- Claims runs with ``FOR UPDATE SKIP LOCKED`` under a lease with a fresh token per claim; a
  heartbeat extends the leases in hand, and every write of a pass is fenced on its token, so two
  passes never record the same step and a pass that lost its run stops — at the latest before
  its next action, whose attempt is counted (fenced) before it runs.
- Bounded: an action runs at most ``max_attempts`` times, crashes included (attempts are counted
  durably before they run); a pass that ends in an unexpected error is retried with a growing
  back-off, and after ``RUN_MAX_PASS_FAILURES`` such passes in a row (or lost workers) without
  progress the run fails with ``engine_error``; ``POST /runs/{id}/retry`` resumes it.
- Each step's checkpoint and ``workflow_logs`` row are committed in one transaction: the
  pass's next write, usually the attempt count of the action that follows (one commit per
  action); the writes of concurrent passes share statements (:mod:`.writer`, group commit).
- A run is replayed from the start on every pass: recorded steps return their checkpoint, so a
  restart never repeats a finished step (side effects are at-least-once only for the step that
  was in flight).
- Delays and waits are rows in ``run_waits``; the run is parked (``waiting``) and holds no
  process until its timer is due or a matching event resolves it.
- Wake-ups come from ``LISTEN workflow_runs_queued`` (any process) and a poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

import psycopg
from psycopg_pool import PoolTimeout
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from blueprint_engine import logs
from blueprint_engine.config import Settings
from blueprint_engine.errors import InvalidBlueprint
from blueprint_engine.integrations import TOOL_REGISTRY, BaseTool
from blueprint_engine.store import children
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import steps as steps_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.children import ChildRefused
from blueprint_engine.store.db import Pool
from blueprint_engine.store.steps import Lease, LeaseLost, LogRow
from blueprint_engine.store.vault import Vault
from blueprint_engine.workflows.engine import Engine, RunOutcome
from blueprint_engine.workflows.runners.credentials import StoredCredentials
from blueprint_engine.workflows.runners.writer import StepWriter
from blueprint_engine.workflows.schema import Blueprint, validate_blueprint_async
from blueprint_engine.workflows.steps import (
    ChildRun,
    Retry,
    StepError,
    StepFailed,
    StepFn,
    StepOutcome,
    Suspended,
    child_error,
    node_of,
)

log = logging.getLogger(__name__)

_BLUEPRINT_CACHE_SIZE = 512

#: Called with (run_id, node_id, event, detail) as steps start and finish; for live displays.
StepObserver = Callable[[UUID, str, str, dict[str, Any]], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, StepError) and exc.retryable


def _result(checkpoint: steps_store.Checkpoint) -> Any:
    """A step's output, or its recorded failure raised again (replays are deterministic)."""
    if checkpoint.status == "failed":
        raise StepFailed(checkpoint.error)
    return checkpoint.output


@dataclass
class _Attempt:
    number: int
    started: datetime


def _retrying(
    retry: Retry, attempts: int
) -> Callable[[Callable[[int], Awaitable[StepOutcome]], int], Awaitable[StepOutcome]]:
    """Retry phase after a failed first attempt: up to ``attempts`` more tries, backing off
    ``initial * 2**(n-1)`` seconds (capped at ``max``) plus ``uniform(0, jitter)`` before retry n.

    The first backoff is slept here; tenacity (wait_exponential + wait_random) sleeps the rest.
    """

    async def run(attempt: Callable[[int], Awaitable[StepOutcome]], first: int) -> StepOutcome:
        await asyncio.sleep(
            min(retry.initial_backoff, retry.max_backoff) + random.uniform(0, retry.jitter)
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=retry.initial_backoff * 2, max=retry.max_backoff)
            + wait_random(0, retry.jitter),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                return await attempt(first + try_.retry_state.attempt_number - 1)
        raise AssertionError("unreachable: tenacity reraises the last error")

    return run


class EmbeddedPort:
    """:class:`~blueprint_engine.workflows.engine.StepPort` over PostgreSQL for one run pass.

    A step's result (checkpoint and log row) is held back and written by the pass's next
    write: usually the attempt count of the action that follows it, so a chain of actions
    commits once a step; else by :meth:`flush`. Writes of a pass are serialized and each
    carries every result held so far, so a result is durable before any step that started
    after it counts its attempt, i.e. before that step's side effect. Those writes go through
    the runner's :class:`StepWriter`, which commits the writes of concurrent passes together.
    Observers hear of a result once it is written.
    """

    def __init__(
        self,
        pool: Pool,
        writer: StepWriter,
        run_id: UUID,
        lease: Lease,
        state: steps_store.ReplayState,
        observer: StepObserver | None = None,
    ) -> None:
        self.pool = pool
        self.writer = writer
        self.run_id = run_id
        self.lease = lease
        self.state = state
        self.observer = observer
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

    async def _count_attempt(self, step_id: str) -> int:
        """Write the held results and count an attempt of ``step_id``; returns its number.

        Raises:
            LeaseLost: the run is no longer held by this claim.
        """
        async with self._writing:
            counted = await self._write_held(start=step_id)
        assert counted is not None
        return counted

    async def _write_held(self, start: str | None = None) -> int | None:
        """Write the held results and, if ``start``, count an attempt of that step (its
        number is returned). The caller holds ``_writing``."""
        held, self._held = self._held, []
        self._written += len(held)
        if not held and start is None:
            return None
        write = steps_store.Write(self.run_id, self.lease, [row for row, _ in held], start)
        written = await self.writer.write(write)
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

    async def run(self, step_id: str, fn: StepFn, retry: Retry, *, pure: bool = False) -> Any:
        """Replay the checkpoint, else run ``fn``; retry per ``retry``, logging every attempt.

        Unless ``pure``, each attempt is counted (fenced on the lease) before it runs, so
        attempts whose process died count too, and a pass that lost its lease stops here.
        The result is held back for the next write (see the class).
        """
        checkpoint = self.state.checkpoints.get(step_id)
        if checkpoint is not None:
            return _result(checkpoint)
        started_before = self.state.attempts.get(step_id, 0)
        if started_before >= retry.max_attempts:
            self._attempts_lost(step_id, started_before)
        current = _Attempt(started_before + 1, _now())

        async def attempt(number: int) -> StepOutcome:
            if not pure:
                number = await self._count_attempt(step_id)
            current.number, current.started = number, _now()
            self._notify(step_id, "started", attempt=number)
            try:
                return await fn(number)
            except StepError as exc:
                if exc.retryable and number < retry.max_attempts:
                    await self._log_retry(step_id, number, current.started, exc)
                raise

        remaining = retry.max_attempts - started_before
        try:
            try:  # the common case, kept free of retry machinery
                outcome = await attempt(current.number)
            except StepError as exc:
                if not exc.retryable or remaining == 1:
                    raise
                outcome = await _retrying(retry, remaining - 1)(attempt, current.number + 1)
        except StepError as exc:
            attempt_no = current.number
            error = {**exc.to_error(), "attempts": attempt_no}
            self._hold(
                LogRow(
                    node_of(step_id),
                    step_id,
                    "failed",
                    attempt_no,
                    current.started,
                    _now(),
                    input=exc.input,
                    error=error,
                ),
                attempt=attempt_no,
                error=error,
            )
            raise StepFailed(error) from None
        row = LogRow(
            node_of(step_id),
            step_id,
            "succeeded",
            current.number,
            current.started,
            _now(),
            input=outcome.input,
            output=outcome.output,
        )
        self._hold(row, attempt=row.attempt, duration_ms=row.duration_ms)
        return outcome.output

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
            LogRow(node_of(step_id), step_id, "failed", started, now, now, error=error),
            attempt=started,
            error=error,
        )
        raise StepFailed(error)

    async def _log_retry(
        self, step_id: str, attempt: int, started: datetime, exc: StepError
    ) -> None:
        row = LogRow(
            node_of(step_id),
            step_id,
            "retrying",
            attempt,
            started,
            _now(),
            input=exc.input,
            error=exc.to_error(),
        )
        async with self._writing:
            await self._write_held()  # log rows stay in the order things happened
            async with self.pool.connection() as conn:
                await steps_store.log_attempt(conn, self.run_id, self.lease, row)
        self._notify(step_id, "retrying", attempt=attempt, error=exc.to_error())

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
        self._hold(
            LogRow(
                node_of(step_id),
                step_id,
                "succeeded",
                1,
                began,
                _now(),
                output={"slept_seconds": seconds},
            )
        )

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
        if wait.resolved and not wait.timed_out:
            received = wait.event
        elif wait.resolved or wait.due:
            async with self.pool.connection() as conn:
                received = await steps_store.time_out_wait(conn, self.run_id, step_id)
        else:
            raise Suspended(wait.wake_at)
        output = {"event": received, "timed_out": received is None}
        self._hold(
            LogRow(
                node_of(step_id), step_id, "succeeded", 1, wait.created_at, _now(), output=output
            ),
            timed_out=received is None,
        )
        return received

    async def run_child(self, step_id: str, child: ChildRun) -> Any:
        """Start the child run and park on a ``child`` wait that its end resolves (a trigger
        in the database); then record its output, or its failure (or a timeout)."""
        checkpoint = self.state.checkpoints.get(step_id)
        if checkpoint is not None:
            return _result(checkpoint)
        wait = self.state.waits.get(step_id)
        if wait is None:
            await self._start_child(step_id, child)
        assert wait is not None
        if wait.resolved and not wait.timed_out:
            ended = wait.event
        elif wait.resolved or wait.due:
            async with self.pool.connection() as conn:
                ended = await steps_store.time_out_wait(conn, self.run_id, step_id)
        else:
            raise Suspended(wait.wake_at)
        error = child_error(ended, child.timeout_seconds)
        if error is not None:
            now = _now()
            self._hold(
                LogRow(node_of(step_id), step_id, "failed", 1, wait.created_at, now, error=error),
                attempt=1,
                error=error,
            )
            raise StepFailed(error)
        output = ended["output"]
        self._hold(
            LogRow(
                node_of(step_id), step_id, "succeeded", 1, wait.created_at, _now(), output=output
            )
        )
        return output

    async def _start_child(self, step_id: str, child: ChildRun) -> NoReturn:
        """Queue the child and open the parent's wait on it, in one transaction.

        Raises:
            Suspended: always, when the child started.
            StepFailed: it cannot start (recorded with the refusal's code).
        """
        async with self._writing:
            await self._write_held()
            async with self.pool.connection() as conn, conn.transaction():
                try:
                    started = await children.start(
                        conn,
                        self.run_id,
                        step_id,
                        workflow_id=child.workflow_id,
                        version=child.version,
                        trigger_data=child.input,
                        max_depth=child.max_depth,
                    )
                except ChildRefused as refused:
                    error: dict[str, str] | None = {
                        "code": refused.code,
                        "message": refused.message,
                    }
                else:
                    error = None
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
            now = _now()
            self._hold(
                LogRow(node_of(step_id), step_id, "failed", 1, now, now, input=None, error=error),
                attempt=1,
                error=error,
            )
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
                self._hold(LogRow(node_of(node_id), node_id, "skipped", 0, now, now))


@dataclass
class _Pass:
    """A claimed run being executed in this process."""

    lease: Lease
    task: asyncio.Task[RunOutcome | None] | None = None


class EmbeddedRunner:
    """Claims and executes runs in this process with bounded concurrency.

    Use ``await start()`` / ``await stop()`` around the process's life (the API lifespan does),
    :meth:`drain` to execute until no run is claimable (``wf worker --drain``), or
    :meth:`run_once` to advance one given run (``wf run``).
    """

    def __init__(
        self,
        pool: Pool,
        settings: Settings,
        *,
        registry: dict[str, BaseTool] | None = None,
        observer: StepObserver | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.registry = registry if registry is not None else TOOL_REGISTRY
        self.observer = observer
        self.worker_id = (
            settings.worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._active: dict[UUID, _Pass] = {}
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._blueprints: OrderedDict[tuple[UUID, int], Blueprint] = OrderedDict()
        self._writer = StepWriter(pool)
        self.vault = Vault(settings.credentials_key)

    # -- lifecycle -----------------------------------------------------------------------

    async def recover(self) -> int:
        """Make runs left ``running`` by an earlier process with this ``WORKER_ID`` claimable now
        (their lease would otherwise have to expire). Returns how many."""
        if self.settings.worker_id is None:
            return 0
        async with self.pool.connection() as conn:
            return await runs_store.expire_leases(conn, self.worker_id)

    async def start(self) -> None:
        """Recover this worker's own runs, then claim in the background (plus heartbeat and
        LISTEN tasks)."""
        recovered = await self.recover()
        if recovered:
            log.info("recovered %d unfinished run(s) of worker %s", recovered, self.worker_id)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="runner-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="runner-heartbeat"),
            asyncio.create_task(self._listen_loop(), name="runner-listen"),
        ]

    def _running(self) -> dict[UUID, asyncio.Task[RunOutcome | None]]:
        return {run_id: p.task for run_id, p in self._active.items() if p.task is not None}

    async def stop(self) -> None:
        """Stop claiming, let in-flight runs finish for ``SHUTDOWN_GRACE_SECONDS``, then cancel
        the rest and hand their runs back to the queue for another process."""
        self._stopping = True
        self._wakeup.set()
        running = self._running()
        if running:
            await asyncio.wait(running.values(), timeout=self.settings.shutdown_grace_seconds)
        leftover = {run_id: p.lease.token for run_id, p in self._active.items()}
        running = self._running()
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        await self._writer.wait_idle()
        if leftover:
            with contextlib.suppress(psycopg.Error, OSError, PoolTimeout):
                async with self.pool.connection() as conn:
                    await runs_store.release(conn, leftover)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def nudge(self) -> None:
        """Claim now instead of at the next poll."""
        self._wakeup.set()

    async def drain(self, *, until: Callable[[], bool] | None = None) -> None:
        """Execute runs until nothing is claimable and none is in flight (or ``until()``)."""
        await self.recover()
        while not (until and until()):
            claimed = await self._claim()
            running = self._running()
            if not claimed and not running:
                return
            if running:
                await asyncio.wait(
                    running.values(),
                    return_when=asyncio.FIRST_COMPLETED,
                    timeout=self.settings.worker_poll_seconds,
                )

    async def run_once(self, run_id: UUID, *, sandbox: bool = False) -> RunOutcome | None:
        """Claim ``run_id`` if it is runnable now and advance it one pass, in this task.

        Returns:
            Where the pass left the run; None when it was not runnable now, or the pass failed
            unexpectedly (the run was handed back with a back-off, or failed for good).
        """
        async with self.pool.connection() as conn:
            rows = await runs_store.claim(
                conn, self.worker_id, 1, self.settings.run_lease_seconds, run_id=run_id
            )
        if not rows:
            return None
        claimed = await self._admit(rows[0])
        return None if claimed is None else await self._execute(rows[0], claimed, sandbox)

    # -- claiming ------------------------------------------------------------------------

    async def _admit(self, row: dict[str, Any]) -> _Pass | None:
        """A claimed row as a pass of this process, unless its failed passes are used up (then
        the run fails with ``engine_error``)."""
        lease = Lease(row["lease_token"], self.settings.run_lease_seconds)
        failures = row["pass_failures"]
        if failures < self.settings.run_max_pass_failures:
            claimed = _Pass(lease)
            self._active[row["id"]] = claimed
            return claimed
        error = {
            "code": "engine_error",
            "message": f"the run's worker was lost {failures} times in a row without progress "
            "(crashed, restarted or cut off from the database); retry the run when the cause "
            "is fixed",
        }
        async with self.pool.connection() as conn:
            await runs_store.fail(conn, row["id"], error, lease=lease)
        log.warning("run %s: failed (%s)", row["id"], error["message"])
        return None

    async def _claim(self) -> int:
        free = self.settings.worker_concurrency - len(self._active)
        if free <= 0 or self._stopping:
            return 0
        async with self.pool.connection() as conn:
            rows = await runs_store.claim(
                conn,
                self.worker_id,
                free,
                self.settings.run_lease_seconds,
                exclude=list(self._active),
            )
        for row in rows:
            claimed = await self._admit(row)
            if claimed is not None:
                claimed.task = asyncio.create_task(
                    self._execute(row, claimed, self.settings.sandbox), name=f"run-{row['id']}"
                )
        return len(rows)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                claimed = await self._claim()
            except (psycopg.Error, OSError, PoolTimeout):
                log.warning("claiming runs failed (database unavailable?); retrying")
                claimed = 0
            if claimed and len(self._active) < self.settings.worker_concurrency:
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.settings.worker_poll_seconds)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.run_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if not self._active:
                continue
            leases = {run_id: p.lease.token for run_id, p in self._active.items()}
            try:
                async with self.pool.connection() as conn:
                    held = await runs_store.heartbeat(conn, leases, self.settings.run_lease_seconds)
            except (psycopg.Error, OSError, PoolTimeout):
                log.warning("heartbeat failed (database unavailable?)")
                continue
            for run_id, token in leases.items():
                claimed = self._active.get(run_id)
                if run_id not in held and claimed is not None and claimed.lease.token == token:
                    log.warning("run %s: lease lost or run cancelled; stopping it here", run_id)
                    if claimed.task is not None:
                        claimed.task.cancel()

    async def _listen_loop(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute("listen workflow_runs_queued")
                    self._wakeup.set()  # whatever was queued while we were not listening
                    async for _ in conn.notifies():
                        self._wakeup.set()
            except (psycopg.Error, OSError):
                log.warning("LISTEN connection lost; polling until it is back")
                await asyncio.sleep(self.settings.worker_poll_seconds * 4)

    # -- executing -----------------------------------------------------------------------

    async def _blueprint(self, workflow_id: UUID, version: int) -> Blueprint:
        key = (workflow_id, version)
        cached = self._blueprints.get(key)
        if cached is not None:  # versions are immutable, so caching is safe
            self._blueprints.move_to_end(key)
            return cached
        async with self.pool.connection() as conn:
            row = await workflows_store.get_version(conn, workflow_id, version)
        if row is None:
            raise LookupError(f"the run's workflow version {workflow_id}@{version} is gone")
        try:  # in a thread: this compiles every template once, off the event loop
            blueprint = await validate_blueprint_async(row["blueprint"], self.registry)
        except InvalidBlueprint:  # saved under older rules: its steps report what is wrong
            blueprint = Blueprint.model_validate(row["blueprint"])
        self._blueprints[key] = blueprint
        if len(self._blueprints) > _BLUEPRINT_CACHE_SIZE:  # ad-hoc runs add a version each
            self._blueprints.popitem(last=False)
        return blueprint

    async def execute_pass(
        self, run: dict[str, Any], lease: Lease, *, sandbox: bool = False
    ) -> RunOutcome:
        """Advance one claimed run (a row of :func:`runs_store.claim`) as far as it goes and
        record the outcome. Templates see the owner's profile stored on the run when it was
        queued (``owner_profile``), the same on every pass.

        Raises:
            LeaseLost: the run was taken over or cancelled meanwhile.
        """
        run_id: UUID = run["id"]
        blueprint = await self._blueprint(run["workflow_id"], run["version"])
        if run["first_pass"]:  # never claimed before: nothing to replay
            state = steps_store.ReplayState()
        else:
            async with self.pool.connection() as conn:
                state = await steps_store.load(conn, run_id)
        port = EmbeddedPort(self.pool, self._writer, run_id, lease, state, self.observer)
        engine = Engine(
            blueprint,
            registry=self.registry,
            settings=self.settings,
            run_id=run_id,
            workflow_id=run["workflow_id"],
            owner=run["owner_profile"],
            sandbox=sandbox,
            credentials=StoredCredentials(self.pool.connection, self.vault, run["owner_id"]),
        )
        outcome = await engine.execute(run["trigger_data"], port)
        async with self.pool.connection() as conn:
            held = await runs_store.finish(
                conn,
                run_id,
                lease,
                status=outcome.status,
                output=outcome.output,
                error=outcome.error,
                wake_at=outcome.wake_at,
            )
        if not held:
            raise LeaseLost(str(run_id))
        return outcome

    async def _execute(
        self, run: dict[str, Any], claimed: _Pass, sandbox: bool
    ) -> RunOutcome | None:
        run_id: UUID = run["id"]
        with logs.bound(run_id=run_id, trace_id=run.get("trace_id")):
            return await self._execute_bound(run, claimed, sandbox)

    async def _execute_bound(
        self, run: dict[str, Any], claimed: _Pass, sandbox: bool
    ) -> RunOutcome | None:
        run_id: UUID = run["id"]
        try:
            outcome = await self.execute_pass(run, claimed.lease, sandbox=sandbox)
            log.info("run %s: %s", run_id, outcome.status)
            return outcome
        except LeaseLost:
            log.info("run %s: no longer ours (cancelled or taken over)", run_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run %s: unexpected error in a pass", run_id)
            await self._pass_failed(run_id, claimed.lease, exc)
        finally:
            if self._active.get(run_id) is claimed:
                del self._active[run_id]
            self._wakeup.set()
        return None

    async def _pass_failed(self, run_id: UUID, lease: Lease, exc: Exception) -> None:
        """Hand the run back with a back-off, or fail it after too many failed passes. When
        the database is unreachable nothing can be written: the lease expires instead, and the
        next claim counts the failed pass."""
        settings = self.settings
        cause = f"{type(exc).__name__}: {exc}"
        error = {
            "code": "engine_error",
            "message": f"{settings.run_max_pass_failures} passes in a row failed; the last with "
            f"{cause[:500]}",
        }
        try:
            async with self.pool.connection() as conn:
                status = await runs_store.record_pass_failure(
                    conn,
                    run_id,
                    lease,
                    error,
                    max_failures=settings.run_max_pass_failures,
                    backoff_seconds=settings.run_pass_backoff_seconds,
                )
        except (psycopg.Error, OSError, PoolTimeout):
            log.warning("run %s: cannot record the failed pass; its lease will expire", run_id)
            return
        log.warning("run %s: pass failed (%s); run is now %s", run_id, cause[:200], status)
