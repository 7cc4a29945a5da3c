"""The Inngest runner: the same engine, driven by Inngest's durable steps.

One Inngest function, ``run-workflow``, triggered by ``workflow/run_requested`` (data: run_id,
workflow_id, version, user_id). Each request from Inngest replays the engine; the
:class:`InngestPort` maps the step port onto ``ctx.step``:

- action/trigger/router/end -> ``ctx.step.run(node_id, …)``; the step writes its checkpoint and
  ``workflow_logs`` row with the same store code as the embedded runner (no lease: Inngest runs
  a step once at a time). A retryable failure raises, so Inngest retries the step, until the
  node's ``max_attempts`` (capped by ``INNGEST_RETRIES`` + 1); then the failure is returned as
  the step's result, so ``on_error: continue`` and run failure behave as on the embedded runner.
- delay -> ``ctx.step.sleep``; wait_for_event -> ``ctx.step.wait_for_event`` on
  ``workflow/wait_resolved`` for this run and step. The API evaluates the wait's ``match`` (the
  same Jinja condition as the embedded runner) and sends that event; on timeout the run_waits
  row is consulted, so an event that raced the wait's registration is still honoured.

Scheduling: each pass (one request from Inngest) replays the engine, whose independent nodes
run concurrently; every step call goes through ``ctx.group.parallel`` with
``ParallelMode.RACE``, so a new step is planned, not run inline, and the pass goes on with the
other nodes. The pass then hands back everything it reached in one reply: the steps to plan,
the sleeps and waits to start, the result of the step Inngest targeted. ``RACE`` asks Inngest
for a discovery request as soon as any one of them ends; in the default mode, ``WAIT``, Inngest
waits until all of them ended (a 3-day sleep included) before it asks what comes next, which
would hold every other branch.

Flow control: concurrency keyed by ``event.data.user_id``, ``retries``, ``cancel`` on
``workflow/run_cancelled`` with the same run_id, ``idempotency`` on run_id, and ``on_failure``
marking the run failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any, NoReturn
from uuid import UUID

import inngest
import psycopg
from psycopg.rows import DictRow, dict_row

from blueprint_engine.config import Settings
from blueprint_engine.errors import EngineUnavailable
from blueprint_engine.integrations import TOOL_REGISTRY, BaseTool, ToolResources
from blueprint_engine.store import children
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import steps as steps_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Conn
from blueprint_engine.store.logs import LogRow
from blueprint_engine.store.steps import Checkpoint, LeaseLost, Write
from blueprint_engine.store.vault import Vault
from blueprint_engine.workflows.engine import Engine
from blueprint_engine.workflows.runners import QueuedRun
from blueprint_engine.workflows.runners.credentials import StoredCredentials
from blueprint_engine.workflows.runners.recorder import Pause, Result, StepRecorder, replay
from blueprint_engine.workflows.schema import Blueprint
from blueprint_engine.workflows.steps import (
    ChildRun,
    Retry,
    StepFailed,
    StepFn,
    Suspended,
    child_error,
)

log = logging.getLogger(__name__)

RUN_REQUESTED = "workflow/run_requested"
RUN_CANCELLED = "workflow/run_cancelled"
WAIT_RESOLVED = "workflow/wait_resolved"
FUNCTION_ID = "run-workflow"

#: How every step is handed to Inngest: a branch's next step is discovered as soon as its
#: previous one ends, whatever the other branches are doing.
PARALLEL_MODE = inngest.ParallelMode.RACE


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def check_config(settings: Settings) -> None:
    """Fail fast on a configuration Inngest would reject later.

    Raises:
        RuntimeError: production mode (``INNGEST_DEV`` unset) without ``INNGEST_SIGNING_KEY``.
    """
    if not settings.inngest_dev_mode and settings.inngest_signing_key is None:
        raise RuntimeError(
            "ENGINE=inngest in production mode needs INNGEST_SIGNING_KEY (from your Inngest "
            "app's settings); for the local dev server set INNGEST_DEV=1 instead"
        )


def make_client(settings: Settings) -> inngest.Inngest:
    """An Inngest client from settings: dev mode when ``INNGEST_DEV`` is set, else production
    with ``INNGEST_SIGNING_KEY``/``INNGEST_EVENT_KEY``; ``INNGEST_BASE_URL`` (or a URL in
    ``INNGEST_DEV``) points at a self-hosted or dev server."""
    base = settings.inngest_base_url or settings.inngest_dev_url()
    return inngest.Inngest(
        app_id=settings.inngest_app_id,
        is_production=not settings.inngest_dev_mode,
        signing_key=_secret(settings.inngest_signing_key),
        event_key=_secret(settings.inngest_event_key),
        api_base_url=base,
        event_api_base_url=base,
        logger=logging.getLogger("inngest"),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _memo(result: Result) -> dict[str, Any]:
    """A step result as Inngest memoizes it (JSON)."""
    return {"status": result.status, "output": result.output, "error": result.error}


class InngestPort:
    """:class:`~blueprint_engine.workflows.engine.StepPort` over ``ctx.step`` for one request.

    An action is one ``ctx.step.run`` whose attempts Inngest counts (``ctx.attempt``) and
    retries: a failed attempt that may be retried writes its ``retrying`` row and raises, so
    that Inngest runs the step again (after the service's ``Retry-After``, when it gave one);
    a result is written inside the step and is the step's memo, replayed as a checkpoint.
    """

    def __init__(
        self,
        ctx: inngest.Context,
        conn: Conn,
        run_id: UUID,
        settings: Settings,
        function: inngest.Function[Any],
    ) -> None:
        self.ctx = ctx
        self.conn = conn
        self.run_id = run_id
        self.settings = settings
        self.function = function
        self._recorder = StepRecorder(self, settings.retry_after_max_seconds)

    async def _call(self, thunk: Callable[[], Awaitable[Any]]) -> Any:
        """One step call as a parallel group: a memoized step returns its result; a new one is
        planned (or, when Inngest targeted it, run) and :class:`Suspended` carries the SDK's
        signal for it; a step Inngest did not target in this request suspends with none."""
        results = await _parallel_group(self.ctx, (thunk,))
        if not results:
            raise Suspended(payload=None)
        return results[0]

    async def run(self, step_id: str, fn: StepFn, retry: Retry, *, pure: bool = False) -> Any:
        """One ``ctx.step.run``; failures come back as a memoized ``{"status": "failed"}``.
        Inngest counts attempts itself (``ctx.attempt``), so ``pure`` changes nothing here;
        at most ``max_attempts``, capped by ``INNGEST_RETRIES`` + 1."""
        limit = min(retry.max_attempts, self.settings.inngest_retries + 1)

        async def handler() -> dict[str, Any]:
            # A step a retried run (a new dispatch: a new function run, no memos yet) already
            # recorded is not run again: its checkpoint is its result.
            recorded = await steps_store.get_checkpoint(self.conn, self.run_id, step_id)
            if recorded is not None:
                return _memo(recorded)
            try:
                result = await self._recorder.run(
                    step_id, fn, retry, first=self.ctx.attempt + 1, limit=limit, pure=pure
                )
            except LeaseLost:
                raise inngest.NonRetriableError(f"run {self.run_id} was cancelled") from None
            return _memo(result)

        try:
            memo = await self._call(lambda: self.ctx.step.run(step_id, handler))
        except inngest.StepError as exc:  # Inngest gave up on the step itself
            raise StepFailed({"code": "step_failed", "message": str(exc)}) from None
        return replay(Checkpoint(memo["status"], memo["output"], memo["error"]))

    async def begin(self, step_id: str, attempt: int, *, pure: bool) -> int:
        """Inngest counted the attempt (``ctx.attempt``) before this request."""
        return attempt

    async def retry(self, row: LogRow, pause: Pause) -> NoReturn:
        """Write the ``retrying`` row, then raise so that Inngest retries the step: after
        ``pause.retry_after`` (``inngest.RetryAfterError``) when the service asked for a wait,
        else after Inngest's own backoff.

        Raises:
            inngest.RetryAfterError, RuntimeError: always.
            LeaseLost: the run is finished or cancelled.
        """
        await steps_store.write_one(self.conn, Write(self.run_id, None, [row]))
        message = f"{row.error['code']}: {row.error['message']}"
        if pause.retry_after is not None:
            raise inngest.RetryAfterError(message, timedelta(seconds=pause.retry_after))
        raise RuntimeError(message)

    async def record(self, row: LogRow) -> Result:
        """Write a result row with its checkpoint, inside the running Inngest step; return the
        result that stands (the first one written, when Inngest re-ran a finished step).

        Raises:
            LeaseLost: the run is finished or cancelled.
        """
        written = await steps_store.write_one(self.conn, Write(self.run_id, None, [row]))
        if row.step_id not in written.recorded:
            existing = await steps_store.get_checkpoint(self.conn, self.run_id, row.step_id)
            if existing is not None:
                return existing
        return row

    async def _begin_wait(self, step_id: str, kind: str, seconds: float, **extra: Any) -> None:
        async def begin() -> str:
            wake_at = await steps_store.open_wait(
                self.conn,
                self.run_id,
                None,
                step_id=step_id,
                kind=kind,
                seconds=seconds,
                **extra,
            )
            await runs_store.set_waiting(self.conn, self.run_id, wake_at)
            return wake_at.isoformat()

        await self._call(lambda: self.ctx.step.run(f"{step_id}:begin", begin))

    async def sleep(self, step_id: str, seconds: float) -> None:
        """``ctx.step.sleep`` between a waiting and a succeeded log row."""
        await self._begin_wait(step_id, "sleep", seconds)
        await self._call(lambda: self.ctx.step.sleep(step_id, timedelta(seconds=seconds)))

        async def end() -> dict[str, Any]:
            row = LogRow.succeeded(step_id, 1, _now(), output={"slept_seconds": seconds})
            return _memo(await self.record(row))

        await self._call(lambda: self.ctx.step.run(f"{step_id}:end", end))

    async def wait_for_event(
        self,
        step_id: str,
        event: str,
        match: str | None,
        context: dict[str, Any],
        timeout_seconds: float,
    ) -> dict[str, Any] | None:
        """``ctx.step.wait_for_event`` on this run's ``workflow/wait_resolved``."""
        await self._begin_wait(
            step_id, "event", timeout_seconds, event_name=event, match=match, context=context
        )
        arrived = await self._call(
            lambda: self.ctx.step.wait_for_event(
                step_id,
                event=WAIT_RESOLVED,
                if_exp=f"async.data.run_id == '{self.run_id}' && async.data.step_id == '{step_id}'",
                # Inngest timeouts are whole seconds, at least one.
                timeout=timedelta(seconds=max(1, math.ceil(timeout_seconds))),
            )
        )
        delivered = None if arrived is None else arrived.data.get("event")

        async def end() -> dict[str, Any]:
            received = delivered
            if received is None:  # timed out, unless an event resolved the row meanwhile
                received = await steps_store.time_out_wait(self.conn, self.run_id, step_id)
            output = {"event": received, "timed_out": received is None}
            return _memo(await self.record(LogRow.succeeded(step_id, 1, _now(), output=output)))

        memo = await self._call(lambda: self.ctx.step.run(f"{step_id}:end", end))
        result: dict[str, Any] | None = memo["output"]["event"]
        return result

    async def run_child(self, step_id: str, child: ChildRun) -> Any:
        """Queue the child run (in a step), ``ctx.step.invoke`` this same function on it, then
        record what the child's row says about its end (in a step): its output, its failure,
        or a timeout."""

        async def start() -> dict[str, Any]:
            try:
                started = await children.start(self.conn, self.run_id, step_id, child)
            except children.ChildRefused as refused:
                return {"error": refused.to_error()}
            return {
                "run_id": str(started["run_id"]),
                "workflow_id": str(started["workflow_id"]),
                "version": started["version"],
                "user_id": str(started["owner_id"]),
                "dispatch": 0,
            }

        started = await self._call(lambda: self.ctx.step.run(f"{step_id}:start", start))
        if "error" not in started:
            # A child that failed or timed out fails the invoke: its row says which, below.
            with contextlib.suppress(inngest.StepError):
                await self._call(
                    lambda: self.ctx.step.invoke(
                        step_id,
                        function=self.function,
                        data=started,
                        timeout=timedelta(seconds=max(1, math.ceil(child.timeout_seconds))),
                    )
                )

        async def end() -> dict[str, Any]:
            error = started.get("error")
            output = None
            if error is None:
                ended = await children.ended(self.conn, UUID(started["run_id"]))
                if ended is None:  # timed out: the child is not waited for any more
                    await children.cancel(self.conn, self.run_id, step_id)
                error = child_error(ended, child.timeout_seconds)
                output = None if ended is None else ended["output"]
            if error is not None:
                return _memo(await self.record(LogRow.failed(step_id, 1, _now(), error=error)))
            return _memo(await self.record(LogRow.succeeded(step_id, 1, _now(), output=output)))

        memo = await self._call(lambda: self.ctx.step.run(f"{step_id}:end", end))
        return replay(Checkpoint(memo["status"], memo["output"], memo["error"]))

    async def skip(self, node_ids: list[str]) -> None:
        """Idempotent bookkeeping, repeated on every replay, so no step is needed."""
        await steps_store.record_skipped(self.conn, self.run_id, None, node_ids, _now())

    async def flush(self) -> None:
        """Nothing is held back: every write happens in its Inngest step."""


class InngestRunner:
    """Builds the Inngest client and the ``run-workflow`` function for these settings."""

    def __init__(self, settings: Settings, registry: dict[str, BaseTool] | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else TOOL_REGISTRY
        #: The process's database and HTTP client for the steps, set by the app at start-up
        #: (the functions are called only once it serves).
        self.tools: ToolResources | None = None
        self.client = make_client(settings)
        self.function = self._build()

    def _build(self) -> inngest.Function[Any]:
        settings = self.settings

        async def on_failure(ctx: inngest.Context) -> None:
            original: Any = ctx.event.data.get("event") or {}
            run_id = (original.get("data") or {}).get("run_id")
            error: Any = ctx.event.data.get("error") or {}
            if run_id:
                async with await self._connect() as conn:
                    await runs_store.fail(
                        conn,
                        UUID(run_id),
                        {
                            "code": "engine_failed",
                            "message": str(error.get("message", "the Inngest function failed")),
                        },
                    )

        @self.client.create_function(
            fn_id=FUNCTION_ID,
            name="Run workflow",
            trigger=inngest.TriggerEvent(event=RUN_REQUESTED),
            retries=settings.inngest_retries,
            concurrency=[
                inngest.Concurrency(
                    limit=settings.inngest_concurrency_per_user, key="event.data.user_id"
                )
            ],
            cancel=[
                inngest.Cancel(event=RUN_CANCELLED, if_exp="event.data.run_id == async.data.run_id")
            ],
            # One start per run and dispatch: duplicates are dropped, a retry starts again.
            idempotency='event.data.run_id + "-" + string(event.data.dispatch)',
            on_failure=on_failure,
        )
        async def run_workflow(ctx: inngest.Context) -> Any:
            return await self._run(ctx)

        return run_workflow

    async def _connect(self) -> psycopg.AsyncConnection[DictRow]:
        return await psycopg.AsyncConnection.connect(
            self.settings.database_url, autocommit=True, row_factory=dict_row
        )

    def _tools(self) -> ToolResources:
        """The tools' resources.

        Raises:
            RuntimeError: the app has not set them (it was not started).
        """
        if self.tools is None:
            raise RuntimeError("InngestRunner.tools is set by the app at start-up")
        return self.tools

    def _credentials(self, conn: Conn, owner_id: str | None) -> StoredCredentials | None:
        """The run owner's credentials, read through the run's connection (None for a run
        loaded before runs recorded their owner here: it names no credentials)."""
        if owner_id is None:
            return None

        @asynccontextmanager
        async def lend() -> AsyncIterator[Conn]:
            yield conn

        return StoredCredentials(lend, Vault(self.settings.credentials_key), UUID(owner_id))

    async def _run(self, ctx: inngest.Context) -> Any:
        run_id = UUID(str(ctx.event.data["run_id"]))
        async with await self._connect() as conn:

            async def load() -> dict[str, Any]:
                run = await runs_store.get(conn, run_id, owner=None)
                if run is None:
                    raise inngest.NonRetriableError(f"run {run_id} does not exist")
                version = await workflows_store.get_version(
                    conn, run["workflow_id"], run["version"]
                )
                assert version is not None
                return {
                    "workflow_id": str(run["workflow_id"]),
                    "blueprint": version["blueprint"],
                    "trigger_data": run["trigger_data"],
                    "owner_profile": run["owner_profile"],
                    "owner_id": str(run["owner_id"]),
                    "status": run["status"],
                    "sandbox": run["sandbox"],
                }

            # Inside a step, so every replay sees the version the run started with, and the
            # owner's profile as it was when the run was queued.
            loaded = await ctx.step.run("load", load)
            if loaded["status"] in runs_store.TERMINAL:
                return {"skipped": f"run already {loaded['status']}"}
            engine = Engine(
                Blueprint.model_validate(loaded["blueprint"]),
                registry=self.registry,
                settings=self.settings,
                run_id=run_id,
                workflow_id=UUID(loaded["workflow_id"]),
                owner=loaded["owner_profile"],
                tools=self._tools(),
                sandbox=self.settings.sandbox or bool(loaded.get("sandbox")),
                credentials=self._credentials(conn, loaded.get("owner_id")),
            )
            try:
                outcome = await engine.execute(
                    loaded["trigger_data"],
                    InngestPort(ctx, conn, run_id, self.settings, self.function),
                )
            except LeaseLost:
                raise inngest.NonRetriableError(f"run {run_id} was cancelled") from None
            if outcome.status == "waiting":
                await _hand_back(ctx, outcome.suspended)

            async def finish() -> bool:
                return await runs_store.finish(
                    conn,
                    run_id,
                    None,
                    status=outcome.status,
                    output=outcome.output,
                    error=outcome.error,
                )

            await ctx.step.run("finish", finish)
            if outcome.status == "failed":
                error = outcome.error or {}
                raise inngest.NonRetriableError(
                    f"node {error.get('node_id')}: {error.get('code')}: {error.get('message')}"
                )
            return outcome.output


# -- the SDK's step signals ---------------------------------------------------------------
# The one place that relies on how the SDK hands steps back (inngest 0.5.x): a step that cannot
# return in this request raises a signal that is a BaseException but not an Exception (so that
# user code does not catch it), and ``ctx.group.parallel`` gathers the signals its callables
# raise into one reply. Neither the signals nor their classes are public, so they are caught
# here by that shape and handed back, unopened, through ``ctx.group.parallel`` itself.
# tests/test_inngest.py (test_sdk_step_signals_*) fails if the SDK changes either.

#: BaseExceptions that are not the SDK's step signals.
_NOT_STEP_SIGNALS = (
    Exception,
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    BaseExceptionGroup,
)


async def _parallel_group(
    ctx: inngest.Context, callables: tuple[Callable[[], Awaitable[Any]], ...]
) -> tuple[Any, ...]:
    """``ctx.group.parallel(callables)`` in :data:`PARALLEL_MODE`; the outputs of the callables
    that returned (a step Inngest did not target in this request returns nothing).

    Raises:
        Suspended: with the SDK's signal as ``payload``, when a step is handed back.
    """
    try:
        return await ctx.group.parallel(callables, parallel_mode=PARALLEL_MODE)
    except _NOT_STEP_SIGNALS:
        raise
    except BaseException as signal:
        raise Suspended(payload=signal) from None


async def _rethrow(signal: BaseException) -> None:
    raise signal


async def _hand_back(ctx: inngest.Context, suspended: list[Suspended]) -> None:
    """Give Inngest, in one reply, every step this pass reached: steps to plan, sleeps and
    waits to start, the targeted step's result.

    Raises:
        BaseException: always, when all is well: the SDK's signal that ``ctx.group.parallel``
            gathered from them, which the SDK turns into its reply.
        RuntimeError: nothing to hand back (Inngest targeted a step this replay did not reach,
            so it retries the request, as the SDK does for an unexpected step), or the SDK did
            not raise what it was handed (an SDK this runner does not support).
    """
    signals = [s.payload for s in suspended if s.payload is not None]
    if not signals:
        raise RuntimeError("Inngest targeted a step that this replay of the run did not reach")
    replies = tuple(functools.partial(_rethrow, signal) for signal in signals)
    try:
        await _parallel_group(ctx, replies)
    except Suspended as gathered:
        raise gathered.payload from None
    raise RuntimeError(
        "ctx.group.parallel returned instead of handing the steps back: inngest "
        f"{version('inngest')} is not an SDK this runner supports (0.5.x)"
    )


class InngestDispatcher:
    """Sends the events that start, cancel and resume runs on Inngest."""

    engine = "inngest"

    def __init__(self, client: inngest.Inngest) -> None:
        self.client = client

    async def _send(self, events: list[inngest.Event], what: str) -> None:
        try:
            await self.client.send(events)
        except Exception as exc:
            raise EngineUnavailable(
                f"could not send {what} to Inngest ({type(exc).__name__}: {exc}); check that the "
                "Inngest server is reachable (INNGEST_BASE_URL / INNGEST_DEV) and INNGEST_EVENT_KEY"
            ) from None

    async def run_queued(self, runs: list[QueuedRun]) -> None:
        """Send one ``workflow/run_requested`` per run (event id = run id, so resends dedupe)."""
        if not runs:
            return
        events = [
            inngest.Event(
                name=RUN_REQUESTED,
                id=f"run-{run.run_id}-{run.dispatch}",
                data={
                    "run_id": str(run.run_id),
                    "workflow_id": str(run.workflow_id),
                    "version": run.version,
                    "user_id": str(run.owner),
                    "dispatch": run.dispatch,
                },
            )
            for run in runs
        ]
        await self._send(events, RUN_REQUESTED)

    async def run_cancelled(self, run_id: UUID) -> None:
        """Send ``workflow/run_cancelled``; the function's ``cancel`` rule stops the run."""
        await self._send(
            [inngest.Event(name=RUN_CANCELLED, data={"run_id": str(run_id)})], RUN_CANCELLED
        )

    async def wait_resolved(self, run_id: UUID, step_id: str, event: dict[str, Any]) -> None:
        """Send ``workflow/wait_resolved`` for the run's waiting step."""
        await self._send(
            [
                inngest.Event(
                    name=WAIT_RESOLVED,
                    data={"run_id": str(run_id), "step_id": step_id, "event": event},
                )
            ],
            WAIT_RESOLVED,
        )
