"""The blueprint model (schema version 1) and its validation.

A blueprint is data: ``{"schema_version": 1, "nodes": [...], "edges": [...]}``. Node types:

- ``trigger``: how runs start (``manual``, ``webhook``, ``event``, ``schedule``, ``intent``);
  its output is the run's trigger data. A ``webhook`` trigger gets its own URL
  (``POST /hooks/{workflow_id}/{token}``; options ``respond``, ``response_timeout``,
  ``credential``, ``signature_header``); with an ``event`` it is also started by that vendor
  webhook event, like an ``event`` trigger.
- ``action``: ``service`` + ``task`` + ``params`` (templates allowed), optional ``retry`` and
  ``on_error: "continue"`` (the error becomes the output and the run goes on).
- ``router``: ordered ``conditions`` (``{branch, when}``), first match wins, else ``default``;
  outgoing edges carry the ``branch`` label they belong to.
- ``delay``: a durable timer, ``duration`` in seconds or ``"30s"``, ``"5m"``, ``"2h"``, ``"3d"``.
- ``wait_for_event``: pause until an event named ``event`` whose ``match`` condition holds
  (``event.data.x == steps.y.output.id``), or ``timeout``; then edges labelled ``timeout`` are
  taken on timeout, unlabelled edges when the event arrived (a timeout with no ``timeout`` edge
  ends that path: everything after the wait is skipped).
- ``end``: optional ``output`` (templates allowed) becomes the run's output.

Every node may carry a display ``name`` and a canvas ``position {x, y}``.
:func:`validate_blueprint` applies the rules from DESIGN.md and reports every problem with the
node id and the field path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from blueprint_engine.errors import InvalidBlueprint
from blueprint_engine.integrations import BaseTool, public_tools
from blueprint_engine.workflows import expressions, redaction
from blueprint_engine.workflows.graph import Graph

SCHEMA_VERSION: Literal[1] = 1
MAX_NODES = 500
#: Most template tokens in one blueprint: compiling them all takes about a second of CPU, in
#: a worker thread (:func:`validate_blueprint_async`).
MAX_TEMPLATE_TOKENS = 20_000
MAX_DURATION_SECONDS = 366 * 86400
#: The longest a webhook trigger may ask its hook to wait for the run's end (``response_timeout``).
MAX_HOOK_RESPONSE_SECONDS = 300

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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Position(_Model):
    """Canvas position of a node, in dashboard pixels."""

    x: float
    y: float


class _Node(_Model):
    id: NodeId = Field(description="Unique, identifier-like (used in {{steps.<id>...}}).")
    name: str | None = Field(default=None, max_length=200, description="Display name.")
    position: Position | None = None


class IntentSlot(_Model):
    """A detail an intent-triggered workflow needs; it arrives as ``trigger_data.<name>``."""

    name: NodeId
    type: Literal["text", "money", "phone", "email", "date", "number"] = "text"
    required: bool = True
    question: str = Field(min_length=1, max_length=300)
    description: str = ""


#: A credential's name: what a node writes in ``credential`` (as the ``credentials`` table checks).
CREDENTIAL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class TriggerNode(_Node):
    """Where a run starts. Its output is the trigger data."""

    type: Literal["trigger"]
    trigger: Literal["manual", "webhook", "event", "schedule", "intent"] = "manual"
    event: str | None = Field(
        default=None,
        max_length=200,
        description="For event triggers: the event name, e.g. razorpay/payment.captured; "
        "webhook triggers may name one too (that vendor event also starts them).",
    )
    cron: str | None = Field(
        default=None,
        description="For schedule triggers: 5 fields (minute hour day month weekday), or 6 with "
        "seconds last, e.g. '0 9 * * 1-5' for 09:00 on weekdays.",
    )
    timezone: str = Field(default="UTC", description="Schedule triggers: IANA zone of the cron.")
    intent: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Z0-9_]{1,63}$",
        description="For intent triggers: the command name users invoke, e.g. SEND_REMINDERS.",
    )
    slots: list[IntentSlot] = Field(
        default_factory=list, description="For intent triggers: details to collect first."
    )
    confirm: bool = Field(default=False, description="Intent triggers: ask yes/no first.")

    # -- webhook triggers: how their hook URL (POST /hooks/{workflow_id}/{token}) answers and
    # what it checks. All None unless set, so other triggers' stored form does not change.
    respond: Literal["immediately", "when_finished"] | None = Field(
        default=None,
        description="Webhook triggers: 'immediately' (default) answers 202 with the run id; "
        "'when_finished' waits for the run's end and answers its output (200), or 502 if it "
        "failed, or 202 after response_timeout.",
    )
    response_timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_HOOK_RESPONSE_SECONDS,
        description="Webhook triggers with respond 'when_finished': seconds to wait (default "
        "10; the deployment caps it with HOOK_RESPONSE_MAX_SECONDS).",
    )
    credential: str | None = Field(
        default=None,
        pattern=CREDENTIAL_NAME,
        description="Webhook triggers: a webhook_secret credential; requests must then carry "
        "the HMAC-SHA256 of their raw body (hex, optionally 'sha256=<hex>') in "
        "signature_header.",
    )
    signature_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$",
        description="Webhook triggers with a credential: the header carrying the signature "
        "(default X-Signature-256).",
    )


class RetryPolicy(_Model):
    """Per-node retries: exponential backoff with jitter between attempts."""

    max_attempts: int = Field(ge=1, le=25)
    initial_backoff_seconds: float | None = Field(default=None, ge=0, le=3600)
    max_backoff_seconds: float | None = Field(default=None, ge=0, le=3600)


class ActionNode(_Node):
    """Calls ``TOOL_REGISTRY[service]`` task ``task`` with ``params`` (templates resolved)."""

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


class Condition(_Model):
    """One router rule: take ``branch`` when ``when`` is truthy."""

    branch: BranchLabel
    when: str = Field(min_length=1, description="Jinja expression, e.g. trigger_data.amount > 100")


class RouterNode(_Node):
    """Picks the first condition that holds, else ``default``."""

    type: Literal["router"]
    conditions: list[Condition] = Field(min_length=1)
    default: BranchLabel = "default"


class DelayNode(_Node):
    """A durable timer: no process is held while it runs."""

    type: Literal["delay"]
    duration: Duration


class WaitForEventNode(_Node):
    """Pauses the run until a matching event arrives or ``timeout`` passes."""

    type: Literal["wait_for_event"]
    event: str = Field(min_length=1, max_length=200)
    match: str | None = Field(
        default=None, description="Condition over event, trigger_data and steps."
    )
    timeout: Duration


class EndNode(_Node):
    """Ends a path; ``output`` (templates allowed) becomes the run's output."""

    type: Literal["end"]
    output: Any = None


Node = Annotated[
    TriggerNode | ActionNode | RouterNode | DelayNode | WaitForEventNode | EndNode,
    Field(discriminator="type"),
]
NODE_TYPES = ("trigger", "action", "router", "delay", "wait_for_event", "end")
TIMEOUT_BRANCH = "timeout"


class Edge(_Model):
    """A directed edge; ``branch`` names the router branch (or ``timeout``) it belongs to."""

    source: NodeId
    target: NodeId
    branch: BranchLabel | None = None


class Blueprint(_Model):
    """A workflow graph. Validate untrusted input with :func:`validate_blueprint`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    nodes: list[Node] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[Edge] = Field(default_factory=list)

    @cached_property
    def graph(self) -> Graph:
        """Its :class:`Graph`, built once (a blueprint is not changed after validation; each
        run of a cached version uses the same one)."""
        return Graph(self)


@dataclass(frozen=True)
class TemplateSite:
    """One template (or bare condition, ``expression``) of a blueprint and where it is.

    ``extra_names``: top-level names it may use besides :data:`expressions.CONTEXT_NAMES`
    (a wait's ``match`` sees ``event``).
    """

    node_id: str
    loc: list[str | int]
    text: str
    expression: bool = False
    extra_names: tuple[str, ...] = ()


def template_sites(blueprint: Blueprint) -> Iterator[TemplateSite]:
    """Every template and condition of ``blueprint``, in node order (see
    :func:`node_template_sites`)."""
    for i, node in enumerate(blueprint.nodes):
        yield from node_template_sites(i, node)


def node_template_sites(index: int, node: Node) -> Iterator[TemplateSite]:
    """The templates of the node at ``nodes[index]``: an action's ``params`` and an end's
    ``output`` (template strings at any depth), a router's ``conditions[].when`` and a wait's
    ``match`` (bare expressions)."""
    loc: list[str | int] = ["nodes", index]
    if isinstance(node, ActionNode):
        for path, text in expressions.template_strings(node.params):
            yield TemplateSite(node.id, [*loc, "params", *path], text)
    elif isinstance(node, EndNode):
        for path, text in expressions.template_strings(node.output):
            yield TemplateSite(node.id, [*loc, "output", *path], text)
    elif isinstance(node, RouterNode):
        for j, condition in enumerate(node.conditions):
            yield TemplateSite(
                node.id, [*loc, "conditions", j, "when"], condition.when, expression=True
            )
    elif isinstance(node, WaitForEventNode) and node.match:
        yield TemplateSite(
            node.id, [*loc, "match"], node.match, expression=True, extra_names=("event",)
        )


def blueprint_json_schema() -> dict[str, Any]:
    """The JSON Schema of a blueprint (served at ``GET /blueprint/schema``)."""
    return Blueprint.model_json_schema()


def validate_blueprint(data: Any, registry: dict[str, BaseTool] | None = None) -> Blueprint:
    """Parse and check a blueprint.

    Args:
        data: JSON-like blueprint.
        registry: tool catalog; default the public tools: a user's blueprint can never call
            the internal ones (``channel``, ``sessions``), which act on any user's sessions.
            The system's own blueprints pass ``TOOL_REGISTRY``.

    Returns:
        The parsed :class:`Blueprint`.

    Raises:
        InvalidBlueprint: with every problem as ``{"loc": [...], "node_id": str | None,
            "message": str}``.
    """
    try:
        blueprint = Blueprint.model_validate(data)
    except ValidationError as exc:
        raise InvalidBlueprint(_model_issues(exc, data)) from None
    issues = _GraphChecker(blueprint, registry if registry is not None else public_tools()).run()
    if issues:
        raise InvalidBlueprint(issues)
    return blueprint


async def validate_blueprint_async(
    data: Any, registry: dict[str, BaseTool] | None = None
) -> Blueprint:
    """:func:`validate_blueprint` in a worker thread: compiling a large blueprint's templates
    takes up to about a second of CPU, which must not stall the event loop.

    Raises:
        InvalidBlueprint: as :func:`validate_blueprint`.
    """
    return await asyncio.to_thread(validate_blueprint, data, registry)


def _model_issues(exc: ValidationError, data: Any) -> list[dict[str, Any]]:
    raw_nodes = data.get("nodes") if isinstance(data, dict) else None
    issues = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        node_id = None
        if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
            if len(loc) >= 3 and loc[2] in NODE_TYPES:
                del loc[2]
            if isinstance(raw_nodes, list) and loc[1] < len(raw_nodes):
                raw = raw_nodes[loc[1]]
                if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                    node_id = raw["id"]
        message = err["msg"]
        if err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
            message = f"type must be one of {', '.join(NODE_TYPES)}"
        issues.append({"loc": loc, "node_id": node_id, "message": message})
    return issues


class _GraphChecker:
    """Structural and semantic rules that the Pydantic model cannot express."""

    def __init__(self, blueprint: Blueprint, registry: dict[str, BaseTool]) -> None:
        self.bp = blueprint
        self.registry = registry
        self.issues: list[dict[str, Any]] = []
        self.template_tokens = 0

    def add(self, loc: list[str | int], message: str, node_id: str | None = None) -> None:
        self.issues.append({"loc": loc, "node_id": node_id, "message": message})

    def run(self) -> list[dict[str, Any]]:
        index: dict[str, int] = {}
        for i, node in enumerate(self.bp.nodes):
            if node.id in index:
                self.add(["nodes", i, "id"], f"duplicate node id '{node.id}'", node.id)
            index.setdefault(node.id, i)
        self._check_edges(index)
        triggers = [n for n in self.bp.nodes if isinstance(n, TriggerNode)]
        if len(triggers) != 1:
            self.add(
                ["nodes"], f"a blueprint needs exactly one trigger node, found {len(triggers)}"
            )
        if self.issues:
            return self.issues
        graph = Graph(self.bp)
        self._check_structure(graph, index)
        if self.issues:
            return self.issues
        for i, node in enumerate(self.bp.nodes):
            self._check_node(graph, i, node)
            for site in node_template_sites(i, node):
                self._check_refs(graph, site)
        return self.issues

    def _check_edges(self, index: dict[str, int]) -> None:
        seen: set[tuple[str, str]] = set()
        for i, edge in enumerate(self.bp.edges):
            for end in ("source", "target"):
                node_id = getattr(edge, end)
                if node_id not in index:
                    self.add(["edges", i, end], f"edge {end} '{node_id}' is not a node")
            if edge.source == edge.target:
                self.add(["edges", i], f"edge loops from '{edge.source}' to itself", edge.source)
            if (edge.source, edge.target) in seen:
                self.add(
                    ["edges", i], f"duplicate edge {edge.source} -> {edge.target}", edge.source
                )
            seen.add((edge.source, edge.target))

    def _check_structure(self, graph: Graph, index: dict[str, int]) -> None:
        trigger = graph.trigger
        if graph.incoming[trigger.id]:
            self.add(
                ["nodes", index[trigger.id]], "the trigger cannot have incoming edges", trigger.id
            )
        cycle = graph.find_cycle()
        if cycle:
            path = " -> ".join([*cycle, cycle[0]])
            self.add(["edges"], f"cycle {path}: loops are not supported", cycle[0])
            return
        reachable = graph.descendants(trigger.id) | {trigger.id}
        for node in self.bp.nodes:
            if node.id not in reachable:
                self.add(["nodes", index[node.id]], "not reachable from the trigger", node.id)

    def _check_node(self, graph: Graph, i: int, node: Any) -> None:
        loc: list[str | int] = ["nodes", i]
        outgoing = graph.outgoing[node.id]
        labels = {e.branch for e in outgoing}
        if isinstance(node, RouterNode):
            declared = [c.branch for c in node.conditions]
            if len(set(declared)) != len(declared):
                self.add([*loc, "conditions"], "branch labels must be unique", node.id)
            allowed = {*declared, node.default}
            for edge in outgoing:
                if edge.branch not in allowed:
                    self.add(
                        ["edges", self.bp.edges.index(edge), "branch"],
                        f"edge from router '{node.id}' needs a branch label, one of "
                        f"{sorted(allowed)}; got {edge.branch!r}",
                        node.id,
                    )
        elif isinstance(node, WaitForEventNode):
            for edge in outgoing:
                if edge.branch not in (None, TIMEOUT_BRANCH):
                    self.add(
                        ["edges", self.bp.edges.index(edge), "branch"],
                        f"edges from wait_for_event '{node.id}' are unlabelled or 'timeout'",
                        node.id,
                    )
        elif labels - {None}:
            self.add(
                ["edges"], "only router and wait_for_event edges carry a branch label", node.id
            )
        if isinstance(node, TriggerNode):
            if node.trigger == "event" and not node.event:
                self.add([*loc, "event"], "an event trigger needs an event name", node.id)
            self._check_hook_options(loc, node)
            if node.trigger == "schedule":
                self._check_schedule(loc, node)
            if node.trigger == "intent" and not node.intent:
                self.add([*loc, "intent"], "an intent trigger needs an intent name", node.id)
        elif isinstance(node, ActionNode):
            self._check_action(loc, node)
        elif isinstance(node, EndNode) and outgoing:
            self.add(loc, "an end node cannot have outgoing edges", node.id)

    # -- webhook triggers' hook options ---------------------------------------------------------

    _HOOK_OPTIONS = ("respond", "response_timeout", "credential", "signature_header")

    def _check_hook_options(self, loc: list[str | int], node: TriggerNode) -> None:
        """The hook options belong to webhook triggers; ``response_timeout`` only means
        something when waiting (``respond: when_finished``), ``signature_header`` only with a
        ``credential``. (That the credential exists, is the owner's and a ``webhook_secret`` is
        checked at save: ``credential_service.check_references``.)"""
        if node.trigger != "webhook":
            for field in self._HOOK_OPTIONS:
                if getattr(node, field) is not None:
                    self.add([*loc, field], f"only webhook triggers take {field!r}", node.id)
            return
        if node.response_timeout is not None and node.respond != "when_finished":
            self.add(
                [*loc, "response_timeout"],
                "response_timeout applies only with respond: 'when_finished'",
                node.id,
            )
        if node.signature_header is not None and node.credential is None:
            self.add(
                [*loc, "signature_header"],
                "signature_header needs a credential (a webhook_secret) to check it with",
                node.id,
            )

    def _check_schedule(self, loc: list[str | int], node: TriggerNode) -> None:
        if not node.cron:
            self.add([*loc, "cron"], "a schedule trigger needs a cron expression", node.id)
        elif not croniter.is_valid(node.cron):
            self.add(
                [*loc, "cron"],
                f"{node.cron!r} is not a cron expression such as '0 9 * * 1-5'",
                node.id,
            )
        try:
            ZoneInfo(node.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.add([*loc, "timezone"], f"unknown time zone {node.timezone!r}", node.id)

    def _check_action(self, loc: list[str | int], node: ActionNode) -> None:
        tool = self.registry.get(node.service)
        if tool is None:
            known = ", ".join(sorted(self.registry))
            self.add(
                [*loc, "service"], f"unknown service '{node.service}' (known: {known})", node.id
            )
            return
        task = tool.tasks.get(node.task)
        if task is None:
            known = ", ".join(sorted(tool.tasks))
            self.add(
                [*loc, "task"],
                f"{node.service} has no task '{node.task}' (known: {known})",
                node.id,
            )
            return
        try:
            task.params.model_validate(node.params)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                value = err.get("input")
                if isinstance(value, str) and expressions.is_template(value):
                    continue  # resolved at run time, validated again then
                self.add([*loc, "params", *err["loc"]], err["msg"], node.id)
        for path, what in redaction.literal_secrets(node.params):
            self.add(
                [*loc, "params", *path],
                f"{what}: store it as a credential (POST /credentials) and name that in the "
                "node's 'credential'",
                node.id,
            )
        if node.credential is not None and not tool.credential_types:
            self.add([*loc, "credential"], f"{node.service} takes no credential", node.id)

    def _check_refs(self, graph: Graph, site: TemplateSite) -> None:
        loc, node_id, text = site.loc, site.node_id, site.text
        allowed = expressions.CONTEXT_NAMES | set(site.extra_names)
        try:
            if self.template_tokens > MAX_TEMPLATE_TOKENS:
                return  # reported once, below; compiling more would only cost time
            self.template_tokens += expressions.cost(text, expression=site.expression)
            if self.template_tokens > MAX_TEMPLATE_TOKENS:
                self.add(
                    ["nodes"],
                    f"the blueprint's templates have more than {MAX_TEMPLATE_TOKENS} tokens in "
                    "all; make them shorter or split the workflow",
                )
                return
            if site.expression:
                refs = expressions.check_expression(text, allowed=allowed)
            else:
                refs = expressions.check_template(text, allowed=allowed)
        except expressions.ExpressionError as exc:
            self.add(loc, str(exc), node_id)
            return
        before = graph.ancestors(node_id)
        for ref in sorted(refs):
            if ref not in graph.nodes:
                self.add(loc, f"references unknown node '{ref}'", node_id)
            elif ref not in before:
                self.add(loc, f"references '{ref}', which does not run before '{node_id}'", node_id)
