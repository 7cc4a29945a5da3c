"""What every node kind is: its model, its checks, how it runs, which edges it keeps live.

A node kind is one class (a subclass of :class:`NodeKind`, in its own module of this package)
and one line in :data:`~blueprint_engine.workflows.nodes.NODE_KINDS`. From those
declarations come the blueprint's JSON Schema and validation (:mod:`..schema`), the engine's
dispatch (:mod:`..engine`) and the architect's draft format (:mod:`...agents.draft_format`).

This module also holds the field types the kinds share (ids, durations, positions, edges).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NoReturn, Protocol
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from blueprint_engine.config import Settings
from blueprint_engine.integrations import BaseTool, ToolResources
from blueprint_engine.store import storable
from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.nodes.drafting import DraftField, DraftValues
from blueprint_engine.workflows.steps import (
    NO_RETRY,
    CredentialSource,
    StepError,
    StepOutcome,
    StepPort,
    Suspended,
)

if TYPE_CHECKING:
    from blueprint_engine.workflows.graph import Graph

MAX_DURATION_SECONDS = 366 * 86400

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """Turn ``90``, ``"90s"``, ``"5m"``, ``"2h"``, ``"3d"``, ``"1w"`` into seconds (float).

    Other values pass through for the model to reject with a clear error.
    """
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; use seconds or e.g. '30s', '5m', '2d'")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(ge=0, le=MAX_DURATION_SECONDS),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "description": "seconds"},
                {"type": "string", "pattern": _DURATION.pattern, "examples": ["30s", "5m", "2d"]},
            ]
        }
    ),
]
NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
BranchLabel = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Loc = list[str | int]
#: A credential's name: what a node writes in ``credential`` (as the ``credentials`` table checks).
CREDENTIAL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Model(BaseModel):
    """Base of the blueprint's models: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class Position(Model):
    """Canvas position of a node, in dashboard pixels."""

    x: float
    y: float


class Edge(Model):
    """A directed edge; ``branch`` names the router branch (or ``timeout``) it belongs to."""

    source: NodeId
    target: NodeId
    branch: BranchLabel | None = None


@dataclass(frozen=True)
class TemplateSite:
    """One template (or bare condition, ``expression``) of a blueprint and where it is.

    ``extra_names``: top-level names it may use besides the run's context (a wait's ``match``
    sees ``event``; a loop body sees ``item`` and ``index``).
    """

    node_id: str
    loc: Loc
    text: str
    expression: bool = False
    extra_names: tuple[str, ...] = ()


@dataclass
class NodeResult:
    """Where a node ended: its output, its status, and for kinds that choose among their
    outgoing edges the label chosen (a router's branch, a wait's ``timeout``)."""

    output: Any
    status: str = "succeeded"
    branch: str | None = None


class Checker(Protocol):
    """What a node kind's :meth:`NodeKind.check` may use (the blueprint validator)."""

    @property
    def registry(self) -> Mapping[str, BaseTool]:
        """The tools a node may call."""
        ...

    def add(self, loc: Loc, message: str, node_id: str | None = None) -> None:
        """Report a problem at ``loc`` (a path into the blueprint)."""
        ...

    def check_body(self, owner: NodeKind, body: Any, loc: Loc) -> None:
        """Check a sub-graph ``body`` (``{nodes, edges}``) that ``owner`` runs, at ``loc``."""
        ...


@dataclass
class WalkOutcome:
    """Where a walk of a graph (a run, or one item of a loop) left off."""

    status: str  # succeeded | failed | waiting
    output: Any = None
    error: dict[str, Any] | None = None
    suspended: list[Suspended] = field(default_factory=list)
    node_status: dict[str, str] = field(default_factory=dict)


class NodeRun(Protocol):
    """What a node kind's :meth:`NodeKind.run` may use: the run's services and its place in it.

    Attributes:
        port: the runner's step port.
        settings, registry, sandbox, credentials, run_id: of the run.
        tools: the process's database and HTTP client, lent to every tool call.
    """

    port: StepPort
    settings: Settings
    registry: Mapping[str, BaseTool]
    tools: ToolResources
    sandbox: bool
    credentials: CredentialSource | None
    run_id: UUID

    def step_id(self, node_id: str) -> str:
        """The step id of ``node_id`` here (prefixed inside a loop body)."""
        ...

    def context(self) -> dict[str, Any]:
        """The template context now (``trigger_data``, ``steps``, ``run``, ``owner``, and
        ``item``/``index`` inside a loop body); its ``steps`` changes as nodes finish."""
        ...

    async def walk(self, graph: Graph, prefix: str, names: dict[str, Any]) -> WalkOutcome:
        """Walk sub-graph ``graph`` from its entry nodes, its step ids prefixed by ``prefix``,
        its templates seeing ``names`` besides this context."""
        ...


def _summary_as_description(schema: dict[str, Any], cls: type) -> None:
    """JSON Schema of a kind: its ``summary`` (written for users) as its description, in
    place of its docstring (written for this code); a class without one of its own (a trigger
    kind) keeps its docstring."""
    if "summary" in vars(cls):
        schema["description"] = vars(cls)["summary"]


class NodeKind(Model):
    """Base of the node kinds. A subclass declares ``type: Literal["<kind>"]``, its fields,
    and overrides what differs from these defaults: no checks beyond the model, no templates,
    unlabelled outgoing edges only, all of them live after it ran.

    Class attributes:
        summary: one line saying what the kind does (docs, the architect's prompt, and the
            kind's description in the blueprint's JSON Schema, which the dashboard shows).
        draft_rule: how the architect writes it (its prompt's rule for this kind).
        draft_fields: the fields the architect's model writes for it besides ``id``, ``type``,
            ``name`` (and a trigger's ``trigger``), by their draft names (see
            :mod:`.drafting`); :meth:`from_draft` turns them into the node's fields.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_summary_as_description)

    summary: ClassVar[str]
    draft_rule: ClassVar[str] = ""
    draft_fields: ClassVar[Mapping[str, DraftField]] = {}

    type: str
    id: NodeId = Field(description="Unique, identifier-like (used in {{steps.<id>...}}).")
    name: str | None = Field(default=None, max_length=200, description="Display name.")
    position: Position | None = None

    @classmethod
    def from_draft(cls, draft: DraftValues) -> dict[str, Any]:
        """The node's own blueprint fields (all but ``id``, ``type``, ``name``, ``trigger``)
        from the model's flat ``draft``, unchecked: the blueprint's validator checks them.
        The default fills :attr:`draft_fields`; a JSON string that does not parse is left
        out and recorded in ``draft.problems``."""
        return draft.fill(cls.draft_fields)

    def check(self, checker: Checker, loc: Loc) -> None:
        """Report what the model cannot express (the node is at ``loc``)."""

    def template_sites(self, loc: Loc) -> Iterator[TemplateSite]:
        """The node's own templates and conditions (a body's are its nodes')."""
        yield from ()

    def branches(self) -> frozenset[str | None]:
        """The labels its outgoing edges may carry (None: unlabelled)."""
        return frozenset({None})

    def calls(self) -> list[tuple[UUID, int | None]]:
        """The saved workflows (and pinned versions) it runs as child runs."""
        return []

    def is_live(self, edge: Edge, result: NodeResult) -> bool:
        """Whether ``edge`` leaving this node is taken after it ended with ``result``."""
        return True

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Run the node through ``ctx.port``.

        Raises:
            StepFailed: the node failed for good (the run fails unless it continues).
            Suspended: it waits (timer, event, child run, or the runner's hand-back).
        """
        raise NotImplementedError


def render_params(params: Any, context: dict[str, Any], what: str = "params") -> Any:
    """``params`` with its templates resolved against ``context``, checked storable.

    Raises:
        StepError: ``expression_error`` (a template failed) or ``invalid_params`` (the result
            cannot be stored: NUL, too large, too deep…); neither is retryable.
    """
    try:
        resolved = expressions.render(params, context)
    except expressions.ExpressionError as exc:
        raise StepError("expression_error", str(exc), retryable=False) from None
    try:
        storable.check(resolved)
    except storable.Unstorable as exc:
        raise StepError(
            "invalid_params",
            exc.describe(what),
            retryable=False,
            details={"errors": [{"loc": [what, *exc.path], "message": exc.reason}]},
        ) from None
    return resolved


def storable_outcome(outcome: StepOutcome) -> StepOutcome:
    """The outcome with its output as PostgreSQL stores it (:func:`storable.as_stored`: the
    run goes on with exactly what a replay of the checkpoint gives), if it can store it.

    Raises:
        StepError: ``output_not_storable`` (not retryable: the same call gives the same data).
    """
    try:
        storable.check(outcome.output)
    except storable.Unstorable as exc:
        raise StepError(
            "output_not_storable",
            f"the step's output cannot be stored: {exc.describe('output')}",
            retryable=False,
            input=outcome.input,
            details={"loc": ["output", *exc.path], "reason": exc.reason},
        ) from None
    return StepOutcome(input=outcome.input, output=storable.as_stored(outcome.output))


async def fail_step(ctx: NodeRun, step_id: str, error: StepError) -> NoReturn:
    """Record ``error`` as the failure of step ``step_id`` (or replay the one recorded before).

    Raises:
        StepFailed: always.
    """

    async def failing(attempt: int) -> StepOutcome:
        raise error

    await ctx.port.run(step_id, failing, NO_RETRY, pure=True)
    raise AssertionError(f"step {step_id} was recorded as failed and then returned")
