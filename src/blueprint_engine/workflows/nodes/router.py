"""``router``: take the first branch whose condition holds, else ``default``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.nodes.base import (
    BranchLabel,
    Checker,
    Edge,
    Loc,
    Model,
    NodeKind,
    NodeResult,
    NodeRun,
    TemplateSite,
)
from blueprint_engine.workflows.nodes.drafting import DraftField
from blueprint_engine.workflows.steps import NO_RETRY, StepError, StepOutcome


class Condition(Model):
    """One router rule: take ``branch`` when ``when`` is truthy."""

    branch: BranchLabel
    when: str = Field(min_length=1, description="Jinja expression, e.g. trigger_data.amount > 100")


class RouterNode(NodeKind):
    """Picks the first condition that holds, else ``default``; only the edges labelled with
    the chosen branch stay live."""

    summary = "Chooses one branch: the first condition that holds, else the default."
    draft_rule = (
        'Ordered `conditions` [{"branch", "when"}] with Jinja expressions without braces '
        "(e.g. trigger_data.payload.payment.entity.amount >= 100000), plus `default_branch`. "
        "Every edge leaving a router has `branch` set to one of its labels."
    )
    draft_fields = {
        "conditions": DraftField(list[Condition], "First match wins."),
        "default_branch": DraftField(str, "Label taken when nothing matches.", to="default"),
    }

    type: Literal["router"]
    conditions: list[Condition] = Field(min_length=1)
    default: BranchLabel = "default"

    def template_sites(self, loc: Loc) -> Iterator[TemplateSite]:
        """Each condition's ``when`` (a bare expression)."""
        for j, condition in enumerate(self.conditions):
            yield TemplateSite(
                self.id, [*loc, "conditions", j, "when"], condition.when, expression=True
            )

    def check(self, checker: Checker, loc: Loc) -> None:
        """Branch labels are unique."""
        declared = [c.branch for c in self.conditions]
        if len(set(declared)) != len(declared):
            checker.add([*loc, "conditions"], "branch labels must be unique", self.id)

    def branches(self) -> frozenset[str | None]:
        """Its conditions' labels and the default."""
        return frozenset({*(c.branch for c in self.conditions), self.default})

    def is_live(self, edge: Edge, result: NodeResult) -> bool:
        """Only the chosen branch's edges."""
        return edge.branch == result.branch

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Evaluate the conditions in a (pure) step; the logged input says why: ``{"conditions":
        [{"branch", "when", "operands": {reference: value}, "result": bool}]}`` for each
        condition evaluated, in order (the failing one carries ``"error"`` instead)."""

        async def step(attempt: int) -> StepOutcome:
            context = ctx.context()
            checked: list[dict[str, object]] = []
            for condition in self.conditions:
                entry: dict[str, object] = {"branch": condition.branch, "when": condition.when}
                checked.append(entry)
                try:
                    entry["operands"] = expressions.operands(condition.when, context)
                    matched = bool(expressions.evaluate(condition.when, context))
                except expressions.ExpressionError as exc:
                    entry["error"] = str(exc)
                    raise StepError(
                        "expression_error",
                        f"branch '{condition.branch}': {exc}",
                        retryable=False,
                        input={"conditions": checked},
                    ) from None
                entry["result"] = matched
                if matched:
                    return StepOutcome(
                        input={"conditions": checked}, output={"branch": condition.branch}
                    )
            return StepOutcome(input={"conditions": checked}, output={"branch": self.default})

        output = await ctx.port.run(ctx.step_id(self.id), step, NO_RETRY, pure=True)
        return NodeResult(output, branch=output["branch"])
