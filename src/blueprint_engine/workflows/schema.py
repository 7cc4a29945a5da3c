"""The blueprint model (schema version 1) and its validation.

A blueprint is data: ``{"schema_version": 1, "nodes": [...], "edges": [...]}``. The node kinds
(``trigger``, ``action``, ``router``, ``delay``, ``wait_for_event``, ``foreach``, ``workflow``,
``end``) are declared in :mod:`blueprint_engine.workflows.nodes`, one module each, with their
fields, rules and behaviour; this module assembles them into the blueprint and checks the
graph: one trigger, no cycles, everything reachable, edge labels each kind allows, templates
that reference only steps that run before them (a loop body's also its ``item`` and
``index``), node ids unique across the blueprint and its loop bodies.

Every node may carry a display ``name`` and a canvas ``position {x, y}``.
:func:`validate_blueprint` reports every problem with the node id and the field path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, ValidationError

from blueprint_engine.errors import InvalidBlueprint
from blueprint_engine.integrations import BaseTool, public_tools
from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.graph import Graph
from blueprint_engine.workflows.nodes import (
    BODY_NAMES,
    NODE_TYPES,
    Body,
    Edge,
    Node,
    NodeKind,
    TemplateSite,
    TriggerNode,
)
from blueprint_engine.workflows.nodes.base import Loc, Model
from blueprint_engine.workflows.nodes.trigger import TRIGGER_NAMES

SCHEMA_VERSION: Literal[1] = 1
MAX_NODES = 500
#: Most template tokens in one blueprint: compiling them all takes about a second of CPU, in
#: a worker thread (:func:`validate_blueprint_async`).
MAX_TEMPLATE_TOKENS = 20_000
#: How deep loops may nest (a foreach in a foreach's body…).
MAX_BODY_DEPTH = 3


class Blueprint(Model):
    """A workflow graph. Validate untrusted input with :func:`validate_blueprint`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    nodes: list[Node] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[Edge] = Field(default_factory=list)

    @cached_property
    def graph(self) -> Graph:
        """Its :class:`Graph`, built once (a blueprint is not changed after validation; each
        run of a cached version uses the same one)."""
        return Graph(self)

    def walk(self) -> Iterator[tuple[Loc, Node]]:
        """Every node with its path, loop bodies' nodes included (``["nodes", 2, "body",
        "nodes", 0]``), in order."""
        yield from _walk(self.nodes, ["nodes"])

    @property
    def trigger(self) -> TriggerNode:
        """Its trigger node (a validated blueprint has exactly one)."""
        return next(n for n in self.nodes if isinstance(n, TriggerNode))


def template_sites(blueprint: Blueprint) -> Iterator[TemplateSite]:
    """Every template and condition of ``blueprint``, loop bodies included, in node order."""
    for loc, node in blueprint.walk():
        yield from node.template_sites(loc)


def _walk(nodes: list[Node], loc: Loc) -> Iterator[tuple[Loc, Node]]:
    for i, node in enumerate(nodes):
        yield [*loc, i], node
        body = getattr(node, "body", None)
        if isinstance(body, Body):
            yield from _walk(body.nodes, [*loc, i, "body", "nodes"])


def blueprint_json_schema() -> dict[str, Any]:
    """The JSON Schema of a blueprint (served at ``GET /blueprint/schema``)."""
    return Blueprint.model_json_schema()


def validate_blueprint(data: Any, registry: dict[str, BaseTool] | None = None) -> Blueprint:
    """Parse and check a blueprint.

    Args:
        data: JSON-like blueprint.
        registry: tool catalog; default the public tools: a user's blueprint can never call
            the internal ones (``channel``, ``sessions``), which act on any user's sessions.
            The system's own blueprints pass ``TOOL_REGISTRY``.

    Returns:
        The parsed :class:`Blueprint`.

    Raises:
        InvalidBlueprint: with every problem as ``{"loc": [...], "node_id": str | None,
            "message": str}``.
    """
    try:
        blueprint = Blueprint.model_validate(data)
    except ValidationError as exc:
        raise InvalidBlueprint(_model_issues(exc, data)) from None
    issues = _GraphChecker(blueprint, registry if registry is not None else public_tools()).run()
    if issues:
        raise InvalidBlueprint(issues)
    return blueprint


async def validate_blueprint_async(
    data: Any, registry: dict[str, BaseTool] | None = None
) -> Blueprint:
    """:func:`validate_blueprint` in a worker thread: compiling a large blueprint's templates
    takes up to about a second of CPU, which must not stall the event loop.

    Raises:
        InvalidBlueprint: as :func:`validate_blueprint`.
    """
    return await asyncio.to_thread(validate_blueprint, data, registry)


def _model_issues(exc: ValidationError, data: Any) -> list[dict[str, Any]]:
    """Pydantic's errors as issues: union tags dropped from the paths, the node id found."""
    issues = []
    for err in exc.errors(include_url=False):
        loc: Loc = []
        node_id = None
        raw: Any = data
        path = list(err["loc"])
        while path:
            key = path.pop(0)
            if loc and loc[-1] == "nodes" and isinstance(key, int) and path:
                tag = path.pop(0) if path[0] in NODE_TYPES else None
                if tag == "trigger" and path and path[0] in TRIGGER_NAMES:
                    path.pop(0)
            loc.append(key)
            raw = _child(raw, key)
            if len(loc) >= 2 and loc[-2] == "nodes" and isinstance(raw, dict):
                node_id = raw.get("id") if isinstance(raw.get("id"), str) else node_id
        message = err["msg"]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            message = f"type must be one of {', '.join(NODE_TYPES)}"
        issues.append({"loc": loc, "node_id": node_id, "message": message})
    return issues


def _child(value: Any, key: str | int) -> Any:
    if isinstance(value, dict) and isinstance(key, str):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
        return value[key]
    return None


class _GraphChecker:
    """Structural and semantic rules that the Pydantic model cannot express; the node kinds
    add their own (:meth:`NodeKind.check`), a loop's body is checked as a graph of its own."""

    def __init__(self, blueprint: Blueprint, registry: dict[str, BaseTool]) -> None:
        self.bp = blueprint
        self.registry = registry
        self.issues: list[dict[str, Any]] = []
        self.template_tokens = 0
        self._seen: set[str] = set()  # node ids checked so far: unique across bodies too
        self._all_ids = {node.id for _, node in blueprint.walk()}
        self._depth = 0  # how deep in loop bodies the check is
        self._outer: frozenset[str] = frozenset()  # steps before the node being checked
        self._names: tuple[str, ...] = ()  # template names besides the run's, there

    def add(self, loc: Loc, message: str, node_id: str | None = None) -> None:
        """Report a problem."""
        self.issues.append({"loc": loc, "node_id": node_id, "message": message})

    def run(self) -> list[dict[str, Any]]:
        """Every problem of the blueprint (empty when it is valid)."""
        triggers = [n for n in self.bp.nodes if isinstance(n, TriggerNode)]
        if len(triggers) != 1:
            self.add(
                ["nodes"], f"a blueprint needs exactly one trigger node, found {len(triggers)}"
            )
            return self.issues
        self._check_graph(self.bp, [], frozenset(), ())
        return self.issues

    def check_body(self, owner: NodeKind, body: Body, loc: Loc) -> None:
        """Check loop body ``body`` of ``owner`` as a graph whose templates may also reference
        the steps that run before ``owner`` (``self._outer``) and the loop's names."""
        if self._depth >= MAX_BODY_DEPTH:
            self.add(loc, f"loops nest at most {MAX_BODY_DEPTH} deep", owner.id)
            return
        for i, node in enumerate(body.nodes):
            if isinstance(node, TriggerNode):
                self.add([*loc, "nodes", i], "a loop body has no trigger", node.id)
                return
        self._depth += 1
        try:
            self._check_graph(body, loc, self._outer, (*self._names, *BODY_NAMES))
        finally:
            self._depth -= 1

    def _check_graph(
        self, scope: Blueprint | Body, loc: Loc, outer: frozenset[str], names: tuple[str, ...]
    ) -> None:
        """Check the blueprint or a loop's body at ``loc``. ``outer``: steps outside it that
        run before all of it (the enclosing loops' ancestors); ``names``: extra template names
        (a body's ``item``/``index``)."""
        nodes, edges = scope.nodes, scope.edges
        before = len(self.issues)
        index: dict[str, int] = {}
        for i, node in enumerate(nodes):
            if node.id in index or node.id in self._seen:
                self.add([*loc, "nodes", i, "id"], f"duplicate node id '{node.id}'", node.id)
            index.setdefault(node.id, i)
            self._seen.add(node.id)
        self._check_edges(edges, index, loc)
        if len(self.issues) > before:
            return
        graph = scope.graph  # the one the engine will walk
        self._check_structure(graph, index, loc)
        if len(self.issues) > before:
            return
        for i, node in enumerate(nodes):
            node_loc: Loc = [*loc, "nodes", i]
            self._check_outgoing(graph, node, edges, loc)
            saved = self._outer, self._names
            self._outer = outer | graph.ancestors(node.id)
            self._names = names
            try:
                node.check(self, node_loc)
                for site in node.template_sites(node_loc):
                    self._check_refs(graph, site, outer, names)
            finally:
                self._outer, self._names = saved

    def _check_edges(self, edges: list[Edge], index: dict[str, int], loc: Loc) -> None:
        seen: set[tuple[str, str]] = set()
        for i, edge in enumerate(edges):
            for end in ("source", "target"):
                node_id = getattr(edge, end)
                if node_id not in index:
                    self.add([*loc, "edges", i, end], f"edge {end} '{node_id}' is not a node")
            if edge.source == edge.target:
                self.add(
                    [*loc, "edges", i], f"edge loops from '{edge.source}' to itself", edge.source
                )
            if (edge.source, edge.target) in seen:
                self.add(
                    [*loc, "edges", i],
                    f"duplicate edge {edge.source} -> {edge.target}",
                    edge.source,
                )
            seen.add((edge.source, edge.target))

    def _check_structure(self, graph: Graph, index: dict[str, int], loc: Loc) -> None:
        cycle = graph.find_cycle()
        if cycle:
            path = " -> ".join([*cycle, cycle[0]])
            self.add(
                [*loc, "edges"],
                f"cycle {path}: edges cannot loop back; use a foreach node to repeat steps",
                cycle[0],
            )
            return
        nodes = graph.nodes
        triggers = [n for n in nodes.values() if isinstance(n, TriggerNode)]
        for trigger in triggers:
            if graph.incoming[trigger.id]:
                self.add(
                    [*loc, "nodes", index[trigger.id]],
                    "the trigger cannot have incoming edges",
                    trigger.id,
                )
        if triggers:  # the top level: everything hangs off the trigger
            reachable = graph.descendants(triggers[0].id) | {triggers[0].id}
            for node_id in nodes:
                if node_id not in reachable:
                    self.add(
                        [*loc, "nodes", index[node_id]], "not reachable from the trigger", node_id
                    )

    def _check_outgoing(self, graph: Graph, node: NodeKind, edges: list[Edge], loc: Loc) -> None:
        allowed = node.branches()
        for edge in graph.outgoing[node.id]:
            if edge.branch in allowed:
                continue
            where: Loc = [*loc, "edges", edges.index(edge)]
            if not allowed:
                self.add(where, f"an {node.type} node cannot have outgoing edges", node.id)
            elif allowed == {None}:
                self.add(
                    [*where, "branch"],
                    f"edges from a {node.type} node carry no branch label; only routers' and "
                    "waits' edges do",
                    node.id,
                )
            else:
                labels = sorted(label for label in allowed if label is not None)
                needs = "needs a branch label" if None not in allowed else "is unlabelled or"
                self.add(
                    [*where, "branch"],
                    f"edge from {node.type} '{node.id}' {needs}, one of {labels}; "
                    f"got {edge.branch!r}",
                    node.id,
                )

    def _check_refs(
        self, graph: Graph, site: TemplateSite, outer: frozenset[str], names: tuple[str, ...]
    ) -> None:
        loc, node_id, text = site.loc, site.node_id, site.text
        allowed = expressions.CONTEXT_NAMES | set(site.extra_names) | set(names)
        try:
            if self.template_tokens > MAX_TEMPLATE_TOKENS:
                return  # reported once, below; compiling more would only cost time
            self.template_tokens += expressions.cost(text, expression=site.expression)
            if self.template_tokens > MAX_TEMPLATE_TOKENS:
                self.add(
                    ["nodes"],
                    f"the blueprint's templates have more than {MAX_TEMPLATE_TOKENS} tokens in "
                    "all; make them shorter or split the workflow",
                )
                return
            if site.expression:
                refs = expressions.check_expression(text, allowed=allowed)
            else:
                refs = expressions.check_template(text, allowed=allowed)
        except expressions.ExpressionError as exc:
            self.add(loc, str(exc), node_id)
            return
        before = graph.ancestors(node_id) | outer
        for ref in sorted(refs):
            if ref not in before and ref not in self._all_ids:
                self.add(loc, f"references unknown node '{ref}'", node_id)
            elif ref not in before:
                self.add(loc, f"references '{ref}', which does not run before '{node_id}'", node_id)
