"""The embedded runner: durable execution on PostgreSQL inside the API (or CLI) process.

This module is the queue worker; a pass's steps go through :mod:`.embedded_port`.

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
import socket
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import PoolTimeout

from blueprint_engine import logs
from blueprint_engine.config import Settings
from blueprint_engine.errors import InvalidBlueprint
from blueprint_engine.integrations import TOOL_REGISTRY, BaseTool, ToolResources
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import steps as steps_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Pool
from blueprint_engine.store.steps import Lease, LeaseLost
from blueprint_engine.store.vault import Vault
from blueprint_engine.workflows.engine import Engine, RunOutcome
from blueprint_engine.workflows.runners.credentials import StoredCredentials
from blueprint_engine.workflows.runners.embedded_port import EmbeddedPort, StepObserver
from blueprint_engine.workflows.runners.writer import StepWriter
from blueprint_engine.workflows.schema import Blueprint, validate_blueprint_async

log = logging.getLogger(__name__)

_BLUEPRINT_CACHE_SIZE = 512


@dataclass
class _Pass:
    """A claimed run being executed in this process."""

    lease: Lease
    task: asyncio.Task[RunOutcome | None] | None = None


class EmbeddedRunner:
    """Claims and executes runs in this process with bounded concurrency.

    Use ``await start()`` / ``await stop()`` around the process's life (the API lifespan does),
    :meth:`drain` to execute until no run is claimable (``wf worker --drain``), or
    :meth:`run_once` to advance one given run (``wf run``). ``tools``: the process's database
    and HTTP client for its steps; whoever made them closes them.
    """

    def __init__(
        self,
        pool: Pool,
        settings: Settings,
        *,
        tools: ToolResources,
        registry: dict[str, BaseTool] | None = None,
        observer: StepObserver | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.tools = tools
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
        if claimed is None:
            return None
        return await self._execute(rows[0], claimed, sandbox or rows[0]["sandbox"])

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
                    self._execute(row, claimed, self.settings.sandbox or row["sandbox"]),
                    name=f"run-{row['id']}",
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
        port = EmbeddedPort(
            self.pool,
            self._writer,
            run_id,
            lease,
            state,
            self.observer,
            retry_after_max=self.settings.retry_after_max_seconds,
        )
        engine = Engine(
            blueprint,
            registry=self.registry,
            settings=self.settings,
            run_id=run_id,
            workflow_id=run["workflow_id"],
            owner=run["owner_profile"],
            tools=self.tools,
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
            log.error(
                "run %s: unexpected error in a pass: %s: %s",
                run_id,
                type(exc).__name__,
                _described(exc),
            )
            log.debug("run %s: the failed pass's traceback", run_id, exc_info=True)
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
        cause = f"{type(exc).__name__}: {_described(exc)}"
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


def _described(exc: Exception) -> str:
    """What went wrong, for the run's error and the log: a database error's primary message
    only (its DETAIL may quote a row: the owner's email, phone, name)."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc)
