"""Automatic canvas layout: layered, top to bottom, so drafts open readable in the dashboard."""

from __future__ import annotations

from typing import Any

X_GAP = 280.0
Y_GAP = 150.0


def layered_layout(blueprint: dict[str, Any], keep: dict[str, Any] | None = None) -> None:
    """Set ``position {x, y}`` on every node of a valid blueprint (in place).

    A node's layer is its longest distance from the trigger; layers stack downwards
    (``Y_GAP`` pixels apart) and nodes within a layer are centred ``X_GAP`` apart in blueprint
    order. Nodes whose id exists in ``keep`` (the previous version) keep their position.
    """
    kept = {n["id"]: n["position"] for n in (keep or {}).get("nodes", []) if n.get("position")}
    order = [n["id"] for n in blueprint["nodes"]]
    incoming: dict[str, list[str]] = {node_id: [] for node_id in order}
    for edge in blueprint["edges"]:
        incoming[edge["target"]].append(edge["source"])
    layer: dict[str, int] = {}

    def depth(node_id: str, seen: frozenset[str] = frozenset()) -> int:
        if node_id not in layer:
            parents = [p for p in incoming[node_id] if p not in seen]
            layer[node_id] = 1 + max((depth(p, seen | {node_id}) for p in parents), default=-1)
        return layer[node_id]

    rows: dict[int, list[str]] = {}
    for node_id in order:
        rows.setdefault(depth(node_id), []).append(node_id)
    positions: dict[str, dict[str, float]] = {}
    for level, ids in rows.items():
        for i, node_id in enumerate(ids):
            positions[node_id] = {"x": (i - (len(ids) - 1) / 2) * X_GAP, "y": level * Y_GAP}
    for node in blueprint["nodes"]:
        node["position"] = kept.get(node["id"], positions[node["id"]])
