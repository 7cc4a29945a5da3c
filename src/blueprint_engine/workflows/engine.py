"""Blueprint traversal: the deterministic part of a run.

The engine walks the graph; each node kind (:mod:`.nodes`) does its side effects through the
runner's :class:`~.steps.StepPort`: ``run`` (replay a checkpoint, else execute and record),
``sleep``, ``wait_for_event``, ``run_child`` and ``skip``. Step ids are the node ids (prefixed
inside a loop body), so a replay finds its checkpoints; everything outside a step
is a pure function of the blueprint, the trigger data, the owner's profile (a snapshot taken
when the run was queued, see :class:`Engine`) and the recorded step results.

Semantics:
- A node runs once all its incoming edges are resolved and at least one is live (a join waits
  for every live parent; skipped parents don't block it).
- An edge is dead when its source was skipped, or when its source is a router that chose another
  branch, or a wait that ended the other way (event vs ``timeout``). A node whose incoming
  edges are all dead is ``skipped``, and so on downstream.
- Ready nodes run concurrently (independent branches overlap).
- A node that fails for good fails the run with its error (see each kind for retries and
  ``on_error: "continue"``). After a failure no new node starts; steps already running finish
  and are recorded.
- Whatever a step does wrong fails that step, never the runner (:mod:`.nodes.action`).
- A loop's body is walked the same way, once per item, as a sub-graph (:mod:`.nodes.foreach`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from blueprint_engine import logs
from blueprint_engine.config import Settings
from blueprint_engine.integrations import BaseTool, ToolResources
from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.graph import Graph
from blueprint_engine.workflows.nodes import EndNode, NodeResult, WalkOutcome
from blueprint_engine.workflows.nodes.base import Edge, fail_step
from blueprint_engine.workflows.schema import Blueprint
from blueprint_engine.workflows.steps import (
    CredentialSource,
    StepError,
    StepFailed,
    StepPort,
    Suspended,
)

log = logging.getLogger(__name__)

NodeStatus = Literal["succeeded", "failed", "skipped", "waiting"]


@dataclass
class RunOutcome:
    """Where an execution pass left the run."""

    status: Literal["succeeded", "failed", "waiting"]
    output: Any = None
    error: dict[str, Any] | None = None
    wake_at: datetime | None = None
    suspended: list[Suspended] = field(default_factory=list)
    node_status: dict[str, str] = field(default_factory=dict)


class Engine:
    """Executes one run of a blueprint through a :class:`~.steps.StepPort`.

    Args:
        blueprint: a validated blueprint.
        registry: service -> tool.
        settings: retry defaults, loop limits and tool credentials.
        run_id, workflow_id: exposed to templates as ``run.id`` / ``run.workflow_id``; the tool
            idempotency key is ``<run_id>:<step_id>``.
        owner: the profile of the run's owner, ``{"display_name", "email", "phone"}`` (values
            text or null), exposed to templates as ``owner.<field>``; a field that is null is
            undefined there, so a step that uses it fails with ``expression_error`` naming the
            field and ``PATCH /me`` (:class:`~blueprint_engine.workflows.expressions.OwnerProfile`).
        tools: the process's database and HTTP client, lent to every tool call.
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
        registry: Mapping[str, BaseTool],
        settings: Settings,
        run_id: UUID,
        workflow_id: UUID,
        owner: Mapping[str, Any] | None,
        tools: ToolResources,
        sandbox: bool = False,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.graph = blueprint.graph
        self.registry = registry
        self.settings = settings
        self.run_id = run_id
        self.run_info = {"id": str(run_id), "workflow_id": str(workflow_id)}
        self.owner = expressions.owner_profile(owner)
        self.tools = tools
        self.sandbox = sandbox
        self.credentials = credentials
        #: Nodes reached in this pass, loop bodies' included, replayed ones too: the same count
        #: on every pass, since replays take the same path (bounded by ``RUN_MAX_STEPS``).
        self.nodes_started = 0

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
        context = {
            "trigger_data": trigger_data,
            "steps": {},
            "run": self.run_info,
            "owner": self.owner,
        }
        with logs.bound(run_id=self.run_id):
            outcome = await Walk(self, port, self.graph, "", context).run()
        if outcome.status == "waiting":
            times = [s.wake_at for s in outcome.suspended if s.wake_at is not None]
            return RunOutcome(
                "waiting",
                wake_at=min(times, default=None),
                suspended=outcome.suspended,
                node_status=outcome.node_status,
            )
        status: Literal["succeeded", "failed"] = (
            "failed" if outcome.status == "failed" else "succeeded"
        )
        return RunOutcome(
            status, output=outcome.output, error=outcome.error, node_status=outcome.node_status
        )


class Walk:
    """One walk of a graph: the run's, or one item of a loop's body (the node kinds see it as
    their :class:`~.nodes.NodeRun`).

    A node runs once all its incoming edges are resolved and at least one is live (a join
    waits for every live parent; skipped parents don't block it). An edge is dead when its
    source was skipped or chose other edges (:meth:`~.nodes.NodeKind.is_live`); a node whose
    incoming edges are all dead is ``skipped``, and so on downstream. Ready nodes run
    concurrently.
    """

    def __init__(
        self, engine: Engine, port: StepPort, graph: Graph, prefix: str, context: dict[str, Any]
    ) -> None:
        self.port = port
        self.settings = engine.settings
        self.registry = engine.registry
        self.tools = engine.tools
        self.sandbox = engine.sandbox
        self.credentials = engine.credentials
        self.run_id = engine.run_id
        self._engine = engine
        self._graph = graph
        self._prefix = prefix
        self._context = context
        self._outputs: dict[str, Any] = {}

    def step_id(self, node_id: str) -> str:
        """``node_id``'s step id in this walk."""
        return self._prefix + node_id

    def context(self) -> dict[str, Any]:
        """The template context; ``steps`` grows as nodes finish."""
        return self._context

    async def walk(self, graph: Graph, prefix: str, names: dict[str, Any]) -> WalkOutcome:
        """Walk ``graph`` (a loop body) with step ids under ``prefix``; its templates see this
        walk's context as it is now, plus ``names``."""
        context = {**self._context, **names, "steps": dict(self._context["steps"])}
        return await Walk(self._engine, self.port, graph, prefix, context).run()

    def _set_output(self, node_id: str, output: Any) -> None:
        self._outputs[node_id] = output
        self._context["steps"][node_id] = {"output": output}

    async def run(self) -> WalkOutcome:
        """Walk from the graph's entries as far as it goes (see the class).

        Raises:
            Whatever the port raises besides the step signals; running steps are cancelled
            first.
        """
        graph = self._graph
        status: dict[str, str] = {}
        resolved = dict.fromkeys(graph.nodes, 0)
        live = dict.fromkeys(graph.nodes, 0)
        ready: list[str] = list(graph.entries)
        newly_skipped: list[str] = []
        running: dict[asyncio.Task[NodeResult], str] = {}
        suspended: list[Suspended] = []
        failure: dict[str, Any] | None = None

        def settle(source: str, is_live: Callable[[Edge], bool]) -> None:
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
                    newly_skipped.sort(key=graph.order.__getitem__)
                    await self.port.skip([self.step_id(n) for n in newly_skipped])
                    newly_skipped.clear()
                if failure is None:
                    for node_id in sorted(ready, key=graph.order.__getitem__):
                        task = asyncio.create_task(self._run_node(node_id))
                        running[task] = node_id
                ready.clear()
                if not running:
                    break
                await asyncio.sleep(0)  # new steps begin (an action's attempt count is a write)
                if not any(task.done() for task in running):
                    await self.port.flush()
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: graph.order[running[t]]):
                    node_id = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        result = task.result()
                        status[node_id] = result.status
                        self._set_output(node_id, result.output)
                        node = graph.nodes[node_id]
                        settle(node_id, lambda edge: node.is_live(edge, result))  # noqa: B023
                    elif isinstance(exc, Suspended):
                        status[node_id] = "waiting"
                        suspended.extend(exc.flat())
                    elif isinstance(exc, StepFailed):
                        status[node_id] = "failed"
                        if failure is None:
                            failure = {"node_id": node_id, **exc.error}
                    else:
                        raise exc
            if not self._prefix:  # the run's walk; a loop item's results go with the next write
                await self.port.flush()
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise

        if failure is not None:
            return WalkOutcome("failed", error=failure, node_status=status)
        if suspended:
            return WalkOutcome("waiting", suspended=suspended, node_status=status)
        return WalkOutcome("succeeded", output=self._output(status), node_status=status)

    async def _run_node(self, node_id: str) -> NodeResult:
        with logs.bound(node_id=self.step_id(node_id)):  # this node's own task
            self._engine.nodes_started += 1
            limit = self.settings.run_max_steps
            if self._engine.nodes_started > limit:
                await fail_step(
                    self,
                    self.step_id(node_id),
                    StepError(
                        "step_budget_exceeded",
                        f"the run reached more than {limit} steps (RUN_MAX_STEPS): loops over "
                        "too many items, or loops nested in loops",
                        retryable=False,
                    ),
                )
            return await self._graph.nodes[node_id].run(self)

    def _output(self, status: dict[str, str]) -> Any:
        """The walk's output: the one end node's output, else every end's by id, else the
        outputs of the nodes without outgoing edges that ran."""
        graph = self._graph
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
