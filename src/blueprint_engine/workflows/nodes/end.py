"""``end``: ends a path; its ``output`` (templates allowed) becomes the run's output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.nodes.base import (
    Loc,
    NodeKind,
    NodeResult,
    NodeRun,
    TemplateSite,
    storable_outcome,
)
from blueprint_engine.workflows.nodes.drafting import DraftField
from blueprint_engine.workflows.steps import NO_RETRY, StepError, StepOutcome


class EndNode(NodeKind):
    """Ends a path; ``output`` (templates allowed) becomes the run's output."""

    summary = "Ends a path; its output becomes the run's (or the loop item's) output."
    draft_rule = "Optional `output_json` (a JSON value, templates allowed): the run's output."
    draft_fields = {
        "output_json": DraftField(str, "JSON value (templates allowed) or null."),
    }

    type: Literal["end"]
    output: Any = None

    def template_sites(self, loc: Loc) -> Iterator[TemplateSite]:
        """Every template string in ``output``."""
        for path, text in expressions.template_strings(self.output):
            yield TemplateSite(self.id, [*loc, "output", *path], text)

    def branches(self) -> frozenset[str | None]:
        """None: an end has no outgoing edges."""
        return frozenset()

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Render the output in a (pure) step."""

        async def step(attempt: int) -> StepOutcome:
            try:
                output = expressions.render(self.output, ctx.context())
            except expressions.ExpressionError as exc:
                raise StepError("expression_error", str(exc), retryable=False) from None
            return storable_outcome(StepOutcome(input=None, output=output))

        return NodeResult(await ctx.port.run(ctx.step_id(self.id), step, NO_RETRY, pure=True))
