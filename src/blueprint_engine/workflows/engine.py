"""Blueprint traversal: the deterministic part of a run.

The engine walks the graph and does all side effects through a :class:`StepPort` (the runner):
``run`` (replay a checkpoint, else execute and record), ``sleep``, ``wait_for_event`` and
``skip``. Step ids are the node ids, so a replay finds its checkpoints; everything outside a step
is a pure function of the blueprint, the trigger data, the owner's profile (a snapshot taken
when the run was queued, see :class:`Engine`) and the recorded step results.

Semantics:
- A node runs once all its incoming edges are resolved and at least one is live (a join waits
  for every live parent; skipped parents don't block it).
- An edge is dead when its source was skipped, or when its source is a router that chose another
  branch, or a wait that ended the other way (event vs ``timeout``). A node whose incoming
  edges are all dead is ``skipped``, and so on downstream.
- Ready nodes run concurrently (independent branches overlap).
- A failing action is retried by the port per its retry policy; when attempts run out the run
  fails with that node's error, unless ``on_error: "continue"`` (then ``{"error": ...}`` is its
  output). After a failure no new node starts; steps already running finish and are recorded.
- Whatever a step does wrong fails that step, never the runner: any error in a template is a
  non-retryable ``expression_error``; resolved params that are not valid for the task are
  ``invalid_params``; an output PostgreSQL cannot store (NUL, invalid Unicode, NaN, too large,
  too deep: :mod:`~blueprint_engine.store.storable`) is a non-retryable ``output_not_storable``, and
  nothing of it is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from pydantic import ValidationError

from blueprint_engine import logs, metrics
from blueprint_engine.config import Settings
from blueprint_engine.integrations import BaseTool, ToolContext, ToolError
from blueprint_engine.integrations.credentials import (
    Credential,
    CredentialData,
    CredentialUnavailable,
)
from blueprint_engine.store import storable
from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.redaction import Redactor
from blueprint_engine.workflows.schema import (
    TIMEOUT_BRANCH,
    ActionNode,
    Blueprint,
    DelayNode,
    EndNode,
    RouterNode,
    TriggerNode,
    WaitForEventNode,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retry:
    """Resolved retry policy: attempts in total, backoff seconds (exponential, capped, jittered)."""

    max_attempts: int
    initial_backoff: float
    max_backoff: float
    jitter: float


NO_RETRY = Retry(1, 0.0, 0.0, 0.0)


class CredentialSource(Protocol):
    """Where a run's steps get their owner's credentials (the runners pass one)."""

    async def load(self, name: str, accepted: tuple[type[CredentialData], ...]) -> Credential:
        """The owner's credential ``name``, decrypted, as one of the ``accepted`` types.

        Raises:
            CredentialUnavailable: missing, of another type, or unreadable.
        """
        ...


@dataclass
class StepOutcome:
    """What a step function returns: the resolved input (for the log) and the output."""

    input: Any
    output: Any


class StepError(Exception):
    """One attempt of a step failed. ``retryable`` lets the port try again; ``retry_after``
    (seconds, from the service's ``Retry-After``) asks it to wait at least that long first."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        input: Any = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.input = input
        self.details = details or {}
        self.retry_after = retry_after

    def redacted(self, redact: Redactor) -> StepError:
        """This error with its message, input and details passed through ``redact``."""
        return StepError(
            self.code,
            redact.text(self.message),
            retryable=self.retryable,
            input=redact(self.input),
            details=redact(self.details),
            retry_after=self.retry_after,
        )

    def to_error(self) -> dict[str, Any]:
        """JSON form stored in logs and on the run."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return error


class StepFailed(Exception):
    """A step failed for good (attempts exhausted or not retryable); replays raise it again."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "step failed"))
        self.error = error


def continued_output(error: dict[str, Any]) -> dict[str, Any]:
    """The output of an action with ``on_error: "continue"`` that failed for good: what later
    steps read as ``steps.<id>.output`` (``{"error": {code, message, ...}}``)."""
    return {"error": error}


class Suspended(Exception):
    """The step cannot finish in this pass: it waits on a timer or an event (the embedded runner
    resumes the run at or before ``wake_at``), or the runner must hand control back first
    (``payload`` is the runner's own, e.g. Inngest step opcodes). Other nodes keep going."""

    def __init__(self, wake_at: datetime | None = None, payload: Any = None) -> None:
        super().__init__(f"suspended until {wake_at.isoformat()}" if wake_at else "suspended")
        self.wake_at = wake_at
        self.payload = payload


StepFn = Callable[[int], Awaitable[StepOutcome]]


class StepPort(Protocol):
    """What a runner provides to the engine. Step ids are stable across replays."""

    async def run(self, step_id: str, fn: StepFn, retry: Retry, *, pure: bool = False) -> Any:
        """Return the checkpointed output, or call ``fn(attempt)`` (retrying per ``retry``),
        record the result and return its output. ``pure``: ``fn`` has no side effect (trigger,
        router, end), so a port need not count its attempts durably before running it.

        A port may hold the record back until its next write or :meth:`flush`, provided it is
        durable before any step that starts after this one returned does something outside
        the run (a crash before then is a crash while the step was in flight).

        Raises:
            StepFailed: the step failed for good (now or in an earlier replay).
        """
        ...

    async def flush(self) -> None:
        """Write what the port holds back. The engine calls it when it is about to wait for
        running steps, after the steps it just started have begun (so that their first write
        can carry it instead)."""
        ...

    async def sleep(self, step_id: str, seconds: float) -> None:
        """Return once the durable timer has fired.

        Raises:
            Suspended: not yet; the run resumes when it fires.
        """
        ...

    async def wait_for_event(
        self,
        step_id: str,
        event: str,
        match: str | None,
        context: dict[str, Any],
        timeout_seconds: float,
    ) -> dict[str, Any] | None:
        """Return the matching event, or None once ``timeout_seconds`` passed without one.

        Raises:
            Suspended: neither happened yet.
        """
        ...

    async def skip(self, node_ids: list[str]) -> None:
        """Record nodes that will not run."""
        ...


NodeStatus = Literal["succeeded", "failed", "skipped", "waiting"]


@dataclass
class RunOutcome:
    """Where an execution pass left the run."""

    status: Literal["succeeded", "failed", "waiting"]
    output: Any = None
    error: dict[str, Any] | None = None
    wake_at: datetime | None = None
    suspended: list[Suspended] = dataclasses.field(default_factory=list)
    node_status: dict[str, NodeStatus] = dataclasses.field(default_factory=dict)


@dataclass
class _NodeResult:
    output: Any
    status: NodeStatus = "succeeded"
    branch: str | None = None  # router: chosen branch; wait: "timeout" or None


class Engine:
    """Executes one run of a blueprint through a :class:`StepPort`.

    Args:
        blueprint: a validated blueprint.
        registry: service -> tool.
        settings: retry defaults and tool credentials.
        run_id, workflow_id: exposed to templates as ``run.id`` / ``run.workflow_id``; the tool
            idempotency key is ``<run_id>:<node_id>``.
        owner: the profile of the run's owner, ``{"display_name", "email", "phone"}`` (values
            text or null), exposed to templates as ``owner.<field>``; a field that is null is
            undefined there, so a step that uses it fails with ``expression_error`` naming the
            field and ``PATCH /me`` (:class:`~blueprint_engine.workflows.expressions.OwnerProfile`).
        sandbox: force every tool into sandbox mode.
        credentials: the run owner's credentials, for nodes that name one (None: such nodes
            get a bare reference, as in sandbox mode).

    The runners pass the snapshot stored on the run when it was queued (``workflow_runs
    .owner_profile``), never the live profile: a run parked for days on a delay or a wait
    replays on every pass, and each pass must see what the first one saw — a step retried
    after a crash must not send to a number the user changed meanwhile, and every step of one
    run addresses the same person. ``POST /runs/{id}/retry`` takes a fresh snapshot (a user who
    fixed a missing phone retries the run); finished steps keep what they recorded.
    """

    def __init__(
        self,
        blueprint: Blueprint,
        *,
        registry: dict[str, BaseTool],
        settings: Settings,
        run_id: UUID,
        workflow_id: UUID,
        owner: Mapping[str, Any] | None,
        sandbox: bool = False,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.graph = blueprint.graph
        self.registry = registry
        self.settings = settings
        self.run_id = run_id
        self.run_info = {"id": str(run_id), "workflow_id": str(workflow_id)}
        self.owner = expressions.owner_profile(owner)
        self.sandbox = sandbox
        self.credentials = credentials

    async def execute(self, trigger_data: Any, port: StepPort) -> RunOutcome:
        """Advance the run as far as it can go; its log lines carry ``run_id`` (and each
        node's, ``node_id``).

        Returns:
            ``succeeded`` / ``failed`` (with the failing node's error) / ``waiting`` (with the
            earliest wake-up time); every step result is written (flushed) by then.

        Raises:
            Whatever the port raises besides the step signals (e.g. a lost lease); running
            steps are cancelled first.
        """
        with logs.bound(run_id=self.run_id):
            return await self._advance(trigger_data, port)

    async def _advance(self, trigger_data: Any, port: StepPort) -> RunOutcome:
        graph = self.graph
        self._trigger_data = trigger_data
        self._outputs: dict[str, Any] = {}
        self._steps: dict[str, dict[str, Any]] = {}  # the `steps` template variable
        status: dict[str, NodeStatus] = {}
        resolved = dict.fromkeys(graph.nodes, 0)
        live = dict.fromkeys(graph.nodes, 0)
        ready: list[str] = [graph.trigger.id]
        newly_skipped: list[str] = []
        running: dict[asyncio.Task[_NodeResult], str] = {}
        suspended: list[Suspended] = []
        failure: dict[str, Any] | None = None

        def settle(source: str, is_live: Callable[[Any], bool]) -> None:
            stack = [(edge, is_live(edge)) for edge in graph.outgoing[source]]
            while stack:
                edge, alive = stack.pop()
                target = edge.target
                resolved[target] += 1
                live[target] += alive
                if resolved[target] < len(graph.incoming[target]):
                    continue
                if live[target]:
                    ready.append(target)
                else:
                    status[target] = "skipped"
                    self._set_output(target, None)
                    newly_skipped.append(target)
                    stack.extend((e, False) for e in graph.outgoing[target])

        try:
            while True:
                if newly_skipped:
                    await port.skip(sorted(newly_skipped, key=graph.order.__getitem__))
                    newly_skipped.clear()
                if failure is None:
                    for node_id in sorted(ready, key=graph.order.__getitem__):
                        task = asyncio.create_task(self._run_node(node_id, port))
                        running[task] = node_id
                ready.clear()
                if not running:
                    break
                await asyncio.sleep(0)  # new steps begin (an action's attempt count is a write)
                if not any(task.done() for task in running):
                    await port.flush()
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: graph.order[running[t]]):
                    node_id = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        result = task.result()
                        status[node_id] = result.status
                        self._set_output(node_id, result.output)
                        settle(node_id, _edge_filter(graph.nodes[node_id], result.branch))
                    elif isinstance(exc, Suspended):
                        status[node_id] = "waiting"
                        suspended.append(exc)
                    elif isinstance(exc, StepFailed):
                        status[node_id] = "failed"
                        if failure is None:
                            failure = {"node_id": node_id, **exc.error}
                    else:
                        raise exc
            await port.flush()
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise

        if failure is not None:
            return RunOutcome("failed", error=failure, node_status=status)
        if suspended:
            times = [s.wake_at for s in suspended if s.wake_at is not None]
            return RunOutcome(
                "waiting", wake_at=min(times, default=None), suspended=suspended, node_status=status
            )
        return RunOutcome("succeeded", output=self._run_output(status), node_status=status)

    # -- nodes ---------------------------------------------------------------------------

    def _set_output(self, node_id: str, output: Any) -> None:
        self._outputs[node_id] = output
        self._steps[node_id] = {"output": output}

    def _context(self) -> dict[str, Any]:
        return {
            "trigger_data": self._trigger_data,
            "steps": self._steps,
            "run": self.run_info,
            "owner": self.owner,
        }

    async def _run_node(self, node_id: str, port: StepPort) -> _NodeResult:
        with logs.bound(node_id=node_id):  # this node's own task
            return await self._run_node_bound(node_id, port)

    async def _run_node_bound(self, node_id: str, port: StepPort) -> _NodeResult:
        node = self.graph.nodes[node_id]
        if isinstance(node, TriggerNode):
            return _NodeResult(await port.run(node_id, self._trigger_step, NO_RETRY, pure=True))
        if isinstance(node, ActionNode):
            return await self._action(node, port)
        if isinstance(node, RouterNode):
            step = _bind(self._router_step, node)
            output = await port.run(node_id, step, NO_RETRY, pure=True)
            return _NodeResult(output, branch=output["branch"])
        if isinstance(node, DelayNode):
            await port.sleep(node_id, node.duration)
            return _NodeResult({"slept_seconds": node.duration})
        if isinstance(node, WaitForEventNode):
            return await self._wait(node, port)
        if isinstance(node, EndNode):
            step = _bind(self._end_step, node)
            return _NodeResult(await port.run(node_id, step, NO_RETRY, pure=True))
        raise TypeError(f"unknown node type {node!r}")

    async def _trigger_step(self, attempt: int) -> StepOutcome:
        return StepOutcome(input=None, output=self._trigger_data)

    async def _action(self, node: ActionNode, port: StepPort) -> _NodeResult:
        try:
            output = await port.run(
                node.id,
                metrics.timed_attempts(node.service, node.task, _bind(self._action_step, node)),
                self._retry(node),
                pure=not self.registry[node.service].side_effects,
            )
        except StepFailed as failed:
            if node.on_error != "continue":
                raise
            return _NodeResult(continued_output(failed.error), status="failed")
        return _NodeResult(output)

    async def _action_step(self, node: ActionNode, attempt: int) -> StepOutcome:
        """Resolve the params, load the node's credential, call the tool; whatever the step
        records (input, output, error) passes through the step's :class:`Redactor`, which knows
        the credential's values."""
        redact = Redactor()
        try:
            credential = await self._credential(node)
            if credential is not None:
                redact = Redactor(credential.secrets())
            outcome = await self._call(node, credential)
        except StepError as exc:
            redacted = exc.redacted(redact)
            log.warning(
                "%s.%s attempt %d failed (%s%s): %s",
                node.service,
                node.task,
                attempt,
                redacted.code,
                ", retryable" if redacted.retryable else "",
                redacted.message,
            )
            raise redacted from None
        storable_output = redact(outcome.output)
        return _storable(StepOutcome(input=redact(outcome.input), output=storable_output))

    async def _credential(self, node: ActionNode) -> Credential | None:
        """The node's credential: decrypted for a real call, a bare reference when the step is
        sandboxed (a dry run shows which credential, never its values).

        Raises:
            StepError: the credential is missing, of a type the tool does not take, or cannot
                be read (not retryable); it could not be loaded (retryable).
        """
        if node.credential is None:
            return None
        if self.sandbox or self.settings.sandbox or self.credentials is None:
            return Credential(node.credential)
        tool = self.registry[node.service]
        try:
            return await self.credentials.load(node.credential, tool.credential_types)
        except CredentialUnavailable as exc:
            raise StepError(
                exc.code,
                exc.message,
                retryable=False,
                details={"loc": ["credential"], "credential": node.credential},
            ) from None
        except Exception as exc:  # the database, mostly: worth another attempt
            raise StepError(
                "credential_load_failed",
                f"credential '{node.credential}' could not be loaded: {type(exc).__name__}",
                retryable=True,
            ) from None

    async def _call(self, node: ActionNode, credential: Credential | None) -> StepOutcome:
        tool = self.registry[node.service]
        task = tool.tasks[node.task]
        try:
            resolved = expressions.render(node.params, self._context())
        except expressions.ExpressionError as exc:
            raise StepError("expression_error", str(exc), retryable=False) from None
        try:
            storable.check(resolved)
        except storable.Unstorable as exc:
            raise StepError(
                "invalid_params",
                exc.describe("params"),
                retryable=False,
                details={"errors": [{"loc": ["params", *exc.path], "message": exc.reason}]},
            ) from None
        try:
            params = task.params.model_validate(resolved)
        except ValidationError as exc:
            problems = [
                {"loc": ["params", *err["loc"]], "message": err["msg"]}
                for err in exc.errors(include_url=False)
            ]
            first = problems[0]
            raise StepError(
                "invalid_params",
                f"{'.'.join(map(str, first['loc']))}: {first['message']}",
                retryable=False,
                input=resolved,
                details={"errors": problems},
            ) from None
        context = ToolContext(
            idempotency_key=f"{self.run_id}:{node.id}",
            settings=self.settings,
            sandbox=self.sandbox,
            credential=credential,
        )
        try:
            output = await tool.execute(node.task, params, context)
        except ToolError as exc:
            raise StepError(
                exc.code,
                exc.message,
                retryable=exc.retryable,
                input=resolved,
                details=exc.details,
                retry_after=exc.retry_after,
            ) from None
        except Exception as exc:  # a tool bug must not lose the run: record it and retry
            raise StepError(
                "tool_crashed", f"{type(exc).__name__}: {exc}", retryable=True, input=resolved
            ) from None
        return StepOutcome(input=resolved, output=output)

    def _retry(self, node: ActionNode) -> Retry:
        s = self.settings
        policy = node.retry
        return Retry(
            max_attempts=policy.max_attempts if policy else s.retry_max_attempts,
            initial_backoff=(
                policy.initial_backoff_seconds
                if policy and policy.initial_backoff_seconds is not None
                else s.retry_initial_backoff_seconds
            ),
            max_backoff=(
                policy.max_backoff_seconds
                if policy and policy.max_backoff_seconds is not None
                else s.retry_max_backoff_seconds
            ),
            jitter=s.retry_jitter_seconds,
        )

    async def _router_step(self, node: RouterNode, attempt: int) -> StepOutcome:
        """Take the first branch whose condition holds, else the default. The logged input
        says why: ``{"conditions": [{"branch", "when", "operands": {reference: value},
        "result": bool}]}`` for each condition evaluated, in order (the failing one carries
        ``"error"`` instead of ``"result"``)."""
        context = self._context()
        checked: list[dict[str, Any]] = []
        for condition in node.conditions:
            entry: dict[str, Any] = {"branch": condition.branch, "when": condition.when}
            checked.append(entry)
            try:
                entry["operands"] = expressions.operands(condition.when, context)
                matched = bool(expressions.evaluate(condition.when, context))
            except expressions.ExpressionError as exc:
                entry["error"] = str(exc)
                raise StepError(
                    "expression_error",
                    f"branch '{condition.branch}': {exc}",
                    retryable=False,
                    input={"conditions": checked},
                ) from None
            entry["result"] = matched
            if matched:
                return StepOutcome(
                    input={"conditions": checked}, output={"branch": condition.branch}
                )
        return StepOutcome(input={"conditions": checked}, output={"branch": node.default})

    async def _wait(self, node: WaitForEventNode, port: StepPort) -> _NodeResult:
        snapshot = {**self._context(), "steps": dict(self._steps)}
        event = await port.wait_for_event(node.id, node.event, node.match, snapshot, node.timeout)
        if event is not None:
            return _NodeResult({"event": event, "timed_out": False})
        return _NodeResult({"event": None, "timed_out": True}, branch=TIMEOUT_BRANCH)

    async def _end_step(self, node: EndNode, attempt: int) -> StepOutcome:
        try:
            output = expressions.render(node.output, self._context())
        except expressions.ExpressionError as exc:
            raise StepError("expression_error", str(exc), retryable=False) from None
        return _storable(StepOutcome(input=None, output=output))

    def _run_output(self, status: dict[str, NodeStatus]) -> Any:
        graph = self.graph
        ends = {
            node_id: self._outputs[node_id]
            for node_id, node in graph.nodes.items()
            if isinstance(node, EndNode)
            and status.get(node_id) == "succeeded"
            and node.output is not None
        }
        if len(ends) == 1:
            return next(iter(ends.values()))
        if ends:
            return ends
        return {
            node_id: self._outputs[node_id]
            for node_id in graph.nodes
            if not graph.outgoing[node_id] and status.get(node_id) in ("succeeded", "failed")
        }


def _storable(outcome: StepOutcome) -> StepOutcome:
    """The outcome with its output as PostgreSQL stores it (:func:`storable.as_stored`: the
    run goes on with exactly what a replay of the checkpoint gives), if it can store it.

    Raises:
        StepError: ``output_not_storable`` (not retryable: the same call gives the same data).
    """
    try:
        storable.check(outcome.output)
    except storable.Unstorable as exc:
        raise StepError(
            "output_not_storable",
            f"the step's output cannot be stored: {exc.describe('output')}",
            retryable=False,
            input=outcome.input,
            details={"loc": ["output", *exc.path], "reason": exc.reason},
        ) from None
    return dataclasses.replace(outcome, output=storable.as_stored(outcome.output))


def _bind(fn: Callable[[Any, int], Awaitable[StepOutcome]], node: Any) -> StepFn:
    async def step(attempt: int) -> StepOutcome:
        return await fn(node, attempt)

    return step


def _edge_filter(node: Any, branch: str | None) -> Callable[[Any], bool]:
    if isinstance(node, RouterNode):
        return lambda edge: bool(edge.branch == branch)
    if isinstance(node, WaitForEventNode):
        if branch == TIMEOUT_BRANCH:
            return lambda edge: bool(edge.branch == TIMEOUT_BRANCH)
        return lambda edge: edge.branch is None
    return lambda edge: True
