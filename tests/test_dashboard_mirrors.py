"""What the dashboard keeps in step with the engine by hand: a label and icon for every node
kind (``dashboard/src/graph/kinds.ts``) and the layout's numbers (``graph/layout.ts`` draws
blueprints without positions as ``workflows/layout.py`` lays out drafts)."""

from __future__ import annotations

import re
from pathlib import Path

from blueprint_engine.workflows import layout
from blueprint_engine.workflows.nodes import NODE_TYPES

GRAPH = Path(__file__).resolve().parents[1] / "dashboard" / "src" / "graph"


def test_every_node_kind_has_a_label_and_icon() -> None:
    source = (GRAPH / "kinds.ts").read_text()
    table = source[source.index("export const KINDS") : source.index("} as const")]
    kinds = set(re.findall(r"^\s*(\w+): \{ icon: \"[^\"]+\", label: \"[^\"]+\" \},$", table, re.M))
    assert kinds == set(NODE_TYPES)


def test_the_canvas_lays_out_with_the_engines_numbers() -> None:
    source = (GRAPH / "layout.ts").read_text()
    numbers = dict(re.findall(r"^export const (\w+) = (\d+);$", source, re.M))
    assert numbers == {
        name: str(int(getattr(layout, name)))
        for name in ("X_GAP", "Y_GAP", "BODY_HEADER", "BODY_PAD")
    }
