"""``delay``: a durable timer; no process is held while it runs."""

from __future__ import annotations

from typing import Literal

from blueprint_engine.workflows.nodes.base import Duration, NodeKind, NodeResult, NodeRun
from blueprint_engine.workflows.nodes.drafting import DraftField


class DelayNode(NodeKind):
    """Waits ``duration`` seconds (``"30s"``, ``"5m"``, ``"2h"``, ``"3d"`` are accepted)."""

    summary = "Waits for a duration on a durable timer."
    draft_rule = '`duration` like "30s", "10m", "2h", "3d".'
    draft_fields = {"duration": DraftField(str, "How long, e.g. '30s', '10m', '2h', '3d'.")}

    type: Literal["delay"]
    duration: Duration

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Sleep on the port's durable timer."""
        await ctx.port.sleep(ctx.step_id(self.id), self.duration)
        return NodeResult({"slept_seconds": self.duration})
