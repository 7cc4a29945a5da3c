"""``action``: call a tool's task with ``params`` (templates resolved), with retries.

Whatever a step does wrong fails that step, never the runner: any error in a template is a
non-retryable ``expression_error``; resolved params that are not valid for the task are
``invalid_params``; an output PostgreSQL cannot store is ``output_not_storable``. A failing
action is retried by the port per its retry policy; when attempts run out the run fails with
its error, unless ``on_error: "continue"`` (then ``{"error": ...}`` is its output).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, ValidationError

from blueprint_engine import metrics
from blueprint_engine.integrations import ToolContext, ToolError
from blueprint_engine.integrations.credentials import Credential, CredentialUnavailable
from blueprint_engine.workflows import expressions, redaction
from blueprint_engine.workflows.nodes.base import (
    CREDENTIAL_NAME,
    Checker,
    Loc,
    Model,
    NodeKind,
    NodeResult,
    NodeRun,
    TemplateSite,
    render_params,
    storable_outcome,
)
from blueprint_engine.workflows.nodes.drafting import DraftField
from blueprint_engine.workflows.redaction import Redactor
from blueprint_engine.workflows.steps import (
    Retry,
    StepError,
    StepFailed,
    StepOutcome,
    continued_output,
)

log = logging.getLogger(__name__)


class RetryPolicy(Model):
    """Per-node retries: exponential backoff with jitter between attempts."""

    max_attempts: int = Field(ge=1, le=25)
    initial_backoff_seconds: float | None = Field(default=None, ge=0, le=3600)
    max_backoff_seconds: float | None = Field(default=None, ge=0, le=3600)


class ActionNode(NodeKind):
    """Calls ``TOOL_REGISTRY[service]`` task ``task`` with ``params`` (templates resolved)."""

    summary = "Calls a task of an integration (a tool) with params; retried per its policy."
    draft_rule = (
        "`service` + `task` from the catalog below; `params_json` is a JSON object string "
        "that satisfies the task's params schema; `on_error` 'continue' makes a failure its "
        "output ({error}) instead of failing the run; `retry` sets how often a failing call is "
        "tried (null: the deployment's policy); `credential` names one of the user's "
        "connections whose type the service takes, else null."
    )
    draft_fields = {
        "service": DraftField(str, "A service from the catalog."),
        "task": DraftField(str, "A task of that service."),
        "params_json": DraftField(
            str,
            "The task's params as a JSON object in a string; values may be templates such as "
            "'{{ trigger_data.payload.payment.entity.amount }}'.",
        ),
        "credential": DraftField(
            str,
            "Name of one of the user's connections (credentials) whose type the service "
            "takes; null to use the deployment's account.",
        ),
        "on_error": DraftField(
            Literal["fail", "continue"], "'continue': a failure becomes its output (null: fail)."
        ),
        "retry": DraftField(RetryPolicy, "Attempts and backoff in seconds (null: the default)."),
    }

    type: Literal["action"]
    service: str
    task: str
    params: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(
        default=None,
        pattern=CREDENTIAL_NAME,
        description="Name of the owner's credential (connection) the tool calls with, e.g. "
        "'shop_razorpay'; its secrets never appear in the blueprint, params or logs.",
    )
    retry: RetryPolicy | None = None
    on_error: Literal["fail", "continue"] = "fail"

    def template_sites(self, loc: Loc) -> Iterator[TemplateSite]:
        """Every template string in ``params``, at any depth."""
        for path, text in expressions.template_strings(self.params):
            yield TemplateSite(self.id, [*loc, "params", *path], text)

    def check(self, checker: Checker, loc: Loc) -> None:
        """The service and task exist, literal params fit the task, no literal secrets, and a
        credential only for a tool that takes one."""
        tool = checker.registry.get(self.service)
        if tool is None:
            known = ", ".join(sorted(checker.registry))
            checker.add(
                [*loc, "service"], f"unknown service '{self.service}' (known: {known})", self.id
            )
            return
        task = tool.tasks.get(self.task)
        if task is None:
            known = ", ".join(sorted(tool.tasks))
            checker.add(
                [*loc, "task"],
                f"{self.service} has no task '{self.task}' (known: {known})",
                self.id,
            )
            return
        try:
            task.params.model_validate(self.params)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                value = err.get("input")
                if isinstance(value, str) and expressions.is_template(value):
                    continue  # resolved at run time, validated again then
                checker.add([*loc, "params", *err["loc"]], err["msg"], self.id)
        for path, what in redaction.literal_secrets(self.params):
            checker.add(
                [*loc, "params", *path],
                f"{what}: store it as a credential (POST /credentials) and name that in the "
                "node's 'credential'",
                self.id,
            )
        if self.credential is not None and not tool.credential_types:
            checker.add([*loc, "credential"], f"{self.service} takes no credential", self.id)

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Call the task through the port (replayed, else attempted per the retry policy)."""

        async def step(attempt: int) -> StepOutcome:
            return await self._attempt(ctx, attempt)

        try:
            output = await ctx.port.run(
                ctx.step_id(self.id),
                metrics.timed_attempts(self.service, self.task, step),
                self.retry_policy(ctx),
                pure=not ctx.registry[self.service].side_effects,
            )
        except StepFailed as failed:
            if self.on_error != "continue":
                raise
            return NodeResult(continued_output(failed.error), status="failed")
        return NodeResult(output)

    def retry_policy(self, ctx: NodeRun) -> Retry:
        """The node's retry policy, its gaps filled from the settings."""
        s = ctx.settings
        policy = self.retry
        return Retry(
            max_attempts=policy.max_attempts if policy else s.retry_max_attempts,
            initial_backoff=(
                policy.initial_backoff_seconds
                if policy and policy.initial_backoff_seconds is not None
                else s.retry_initial_backoff_seconds
            ),
            max_backoff=(
                policy.max_backoff_seconds
                if policy and policy.max_backoff_seconds is not None
                else s.retry_max_backoff_seconds
            ),
            jitter=s.retry_jitter_seconds,
        )

    async def _attempt(self, ctx: NodeRun, attempt: int) -> StepOutcome:
        """Resolve the params, load the node's credential, call the tool; whatever the step
        records (input, output, error) passes through the step's :class:`Redactor`, which knows
        the credential's values."""
        redact = Redactor()
        try:
            credential = await self._credential(ctx)
            if credential is not None:
                redact = Redactor(credential.secrets())
            outcome = await self._call(ctx, credential)
        except StepError as exc:
            redacted = exc.redacted(redact)
            log.warning(
                "%s.%s attempt %d failed (%s%s): %s",
                self.service,
                self.task,
                attempt,
                redacted.code,
                ", retryable" if redacted.retryable else "",
                redacted.message,
            )
            raise redacted from None
        return storable_outcome(
            StepOutcome(input=redact(outcome.input), output=redact(outcome.output))
        )

    async def _credential(self, ctx: NodeRun) -> Credential | None:
        """The node's credential: decrypted for a real call, a bare reference when the step is
        sandboxed (a dry run shows which credential, never its values).

        Raises:
            StepError: the credential is missing, of a type the tool does not take, or cannot
                be read (not retryable); it could not be loaded (retryable).
        """
        if self.credential is None:
            return None
        if ctx.sandbox or ctx.settings.sandbox or ctx.credentials is None:
            return Credential(self.credential)
        tool = ctx.registry[self.service]
        try:
            return await ctx.credentials.load(self.credential, tool.credential_types)
        except CredentialUnavailable as exc:
            raise StepError(
                exc.code,
                exc.message,
                retryable=False,
                details={"loc": ["credential"], "credential": self.credential},
            ) from None
        except Exception as exc:  # the database, mostly: worth another attempt
            raise StepError(
                "credential_load_failed",
                f"credential '{self.credential}' could not be loaded: {type(exc).__name__}",
                retryable=True,
            ) from None

    async def _call(self, ctx: NodeRun, credential: Credential | None) -> StepOutcome:
        tool = ctx.registry[self.service]
        task = tool.tasks[self.task]
        resolved = render_params(self.params, ctx.context())
        try:
            params = task.params.model_validate(resolved)
        except ValidationError as exc:
            problems = [
                {"loc": ["params", *err["loc"]], "message": err["msg"]}
                for err in exc.errors(include_url=False)
            ]
            first = problems[0]
            raise StepError(
                "invalid_params",
                f"{'.'.join(map(str, first['loc']))}: {first['message']}",
                retryable=False,
                input=resolved,
                details={"errors": problems},
            ) from None
        context = ToolContext(
            idempotency_key=f"{ctx.run_id}:{ctx.step_id(self.id)}",
            settings=ctx.settings,
            resources=ctx.tools,
            sandbox=ctx.sandbox,
            credential=credential,
        )
        try:
            output = await tool.execute(self.task, params, context)
        except ToolError as exc:
            raise StepError(
                exc.code,
                exc.message,
                retryable=exc.retryable,
                input=resolved,
                details=exc.details,
                retry_after=exc.retry_after,
            ) from None
        except Exception as exc:  # a tool bug must not lose the run: record it and retry
            raise StepError(
                "tool_crashed", f"{type(exc).__name__}: {exc}", retryable=True, input=resolved
            ) from None
        return StepOutcome(input=resolved, output=output)
