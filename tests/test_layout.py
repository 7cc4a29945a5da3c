"""The drafts' canvas layout: layers of cards, foreach bodies laid out inside their foreach,
and nothing drawn over anything else."""

from __future__ import annotations

import copy
from typing import Any

from blueprint_engine.workflows.layout import BODY_HEADER, BODY_PAD, X_GAP, Y_GAP, layered_layout


def _edges(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"source": s, "target": t} for s, t in pairs]


def _loop(node_id: str, body: list[dict[str, Any]], edges: list[dict[str, str]]) -> Any:
    return {"id": node_id, "type": "foreach", "items": [1], "body": {"nodes": body, "edges": edges}}


def _blueprint() -> dict[str, Any]:
    """trigger -> (loop over a body with a branch, and an action beside it) -> end."""
    body = [{"id": "fetch", "type": "action"}, {"id": "a", "type": "action"}]
    body.append({"id": "b", "type": "end"})
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            _loop("each", body, _edges(("fetch", "a"), ("fetch", "b"))),
            {"id": "side", "type": "action"},
            {"id": "done", "type": "end"},
        ],
        "edges": _edges(("start", "each"), ("start", "side"), ("each", "done"), ("side", "done")),
    }


def _boxes(blueprint: dict[str, Any]) -> dict[str, tuple[float, float, float, float]]:
    """Every top-level node's box as the dashboard draws it at most: a card's footprint, or
    its foreach's body extent plus padding."""
    boxes = {}
    for node in blueprint["nodes"]:
        x, y = node["position"]["x"], node["position"]["y"]
        width, height = X_GAP, Y_GAP
        if node["type"] == "foreach":
            inner = node["body"]["nodes"]
            width = max(n["position"]["x"] for n in inner) + X_GAP + BODY_PAD
            height = max(n["position"]["y"] for n in inner) + Y_GAP
        boxes[node["id"]] = (x, y, x + width, y + height)
    return boxes


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_cards_alone_are_a_grid_of_centred_layers() -> None:
    blueprint = {
        "nodes": [{"id": i, "type": "action"} for i in ("start", "left", "right", "done")],
        "edges": _edges(("start", "left"), ("start", "right"), ("left", "done")),
    }
    layered_layout(blueprint)
    at = {n["id"]: n["position"] for n in blueprint["nodes"]}
    assert at == {
        "start": {"x": 0.0, "y": 0.0},
        "left": {"x": -X_GAP / 2, "y": Y_GAP},
        "right": {"x": X_GAP / 2, "y": Y_GAP},
        "done": {"x": 0.0, "y": 2 * Y_GAP},
    }


def test_a_body_is_laid_out_inside_its_foreach_and_the_next_layer_goes_below_it() -> None:
    blueprint = _blueprint()
    layered_layout(blueprint)
    each = blueprint["nodes"][1]
    body = {n["id"]: n["position"] for n in each["body"]["nodes"]}
    # relative to the foreach: under its header, in from its side, in layers of their own
    assert min(p["x"] for p in body.values()) == BODY_PAD
    assert body["fetch"]["y"] == BODY_HEADER
    assert body["a"]["y"] == body["b"]["y"] == BODY_HEADER + Y_GAP
    assert body["b"]["x"] - body["a"]["x"] == X_GAP
    boxes = _boxes(blueprint)
    for one in boxes:
        for other in boxes:
            assert one == other or not _overlap(boxes[one], boxes[other]), (one, other)
    done = blueprint["nodes"][3]["position"]
    assert done["y"] == each["position"]["y"] + BODY_HEADER + 2 * Y_GAP


def test_nested_bodies_nest_their_boxes() -> None:
    inner = _loop("inner", [{"id": "leaf", "type": "action"}], [])
    blueprint = {
        "nodes": [{"id": "start", "type": "trigger"}, _loop("outer", [inner], [])],
        "edges": _edges(("start", "outer")),
    }
    layered_layout(blueprint)
    assert inner["position"] == {"x": BODY_PAD, "y": BODY_HEADER}
    assert inner["body"]["nodes"][0]["position"] == {"x": BODY_PAD, "y": BODY_HEADER}


def test_a_revision_keeps_bodies_and_places_new_nodes_below_a_foreachs_box() -> None:
    first = _blueprint()
    layered_layout(first)
    second = copy.deepcopy(first)
    for node in second["nodes"]:
        node.pop("position")
        for inner in node.get("body", {}).get("nodes", []):
            inner.pop("position")
    second["nodes"].append({"id": "after", "type": "action"})
    second["edges"].append({"source": "each", "target": "after"})
    layered_layout(second, keep=first)

    assert second["nodes"][:4] == first["nodes"]  # every position kept, inside bodies too
    each, after = second["nodes"][1]["position"], second["nodes"][4]["position"]
    assert after["y"] >= each["y"] + BODY_HEADER + 2 * Y_GAP
    boxes = _boxes(second)
    assert not any(_overlap(boxes["after"], boxes[n]) for n in boxes if n != "after")


def test_a_changed_body_is_laid_out_afresh() -> None:
    first = _blueprint()
    layered_layout(first)
    second = copy.deepcopy(first)
    body = second["nodes"][1]["body"]
    body["nodes"].append({"id": "extra", "type": "action"})
    body["edges"].append({"source": "a", "target": "extra"})
    layered_layout(second, keep=first)
    at = {n["id"]: n["position"] for n in body["nodes"]}
    assert at["extra"]["y"] == BODY_HEADER + 2 * Y_GAP
    assert at["fetch"]["y"] == BODY_HEADER and min(p["x"] for p in at.values()) == BODY_PAD
