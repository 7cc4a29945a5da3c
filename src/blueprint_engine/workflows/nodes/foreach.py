"""``foreach``: run a body once per item of a list, collecting the outputs in input order.

The body is a sub-graph of the blueprint (``body: {nodes, edges}``, entered at its nodes
without incoming edges; its templates also see ``item`` and ``index``) or a saved workflow
(``workflow``: each item is a child run whose trigger data is the item). Each item's steps are
durable under their own ids, ``<foreach id>.<index>.<node id>``, so a crash mid-loop re-runs
nothing an item finished.

Items start in order, at most ``concurrency`` at a time. Whether item ``i`` starts depends only
on items ``0 … i - concurrency``, which have ended by then: replays (and Inngest's requests)
make the same choices as the first pass. An item that fails fails the loop (no later item
starts; those running end first), unless ``on_error: "continue"``: then its result is
``{"error": …}``. The output is ``{"results": [...], "count": n, "failed": k}``, bounded like
any step's (``output_not_storable`` past 4 MB: each item's output is, the items together may
not be).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import Field

from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.nodes.base import (
    Checker,
    Duration,
    Edge,
    Loc,
    Model,
    NodeKind,
    NodeResult,
    NodeRun,
    TemplateSite,
    WalkOutcome,
    fail_step,
    render_params,
    storable_outcome,
)
from blueprint_engine.workflows.nodes.drafting import DraftField
from blueprint_engine.workflows.steps import (
    NO_RETRY,
    ChildRun,
    StepError,
    StepFailed,
    StepOutcome,
    Suspended,
    continued_output,
)

if TYPE_CHECKING:
    from blueprint_engine.workflows.graph import Graph
    from blueprint_engine.workflows.nodes import Node

#: Names a loop body's templates see besides the run's: the item and its index (from 0).
BODY_NAMES = ("item", "index")


class Body(Model):
    """A loop's body: nodes (any kind but ``trigger``) and the edges between them."""

    nodes: list[Node] = Field(min_length=1, max_length=100)  # resolved in nodes/__init__
    edges: list[Edge] = Field(default_factory=list)

    @cached_property
    def graph(self) -> Graph:
        """Its :class:`Graph`, built once."""
        from blueprint_engine.workflows.graph import Graph

        return Graph(self)


class SavedWorkflow(Model):
    """A saved workflow of the owner: ``version`` pinned, or the active one when it starts."""

    workflow_id: UUID
    version: int | None = Field(default=None, ge=1)


class ForeachNode(NodeKind):
    """Runs ``body`` (or ``workflow``) for every item of ``items``."""

    summary = "Runs a body of nodes (or a saved workflow) once per item of a list."
    draft_rule = (
        "`items` is a template giving a list (e.g. '{{ steps.fetch.output.body.invoices }}'). "
        'Per item it runs either `body_json`, a JSON object {"nodes": [...], "edges": '
        "[...]} of nodes in blueprint form (each node {id, type, name, ...} with `params`, "
        "`conditions`, `output`... as objects, not _json strings; no trigger; ids unique across "
        "the whole blueprint; its entry is the nodes without incoming edges; templates there "
        "also see {{ item }} and {{ index }}), or `workflow_id` (optionally `version`), one of "
        "the user's saved workflows listed with the request, each item its trigger_data. "
        "`concurrency` items at a time (null: 1); `on_error` 'continue' keeps going past a "
        "failed item. Its output is {results: [one per item], count, failed}. Use it whenever "
        "something is done for every element of a list; edges cannot loop."
    )
    draft_fields = {
        "items": DraftField(str, "A template giving the list, e.g. '{{ steps.x.output.items }}'."),
        "body_json": DraftField(str, "JSON object {nodes, edges} run per item, blueprint form."),
        "workflow_id": DraftField(
            str, "Or: a saved workflow run per item.", to="workflow.workflow_id"
        ),
        "version": DraftField(
            int, "Its pinned version; null: the active one.", to="workflow.version"
        ),
        "concurrency": DraftField(int, "Items run at once (null: 1)."),
        "timeout": DraftField(str, "With workflow_id: how long each child run may take."),
        "on_error": DraftField(
            Literal["fail", "continue"], "'continue': a failed item's result is {error}."
        ),
    }

    type: Literal["foreach"]
    items: Any = Field(
        description="The list: a template such as '{{ steps.fetch.output.invoices }}', or a "
        "literal list."
    )
    body: Body | None = Field(default=None, description="Nodes run for each item.")
    workflow: SavedWorkflow | None = Field(
        default=None, description="Or: a saved workflow run for each item (item = its input)."
    )
    concurrency: int = Field(default=1, ge=1, le=100, description="Items run at once.")
    timeout: Duration = Field(
        default=86400.0, description="With `workflow`: how long each child run may take."
    )
    on_error: Literal["fail", "continue"] = "fail"

    def template_sites(self, loc: Loc) -> Iterator[TemplateSite]:
        """Its ``items`` (its body's templates are its nodes')."""
        for path, text in expressions.template_strings(self.items):
            yield TemplateSite(self.id, [*loc, "items", *path], text)

    def calls(self) -> list[tuple[UUID, int | None]]:
        """Its saved workflow, or what its body's nodes run."""
        if self.workflow is not None:
            return [(self.workflow.workflow_id, self.workflow.version)]
        return [call for node in self.body.nodes for call in node.calls()] if self.body else []

    def check(self, checker: Checker, loc: Loc) -> None:
        """Exactly one of ``body`` and ``workflow``; ``items`` a template or a list; the body
        checked as a graph of its own."""
        if (self.body is None) == (self.workflow is None):
            checker.add(loc, "a foreach needs either a body or a workflow, not both", self.id)
        if not isinstance(self.items, list) and not (
            isinstance(self.items, str) and expressions.is_template(self.items)
        ):
            checker.add(
                [*loc, "items"], "items is a template such as '{{ steps.x.output }}' or a list"
            )
        if self.body is not None:
            checker.check_body(self, self.body, [*loc, "body"])

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Run the items (see the module), then record the loop's own step."""
        step_id = ctx.step_id(self.id)
        try:
            items = self._items(ctx)
        except StepError as exc:
            await fail_step(ctx, step_id, exc)
        outcomes = await self._run_items(ctx, step_id, items)
        failed = next(
            (
                (i, o)
                for i, o in enumerate(outcomes)
                if o is not None and o.status == "failed" and self.on_error != "continue"
            ),
            None,
        )
        if failed is not None:
            index, outcome = failed
            error = outcome.error or {}
            await fail_step(
                ctx,
                step_id,
                StepError(
                    "item_failed",
                    f"item {index}: {error.get('message', 'failed')}",
                    retryable=False,
                    input={"count": len(items)},
                    details={"index": index, "error": error},
                ),
            )
        waiting = [s for o in outcomes if o is not None for s in o.suspended]
        if waiting or any(o is None for o in outcomes):
            raise Suspended.of(waiting)
        results = [
            continued_output(o.error or {}) if o.status == "failed" else o.output
            for o in outcomes
            if o is not None
        ]
        errors = sum(1 for o in outcomes if o is not None and o.status == "failed")

        async def collect(attempt: int) -> StepOutcome:
            output = {"results": results, "count": len(results), "failed": errors}
            return storable_outcome(StepOutcome(input={"count": len(items)}, output=output))

        output = await ctx.port.run(step_id, collect, NO_RETRY, pure=True)
        return NodeResult(output)

    def _items(self, ctx: NodeRun) -> list[Any]:
        items = render_params(self.items, ctx.context(), what="items")
        if not isinstance(items, list):
            raise StepError(
                "invalid_items",
                f"items must resolve to a list, got {type(items).__name__}",
                retryable=False,
            )
        limit = ctx.settings.foreach_max_items
        if len(items) > limit:
            raise StepError(
                "too_many_items",
                f"{len(items)} items; a foreach takes at most {limit} (FOREACH_MAX_ITEMS)",
                retryable=False,
                input={"count": len(items)},
            )
        return items

    async def _run_items(
        self, ctx: NodeRun, step_id: str, items: list[Any]
    ) -> list[WalkOutcome | None]:
        """Each item's outcome, None for items not started (a failure or a wait stopped them)."""
        window = min(self.concurrency, ctx.settings.foreach_max_concurrency)
        tasks: list[asyncio.Task[WalkOutcome]] = []
        try:
            for i, item in enumerate(items):
                if i >= window:
                    ended = await tasks[i - window]
                    if ended.status == "waiting" or (
                        ended.status == "failed" and self.on_error != "continue"
                    ):
                        break
                tasks.append(asyncio.create_task(self._item(ctx, step_id, i, item)))
            outcomes: list[WalkOutcome | None] = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return outcomes + [None] * (len(items) - len(outcomes))

    async def _item(self, ctx: NodeRun, step_id: str, index: int, item: Any) -> WalkOutcome:
        prefix = f"{step_id}.{index}"
        if self.body is not None:
            return await ctx.walk(self.body.graph, f"{prefix}.", {"item": item, "index": index})
        assert self.workflow is not None
        child = ChildRun(
            self.workflow.workflow_id,
            self.workflow.version,
            item,
            self.timeout,
            ctx.settings.subworkflow_max_depth,
        )
        try:
            output = await ctx.port.run_child(prefix, child)
        except StepFailed as exc:
            return WalkOutcome("failed", error=exc.error)
        except Suspended as exc:
            return WalkOutcome("waiting", suspended=exc.flat())
        return WalkOutcome("succeeded", output=output)
