"""Automatic canvas layout: layered, top to bottom, so drafts open readable in the dashboard."""

from __future__ import annotations

from typing import Any

X_GAP = 280.0
Y_GAP = 150.0


def layered_layout(blueprint: dict[str, Any], keep: dict[str, Any] | None = None) -> None:
    """Set ``position {x, y}`` on every node of a valid blueprint (in place).

    A node's layer is its longest distance from the trigger; layers stack downwards
    (``Y_GAP`` pixels apart) and nodes within a layer are centred ``X_GAP`` apart in blueprint
    order. Nodes whose id exists in ``keep`` (the previous version) keep their position; the
    other (new) nodes are placed one layer below their placed parents (layer order) and moved
    right, ``X_GAP`` at a time, until they are clear of every node: no new node comes closer
    to another node than ``X_GAP`` across and ``Y_GAP`` down at once.
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
    layered: dict[str, dict[str, float]] = {}
    for level, ids in rows.items():
        for i, node_id in enumerate(ids):
            layered[node_id] = {"x": (i - (len(ids) - 1) / 2) * X_GAP, "y": level * Y_GAP}
    placed = {node_id: kept[node_id] for node_id in order if node_id in kept}
    if placed:
        for node_id in sorted((n for n in order if n not in kept), key=lambda n: layer[n]):
            placed[node_id] = _clear_spot(
                _below_parents(incoming[node_id], placed, layered[node_id]), placed
            )
    else:
        placed = layered
    for node in blueprint["nodes"]:
        node["position"] = placed[node["id"]]


def _below_parents(
    parents: list[str], placed: dict[str, dict[str, float]], fallback: dict[str, float]
) -> dict[str, float]:
    """One layer below the lowest placed parent, at their mean x; ``fallback`` (the layered
    position) when no parent is placed yet."""
    above = [placed[p] for p in parents if p in placed]
    if not above:
        return dict(fallback)
    return {
        "x": sum(p["x"] for p in above) / len(above),
        "y": max(p["y"] for p in above) + Y_GAP,
    }


def _clear_spot(spot: dict[str, float], placed: dict[str, dict[str, float]]) -> dict[str, float]:
    """``spot`` moved right by ``X_GAP`` steps until no placed node is within ``X_GAP`` across
    and ``Y_GAP`` down of it. Each step passes at least one blocker for good, so this ends
    within ``len(placed)`` steps."""
    x, y = spot["x"], spot["y"]
    for _ in range(len(placed) + 1):
        blockers = [
            p["x"] for p in placed.values() if abs(p["x"] - x) < X_GAP and abs(p["y"] - y) < Y_GAP
        ]
        if not blockers:
            break
        x = max(blockers) + X_GAP
    return {"x": x, "y": y}
