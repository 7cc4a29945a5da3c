"""The node kinds: one module each, registered here once.

Adding a kind is one module (a :class:`~.base.NodeKind` subclass) and one entry in
:data:`NODE_KINDS`; the blueprint's union and JSON Schema, its validation, the engine and the
architect's draft format are derived from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union, get_args

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
from blueprint_engine.workflows.nodes.drafting import DraftField, DraftValues
from blueprint_engine.workflows.nodes.end import EndNode
from blueprint_engine.workflows.nodes.foreach import BODY_NAMES, Body, ForeachNode
from blueprint_engine.workflows.nodes.router import Condition, RouterNode
from blueprint_engine.workflows.nodes.trigger import (
    TRIGGER_KINDS,
    TRIGGER_NAMES,
    IntentSlot,
    IntentTrigger,
    ScheduleTrigger,
    Trigger,
    TriggerNode,
    WebhookTrigger,
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


def _literal(kind: type[NodeKind], field: str) -> str:
    value: str = get_args(kind.model_fields[field].annotation)[0]
    return value


def kind_name(kind: type[NodeKind]) -> str:
    """What a kind is called: its ``type`` (``action``), or for a trigger kind its ``trigger``
    and "trigger" (``intent trigger``)."""
    if issubclass(kind, TriggerNode):
        return f"{_literal(kind, 'trigger')} trigger"
    return _literal(kind, "type")


def kind_of(node_type: str, trigger: str | None = None) -> type[NodeKind] | None:
    """The class of a node of type ``node_type`` (a trigger's by its ``trigger``, ``manual``
    when None); None when there is no such kind."""
    if node_type == "trigger":
        return dict(zip(TRIGGER_NAMES, TRIGGER_KINDS, strict=True)).get(trigger or "manual")
    kind = NODE_KINDS.get(node_type)
    return kind if isinstance(kind, type) and issubclass(kind, NodeKind) else None


__all__ = [
    "BODY_NAMES",
    "NODE_KINDS",
    "NODE_TYPES",
    "TIMEOUT_BRANCH",
    "TRIGGER_NAMES",
    "ActionNode",
    "Body",
    "Checker",
    "Condition",
    "DelayNode",
    "DraftField",
    "DraftValues",
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
    "WebhookTrigger",
    "WorkflowNode",
    "kind_classes",
    "kind_name",
    "kind_of",
    "parse_duration",
]
