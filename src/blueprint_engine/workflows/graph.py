"""Graph view of a blueprint (or of a loop's body): adjacency, reachability, cycle detection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from blueprint_engine.workflows.nodes import Edge, Node


class Nodes(Protocol):
    """A blueprint or a loop body: nodes and the edges between them."""

    @property
    def nodes(self) -> Sequence[Node]:
        """Its nodes, in order."""
        ...

    @property
    def edges(self) -> Sequence[Edge]:
        """Its edges, in order."""
        ...


class Graph:
    """Adjacency of a blueprint (or body) whose node ids are unique and whose edges name real
    nodes.

    Attributes:
        nodes: node id -> node, in blueprint order.
        incoming / outgoing: node id -> edges, in blueprint order.
        entries: the nodes without incoming edges, where a walk starts (a valid blueprint's
            is its trigger).
    """

    def __init__(self, blueprint: Nodes) -> None:
        self.nodes: dict[str, Node] = {node.id: node for node in blueprint.nodes}
        self.order = {node_id: i for i, node_id in enumerate(self.nodes)}
        self.incoming: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        self.outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        for edge in blueprint.edges:
            self.outgoing[edge.source].append(edge)
            self.incoming[edge.target].append(edge)
        self.entries = [node_id for node_id in self.nodes if not self.incoming[node_id]]
        self.ancestors = cache(self._ancestors)

    def descendants(self, node_id: str) -> set[str]:
        """Every node reachable from ``node_id`` (excluding itself unless on a cycle)."""
        return self._walk([node_id], lambda n: (e.target for e in self.outgoing[n]))

    def _ancestors(self, node_id: str) -> frozenset[str]:
        return frozenset(self._walk([node_id], lambda n: (e.source for e in self.incoming[n])))

    @staticmethod
    def _walk(start: list[str], step: Any) -> set[str]:
        seen: set[str] = set()
        stack = list(start)
        while stack:
            for nxt in step(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def find_cycle(self) -> list[str] | None:
        """Return the node ids of one cycle, or None for a DAG (iterative DFS)."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.nodes, white)
        for root in self.nodes:
            if color[root] != white:
                continue
            path: list[str] = [root]
            iters: list[Iterator[Edge]] = [iter(self.outgoing[root])]
            color[root] = grey
            while iters:
                edge = next(iters[-1], None)
                if edge is None:
                    color[path.pop()] = black
                    iters.pop()
                    continue
                if color[edge.target] == grey:
                    return path[path.index(edge.target) :]
                if color[edge.target] == white:
                    color[edge.target] = grey
                    path.append(edge.target)
                    iters.append(iter(self.outgoing[edge.target]))
        return None
