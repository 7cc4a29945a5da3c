"""``workflow``: run another saved workflow of the owner as a child run and wait for its end.

The child is a run of its own (its own logs and trace, ``parent_run_id`` pointing here),
started once whatever the replays; its end output becomes this node's output. Its failure,
cancellation or a timeout fails this node (``child_failed``, ``child_timed_out``) unless
``on_error: "continue"``. Workflows calling each other in a cycle are refused when saved, and
at run time a chain deeper than ``SUBWORKFLOW_MAX_DEPTH`` fails (``workflow_depth_exceeded``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.nodes.base import (
    Duration,
    Loc,
    NodeKind,
    NodeResult,
    NodeRun,
    TemplateSite,
    fail_step,
    render_params,
)
from blueprint_engine.workflows.nodes.drafting import DraftField
from blueprint_engine.workflows.steps import (
    ChildRun,
    StepError,
    StepFailed,
    continued_output,
)


class WorkflowNode(NodeKind):
    """Runs the owner's workflow ``workflow_id`` with ``input`` as its trigger data."""

    summary = "Runs another saved workflow as a child run and waits for its output."
    draft_rule = (
        "`workflow_id` of one of the user's saved workflows listed with the request (never "
        "another id), optional `version` (null: the active one), `input_json` (a JSON value, "
        "templates allowed) that becomes its trigger_data, `timeout` (null: 1 day) and "
        "`on_error`; its output is the child run's output."
    )
    draft_fields = {
        "workflow_id": DraftField(str, "Id of one of the user's saved workflows."),
        "version": DraftField(int, "A pinned version; null runs the active one."),
        "input_json": DraftField(str, "Its trigger_data: a JSON value, templates allowed."),
        "timeout": DraftField(str, "How long the child run may take, e.g. '1h'."),
        "on_error": DraftField(
            Literal["fail", "continue"], "'continue': a failure becomes its output (null: fail)."
        ),
    }

    type: Literal["workflow"]
    workflow_id: UUID = Field(description="The saved workflow to run (the owner's own).")
    version: int | None = Field(
        default=None, ge=1, description="A pinned version; null runs the active one."
    )
    input: Any = Field(default=None, description="Its trigger data; templates allowed.")
    timeout: Duration = Field(default=86400.0, description="How long the child may take.")
    on_error: Literal["fail", "continue"] = "fail"

    def template_sites(self, loc: Loc) -> Iterator[TemplateSite]:
        """Every template string in ``input``."""
        for path, text in expressions.template_strings(self.input):
            yield TemplateSite(self.id, [*loc, "input", *path], text)

    def calls(self) -> list[tuple[UUID, int | None]]:
        """The workflow (and pinned version) it runs."""
        return [(self.workflow_id, self.version)]

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Start the child (once) and wait for its end through the port."""
        step_id = ctx.step_id(self.id)
        try:
            data = render_params(self.input, ctx.context(), what="input")
        except StepError as exc:
            data = None
            failure: StepError | None = exc
        else:
            failure = None
        try:
            if failure is not None:
                await fail_step(ctx, step_id, failure)
            output = await ctx.port.run_child(
                step_id,
                ChildRun(
                    self.workflow_id,
                    self.version,
                    data,
                    self.timeout,
                    ctx.settings.subworkflow_max_depth,
                ),
            )
        except StepFailed as failed:
            if self.on_error != "continue":
                raise
            return NodeResult(continued_output(failed.error), status="failed")
        return NodeResult(output)
