"""Dry run: execute a blueprint once, in memory, with every tool in sandbox mode.

Nothing is persisted and nothing leaves the process (tools return the request they would send;
``transform`` runs for real since it has no side effects). Delays are skipped; a wait returns
the sample event given for it, else times out. Retries are not attempted: the first failure is
reported. Templates see the owner's profile as it is now (``owner``), as a run started now
would. The result shows each node's resolved input and output, so a user sees what a run would
do before activating.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from blueprint_engine.config import Settings
from blueprint_engine.integrations import TOOL_REGISTRY, BaseTool, ToolResources
from blueprint_engine.store.logs import node_of
from blueprint_engine.workflows.engine import Engine
from blueprint_engine.workflows.schema import Blueprint
from blueprint_engine.workflows.steps import (
    ChildRun,
    Retry,
    StepError,
    StepFailed,
    StepFn,
)


class DryRunPort:
    """An in-memory :class:`~blueprint_engine.workflows.engine.StepPort` that records every node."""

    def __init__(self, events: dict[str, Any]) -> None:
        self.events = events
        self.nodes: dict[str, dict[str, Any]] = {}

    async def run(self, step_id: str, fn: StepFn, retry: Retry, *, pure: bool = False) -> Any:
        """Run once; a failure is recorded and raised as final."""
        try:
            outcome = await fn(1)
        except StepError as exc:
            self.nodes[step_id] = {"status": "failed", "input": exc.input, "error": exc.to_error()}
            raise StepFailed(exc.to_error()) from None
        self.nodes[step_id] = {
            "status": "succeeded",
            "input": outcome.input,
            "output": outcome.output,
        }
        return outcome.output

    async def sleep(self, step_id: str, seconds: float) -> None:
        """Skipped: recorded as done at once."""
        self.nodes[step_id] = {
            "status": "succeeded",
            "input": {"seconds": seconds},
            "output": {"slept_seconds": seconds, "short_circuited": True},
        }

    async def wait_for_event(
        self,
        step_id: str,
        event: str,
        match: str | None,
        context: dict[str, Any],
        timeout_seconds: float,
    ) -> dict[str, Any] | None:
        """The sample event for this node if one was given, else a timeout."""
        received = None
        if step_id in self.events:
            received = {"id": "dry-run", "name": event, "data": self.events[step_id]}
        self.nodes[step_id] = {
            "status": "succeeded",
            "input": {"event": event, "match": match, "timeout_seconds": timeout_seconds},
            "output": {"event": received, "timed_out": received is None, "short_circuited": True},
        }
        return received

    async def run_child(self, step_id: str, child: ChildRun) -> Any:
        """Not started: a dry run leaves nothing behind; recorded with what it would start."""
        output = {"sandbox": True, "short_circuited": True}
        self.nodes[step_id] = {
            "status": "succeeded",
            "input": {
                "workflow_id": str(child.workflow_id),
                "version": child.version,
                "input": child.input,
            },
            "output": output,
        }
        return output

    async def skip(self, node_ids: list[str]) -> None:
        """Record skipped nodes."""
        for node_id in node_ids:
            self.nodes[node_id] = {"status": "skipped"}

    async def flush(self) -> None:
        """Nothing to write."""


async def dry_run(
    blueprint: Blueprint,
    payload: Any,
    settings: Settings,
    *,
    owner: Mapping[str, Any] | None,
    tools: ToolResources,
    events: dict[str, Any] | None = None,
    registry: dict[str, BaseTool] | None = None,
) -> dict[str, Any]:
    """Execute ``blueprint`` in sandbox mode and report every node. ``owner``: the profile
    templates see as ``owner`` (``{"display_name", "email", "phone"}``); ``tools``: the
    process's (a sandboxed step uses neither its database nor its HTTP client, a tool without
    side effects may).

    Returns:
        ``{"status", "output", "error", "sandbox": True, "nodes": [{"id", "type", "name",
        "status", "input"?, "output"?, "error"?}], "steps": [...]}``: ``nodes`` in blueprint
        order; ``steps`` the steps of loop bodies (``{"step_id": "each.0.send", "node_id":
        "send", "status", ...}``) in the order they ran.
    """
    port = DryRunPort(events or {})
    engine = Engine(
        blueprint,
        registry=registry if registry is not None else TOOL_REGISTRY,
        settings=settings,
        run_id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
        owner=owner,
        tools=tools,
        sandbox=True,
    )
    outcome = await engine.execute(payload, port)
    nodes = [
        {"id": n.id, "type": n.type, "name": n.name, **port.nodes.get(n.id, {"status": "pending"})}
        for n in blueprint.nodes
    ]
    steps = [
        {"step_id": step_id, "node_id": node_of(step_id), **result}
        for step_id, result in port.nodes.items()
        if step_id != node_of(step_id)
    ]
    return {
        "status": outcome.status,
        "output": outcome.output,
        "error": outcome.error,
        "sandbox": True,
        "nodes": nodes,
        "steps": steps,
    }
