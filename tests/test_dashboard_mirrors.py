"""What the dashboard keeps in step with the engine by hand: a label and icon for every node
kind and every service an action may name (``dashboard/src/graph/kinds.ts``) and the layout's
numbers (``graph/layout.ts`` draws blueprints without positions as ``workflows/layout.py`` lays
out drafts)."""

from __future__ import annotations

import re
from pathlib import Path

from blueprint_engine.integrations import public_tools
from blueprint_engine.workflows import layout
from blueprint_engine.workflows.nodes import NODE_TYPES

GRAPH = Path(__file__).resolve().parents[1] / "dashboard" / "src" / "graph"


def _table(name: str) -> set[str]:
    """The keys of ``kinds.ts``'s table ``name`` whose entries have an icon and a label."""
    source = (GRAPH / "kinds.ts").read_text()
    start = source.index(f"export const {name} = {{")
    table = source[start : source.index("} as const", start)]
    return set(re.findall(r"^\s*(\w+): \{ icon: \"[^\"]+\", label: \"[^\"]+\" \},$", table, re.M))


def test_every_node_kind_has_a_label_and_icon() -> None:
    assert _table("KINDS") == set(NODE_TYPES)


def test_every_service_an_action_may_name_has_a_label_and_icon() -> None:
    """GET /tools lists these services; the canvas draws each action with its service's icon
    and label (a missing one would fall back to the plain action icon)."""
    assert _table("SERVICES") == set(public_tools())


def test_the_canvas_lays_out_with_the_engines_numbers() -> None:
    source = (GRAPH / "layout.ts").read_text()
    numbers = dict(re.findall(r"^export const (\w+) = (\d+);$", source, re.M))
    assert numbers == {
        name: str(int(getattr(layout, name)))
        for name in ("X_GAP", "Y_GAP", "BODY_HEADER", "BODY_PAD")
    }
