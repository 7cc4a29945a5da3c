"""The architect's answer format and prompt rules, derived from the node kinds.

The model answers with OpenAI structured output in strict mode: every property required,
``additionalProperties: false``, no free-form objects. So a node is one flat object
(:data:`DraftNode`) holding every kind's draft fields
(:attr:`~blueprint_engine.workflows.nodes.NodeKind.draft_fields`), each nullable and null when
it does not belong to the node's kind, and a JSON value travels as a string (``params_json``).
:func:`to_blueprint` hands each node to its kind's
:meth:`~blueprint_engine.workflows.nodes.NodeKind.from_draft`, and :func:`kind_rules` writes
the prompt's rules from each kind's ``summary`` and ``draft_rule``.

Nothing here names a kind: a new node kind (or trigger kind) is drafted once its own module
declares its draft fields and rule and it is registered in ``NODE_KINDS``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model

from blueprint_engine.workflows.nodes import (
    NODE_TYPES,
    TRIGGER_NAMES,
    DraftValues,
    NodeKind,
    TriggerNode,
    kind_classes,
    kind_name,
    kind_of,
)


class Strict(BaseModel):
    """Base of the draft models: unknown fields are errors (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


def draft_type(annotation: Any) -> Any:
    """``annotation`` as the model may write it in strict mode: constraints dropped
    (``Annotated``), a blueprint model replaced by its strict copy (every field required, no
    defaults), lists and ``X | None`` kept.

    Raises:
        TypeError: a type strict mode cannot express (``Any``, ``dict``, a union of several
            types): the kind should declare a ``<field>_json`` string instead.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        return draft_type(get_args(annotation)[0])
    if origin is Literal or annotation in (str, int, float, bool):
        return annotation
    if origin is list:
        return list[draft_type(get_args(annotation)[0])]  # type: ignore[misc]
    if origin in (Union, types.UnionType):
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(present) == 1:
            return draft_type(present[0]) | None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _strict_copy(annotation)
    raise TypeError(
        f"{annotation!r} cannot be written in strict mode; declare a '<field>_json' string"
    )


@cache
def _strict_copy(model: type[BaseModel]) -> type[Strict]:
    """``Draft<Model>``: the same fields, all required, without defaults or constraints."""
    fields: dict[str, Any] = {
        name: (draft_type(info.annotation), Field(description=info.description))
        for name, info in model.model_fields.items()
    }
    return create_model(f"Draft{model.__name__}", __base__=Strict, __doc__=model.__doc__, **fields)


class DraftNodeBase(Strict):
    """One node, flat: fields that do not apply to the node's kind are null."""

    id: str = Field(description="Unique identifier: letters, digits, underscores (snake_case).")
    type: str
    name: str = Field(description="Short display name for the canvas.")
    trigger: str | None


class DraftEdge(Strict):
    """A directed edge; ``branch`` for router branches and a wait's 'timeout' edge."""

    source: str
    target: str
    branch: str | None


class DraftBlueprintBase(Strict):
    """The model's answer."""

    name: str
    description: str
    nodes: list[DraftNodeBase]
    edges: list[DraftEdge]


@dataclass
class _Field:
    """A draft field and the kinds that write it, with what each says about it."""

    annotation: Any
    uses: list[tuple[str, str]] = field(default_factory=list)

    def description(self) -> str:
        if len(self.uses) == 1:
            kind, text = self.uses[0]
            return f"{kind} only: {text}"
        by_text: dict[str, list[str]] = {}
        for kind, text in self.uses:
            by_text.setdefault(text, []).append(kind)
        return " ".join(f"{', '.join(kinds)}: {text}" for text, kinds in by_text.items())


def draft_fields() -> dict[str, _Field]:
    """Every kind's draft fields by name, in registry order; kinds may share a name when they
    write the same type (``event``, ``timeout``, ``on_error``).

    Raises:
        TypeError: two kinds write one name with different types, or a kind declares a field
            every node has (``id``, ``type``, ``name``, ``trigger``).
    """
    fields: dict[str, _Field] = {}
    for kind in kind_classes():
        for name, declared in kind.draft_fields.items():
            if name in DraftNodeBase.model_fields:
                raise TypeError(
                    f"{kind.__name__} declares draft field '{name}', which every node has"
                )
            entry = fields.setdefault(name, _Field(declared.annotation))
            if entry.annotation != declared.annotation:
                raise TypeError(
                    f"draft field '{name}': {kind.__name__} writes {declared.annotation!r}, "
                    f"another kind {entry.annotation!r}"
                )
            entry.uses.append((kind_name(kind), declared.description))
    return fields


def _trigger_description() -> str:
    kinds = "; ".join(
        f"{name}: {kind.summary.rstrip('.')}"
        for name, kind in zip(TRIGGER_NAMES, _kinds_of(TriggerNode), strict=True)
    )
    return f"trigger only: how runs start ({kinds})"


def _kinds_of(base: type[NodeKind]) -> list[type[NodeKind]]:
    """The registered kinds that are ``base`` or derive from it, in registry order."""
    return [kind for kind in kind_classes() if issubclass(kind, base)]


def _node_model() -> type[DraftNodeBase]:
    fields: dict[str, Any] = {
        "type": (Literal.__getitem__(NODE_TYPES), Field(description="The node's kind.")),
        "trigger": (
            Literal.__getitem__(TRIGGER_NAMES) | None,  # type: ignore[operator]
            Field(description=_trigger_description()),
        ),
    }
    for name, entry in draft_fields().items():
        fields[name] = (
            draft_type(entry.annotation) | None,
            Field(description=entry.description()),
        )
    return create_model(
        "DraftNode", __base__=DraftNodeBase, __doc__=DraftNodeBase.__doc__, **fields
    )


#: One node as the model writes it: ``id``, ``type``, ``name``, ``trigger`` and every kind's
#: draft fields, all present, null where they do not apply.
DraftNode = _node_model()
#: The model's answer: ``{name, description, nodes: [DraftNode], edges: [DraftEdge]}``.
DraftBlueprint: type[DraftBlueprintBase] = create_model(
    "DraftBlueprint",
    __base__=DraftBlueprintBase,
    __doc__=DraftBlueprintBase.__doc__,
    nodes=(list[DraftNode], ...),  # type: ignore[valid-type]
)


def to_blueprint(draft: DraftBlueprintBase) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Convert the model's flat draft into blueprint JSON, each node by its kind's
    ``from_draft``.

    Returns:
        ``(blueprint, issues)``: issues are problems the validator cannot see (JSON in a string
        that does not parse), as ``{"loc": ["nodes", i, "<draft field>"], "node_id",
        "message"}``.
    """
    issues: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for i, drafted in enumerate(draft.nodes):
        node: dict[str, Any] = {"id": drafted.id, "type": drafted.type, "name": drafted.name}
        kind = kind_of(drafted.type, drafted.trigger)
        if kind is not None:  # else the validator names the unknown type
            values = DraftValues(drafted.model_dump())
            node.update(kind.from_draft(values))
            for name, message in values.problems:
                issues.append(
                    {"loc": ["nodes", i, name], "node_id": drafted.id, "message": message}
                )
        nodes.append(node)
    edges = [
        {"source": e.source, "target": e.target, **({"branch": e.branch} if e.branch else {})}
        for e in draft.edges
    ]
    blueprint = {
        "schema_version": 1,
        "name": draft.name,
        "description": draft.description,
        "nodes": nodes,
        "edges": edges,
    }
    return blueprint, issues


def kind_rules() -> str:
    """The prompt's section on node kinds: for each, its name, its draft fields, what it does
    (``summary``) and how to write it (``draft_rule``); the trigger kinds under ``trigger``."""
    lines = ["Node kinds (`type`) and how to write each; fields of other kinds stay null:"]
    for kind in kind_classes():
        fields = ", ".join(kind.draft_fields)
        has = f" ({fields})" if fields else ""
        if issubclass(kind, TriggerNode):
            if kind is _kinds_of(TriggerNode)[0]:
                lines.append(f"- trigger: {TriggerNode.summary} {TriggerNode.draft_rule}")
            name = kind_name(kind).removesuffix(" trigger")
            lines.append(f'  - `trigger` "{name}"{has}: {kind.summary} {kind.draft_rule}')
        else:
            lines.append(f"- {kind_name(kind)}{has}: {kind.summary} {kind.draft_rule}")
    return "\n".join(lines)
