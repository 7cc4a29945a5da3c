"""Automatic canvas layout: layered, top to bottom, so drafts open readable in the dashboard.

Every node takes a box on the canvas, its *footprint*: ``X_GAP`` by ``Y_GAP`` pixels (a card
and the space around it), or for a foreach with a ``body`` a box big enough for its body laid
out inside it: ``BODY_HEADER`` pixels of title, then the body's nodes, positioned relative to
the foreach's own position, ``BODY_PAD`` pixels in from its sides. The dashboard
(``dashboard/src/graph/layout.ts``) draws a foreach as a group of that size and lays out
blueprints without positions with the same rules and numbers.
"""

from __future__ import annotations

from typing import Any

X_GAP = 280.0
Y_GAP = 150.0
#: Room at the top of a foreach group for its title, items and progress, pixels.
BODY_HEADER = 110.0
#: Room on either side of a foreach group's body, pixels.
BODY_PAD = 20.0

Point = dict[str, float]
Size = tuple[float, float]


def layered_layout(blueprint: dict[str, Any], keep: dict[str, Any] | None = None) -> None:
    """Set ``position {x, y}`` on every node of a valid blueprint, and on every node of its
    foreach bodies (relative to their foreach), in place.

    A node's layer is its longest distance from the trigger; layers stack downwards (each as
    tall as its tallest footprint: ``Y_GAP`` for a card) and the nodes of a layer sit side by
    side, centred, in blueprint order (``X_GAP`` apart for cards). Nodes whose id exists in
    ``keep`` (the previous version) keep their position; the other (new) nodes are placed one
    layer below their placed parents (layer order) and moved right until their footprint
    overlaps none. A body keeps its positions when every node of it had one in ``keep``,
    else it is laid out afresh.
    """
    _place(blueprint["nodes"], blueprint["edges"], (keep or {}).get("nodes", []))


def _place(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]], previous: Any
) -> dict[str, Size]:
    """Lay out one graph (the blueprint's, or a body's in its own coordinates), bodies first;
    ``previous``: the nodes of its previous version. Returns each node's footprint."""
    old = {n["id"]: n for n in previous if isinstance(n, dict) and "id" in n}
    sizes = {n["id"]: _footprint(n, old.get(n["id"])) for n in nodes}
    kept = {
        n["id"]: old[n["id"]]["position"]
        for n in nodes
        if n["id"] in old and old[n["id"]].get("position")
    }
    order = [n["id"] for n in nodes]
    incoming: dict[str, list[str]] = {node_id: [] for node_id in order}
    for edge in edges:
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
    layered: dict[str, Point] = {}
    y = 0.0
    for level in sorted(rows):
        ids = rows[level]
        x = (X_GAP - sum(sizes[i][0] for i in ids)) / 2
        for node_id in ids:
            layered[node_id] = {"x": x, "y": y}
            x += sizes[node_id][0]
        y += max(sizes[i][1] for i in ids)
    placed = {node_id: kept[node_id] for node_id in order if node_id in kept}
    if placed:
        for node_id in sorted((n for n in order if n not in kept), key=lambda n: layer[n]):
            spot = _below_parents(incoming[node_id], placed, sizes, layered[node_id])
            placed[node_id] = _clear_spot(spot, sizes[node_id], placed, sizes)
    else:
        placed = layered
    for node in nodes:
        node["position"] = placed[node["id"]]
    return sizes


def _footprint(node: dict[str, Any], previous: dict[str, Any] | None) -> Size:
    """The box ``node`` takes, ``(width, height)`` pixels; a foreach's body is laid out here
    (its positions relative to the foreach), keeping ``previous``'s when it had them all."""
    body = node.get("body") if node.get("type") == "foreach" else None
    if not isinstance(body, dict) or not body.get("nodes"):
        return X_GAP, Y_GAP
    nodes: list[dict[str, Any]] = body["nodes"]
    before = (previous or {}).get("body")
    old = {
        n["id"]: n
        for n in (before.get("nodes") or [] if isinstance(before, dict) else [])
        if isinstance(n, dict) and "id" in n and n.get("position")
    }
    if all(n["id"] in old for n in nodes):
        sizes = {n["id"]: _footprint(n, old[n["id"]]) for n in nodes}  # nested bodies first
        for n in nodes:
            n["position"] = old[n["id"]]["position"]
    else:
        sizes = _place(nodes, body.get("edges", []), [])
        left = min(n["position"]["x"] for n in nodes)
        for n in nodes:
            at = n["position"]
            n["position"] = {"x": at["x"] - left + BODY_PAD, "y": at["y"] + BODY_HEADER}
    right = max(n["position"]["x"] + sizes[n["id"]][0] for n in nodes)
    bottom = max(n["position"]["y"] + sizes[n["id"]][1] for n in nodes)
    return max(X_GAP, right + BODY_PAD), max(Y_GAP, bottom)


def _below_parents(
    parents: list[str], placed: dict[str, Point], sizes: dict[str, Size], fallback: Point
) -> Point:
    """Just below the lowest placed parent's footprint, at their mean x; ``fallback`` (the
    layered position) when no parent is placed yet."""
    above = [p for p in parents if p in placed]
    if not above:
        return dict(fallback)
    return {
        "x": sum(placed[p]["x"] for p in above) / len(above),
        "y": max(placed[p]["y"] + sizes[p][1] for p in above),
    }


def _clear_spot(spot: Point, size: Size, placed: dict[str, Point], sizes: dict[str, Size]) -> Point:
    """``spot`` moved right, past the right edge of whatever footprint overlaps the node's at
    a time, until none does. Each step passes at least one blocker for good, so this ends
    within ``len(placed)`` steps."""
    x, y = spot["x"], spot["y"]
    width, height = size
    for _ in range(len(placed) + 1):
        blockers = [
            p["x"] + sizes[node_id][0]
            for node_id, p in placed.items()
            if x < p["x"] + sizes[node_id][0]
            and p["x"] < x + width
            and y < p["y"] + sizes[node_id][1]
            and p["y"] < y + height
        ]
        if not blockers:
            break
        x = max(blockers)
    return {"x": x, "y": y}
