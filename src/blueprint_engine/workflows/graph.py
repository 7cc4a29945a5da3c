"""Graph view of a blueprint: adjacency, reachability, cycle detection."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blueprint_engine.workflows.schema import Blueprint, Edge


class Graph:
    """Adjacency of a blueprint whose node ids are unique and whose edges name real nodes.

    Attributes:
        nodes: node id -> node, in blueprint order.
        incoming / outgoing: node id -> edges, in blueprint order.
        trigger: the (single) trigger node.
    """

    def __init__(self, blueprint: Blueprint) -> None:
        self.nodes: dict[str, Any] = {node.id: node for node in blueprint.nodes}
        self.order = {node_id: i for i, node_id in enumerate(self.nodes)}
        self.incoming: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        self.outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in self.nodes}
        for edge in blueprint.edges:
            self.outgoing[edge.source].append(edge)
            self.incoming[edge.target].append(edge)
        triggers = [n for n in blueprint.nodes if n.type == "trigger"]
        self.trigger = triggers[0]
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
