"""The node kinds: one module each, registered here once.

Adding a kind is one module (a :class:`~.base.NodeKind` subclass) and one entry in
:data:`NODE_KINDS`; the blueprint's union and JSON Schema, its validation, the engine and the
architect's draft format are derived from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from blueprint_engine.workflows.nodes.action import ActionNode, RetryPolicy
from blueprint_engine.workflows.nodes.base import (
    Checker,
    Edge,
    NodeKind,
    NodeResult,
    NodeRun,
    Position,
    TemplateSite,
    WalkOutcome,
    parse_duration,
)
from blueprint_engine.workflows.nodes.delay import DelayNode
from blueprint_engine.workflows.nodes.end import EndNode
from blueprint_engine.workflows.nodes.foreach import BODY_NAMES, Body, ForeachNode
from blueprint_engine.workflows.nodes.router import Condition, RouterNode
from blueprint_engine.workflows.nodes.trigger import (
    TRIGGER_KINDS,
    IntentSlot,
    IntentTrigger,
    ScheduleTrigger,
    Trigger,
    TriggerNode,
)
from blueprint_engine.workflows.nodes.wait import TIMEOUT_BRANCH, WaitForEventNode
from blueprint_engine.workflows.nodes.workflow import WorkflowNode

#: Every node kind by its ``type``; the trigger kinds are one union (see ``trigger``).
NODE_KINDS: dict[str, Any] = {
    "trigger": Trigger,
    "action": ActionNode,
    "router": RouterNode,
    "delay": DelayNode,
    "wait_for_event": WaitForEventNode,
    "foreach": ForeachNode,
    "workflow": WorkflowNode,
    "end": EndNode,
}
NODE_TYPES = tuple(NODE_KINDS)

if TYPE_CHECKING:
    Node = NodeKind
else:
    #: A node of any kind, told apart by ``type``.
    Node = Annotated[Union[tuple(NODE_KINDS.values())], Field(discriminator="type")]  # noqa: UP007

Body.model_rebuild(_types_namespace={"Node": Node})
ForeachNode.model_rebuild()


def kind_classes() -> list[type[NodeKind]]:
    """Every concrete node class (each trigger kind on its own), in registry order."""
    classes: list[type[NodeKind]] = []
    for kind in NODE_KINDS.values():
        if kind is Trigger:
            classes.extend(TRIGGER_KINDS)
        else:
            classes.append(kind)
    return classes


__all__ = [
    "BODY_NAMES",
    "NODE_KINDS",
    "NODE_TYPES",
    "TIMEOUT_BRANCH",
    "ActionNode",
    "Body",
    "Checker",
    "Condition",
    "DelayNode",
    "Edge",
    "EndNode",
    "ForeachNode",
    "IntentSlot",
    "IntentTrigger",
    "Node",
    "NodeKind",
    "NodeResult",
    "NodeRun",
    "Position",
    "RetryPolicy",
    "RouterNode",
    "ScheduleTrigger",
    "TemplateSite",
    "TriggerNode",
    "WaitForEventNode",
    "WalkOutcome",
    "WorkflowNode",
    "parse_duration",
]
