"""``wait_for_event``: pause until a matching event arrives, or ``timeout`` passes.

Edges labelled ``timeout`` are taken on timeout, unlabelled edges when the event arrived (a
timeout with no ``timeout`` edge ends that path: everything after the wait is skipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from blueprint_engine.workflows.nodes.base import (
    Duration,
    Edge,
    Loc,
    NodeKind,
    NodeResult,
    NodeRun,
    TemplateSite,
)
from blueprint_engine.workflows.nodes.drafting import DraftField

TIMEOUT_BRANCH = "timeout"


class WaitForEventNode(NodeKind):
    """Pauses the run until a matching event arrives or ``timeout`` passes."""

    summary = "Pauses until a matching event arrives, or its timeout passes."
    draft_rule = (
        "`event`, optional `match` (Jinja condition over event.data, "
        "trigger_data and steps, e.g. event.data.payload.payment_link.entity.id == "
        'steps.create_link.output.id), and `timeout` like "2d". Its unlabelled edges run when '
        'the event arrives; give the edge to run on timeout `branch` "timeout".'
    )
    draft_fields = {
        "event": DraftField(str, "The event to wait for."),
        "match": DraftField(str, "Jinja condition over event, trigger_data, steps."),
        "timeout": DraftField(str, "How long to wait, e.g. '2d'."),
    }

    type: Literal["wait_for_event"]
    event: str = Field(min_length=1, max_length=200)
    match: str | None = Field(
        default=None, description="Condition over event, trigger_data and steps."
    )
    timeout: Duration

    def template_sites(self, loc: Loc) -> Iterator[TemplateSite]:
        """Its ``match`` (a bare expression that also sees ``event``)."""
        if self.match:
            yield TemplateSite(
                self.id, [*loc, "match"], self.match, expression=True, extra_names=("event",)
            )

    def branches(self) -> frozenset[str | None]:
        """Unlabelled (the event arrived) or ``timeout``."""
        return frozenset({None, TIMEOUT_BRANCH})

    def is_live(self, edge: Edge, result: NodeResult) -> bool:
        """The ``timeout`` edges after a timeout, the others after an event."""
        return edge.branch == result.branch

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Wait on the port; the match sees the context as it is now."""
        context = ctx.context()
        snapshot = {**context, "steps": dict(context["steps"])}
        event = await ctx.port.wait_for_event(
            ctx.step_id(self.id), self.event, self.match, snapshot, self.timeout
        )
        if event is not None:
            return NodeResult({"event": event, "timed_out": False})
        return NodeResult({"event": None, "timed_out": True}, branch=TIMEOUT_BRANCH)
