"""WorkflowArchitect: plain language -> a validated blueprint (and edits to one).

The model answers with structured output (OpenAI ``json_schema``, strict) in a flat, strict-mode
friendly shape derived from the node kinds (:mod:`.draft_format`: params and outputs travel as
JSON strings). The draft is converted to a blueprint and checked by the same validator as
execution, and any workflow it runs must be one of the user's; problems go back to the model for
a bounded number of repairs, and so does an answer that does not fit the draft schema at all
(prose, fields missing, cut off at the length limit). Nothing invalid is ever returned.

The system prompt is generated from the node kinds (their summaries and draft rules) and
``TOOL_REGISTRY`` (services, tasks, param schemas, result fields), so adding a node kind or a
tool needs no edit here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from blueprint_engine.agents import draft_format, llm
from blueprint_engine.config import Settings
from blueprint_engine.errors import AppError, InvalidBlueprint, LLMBadOutput
from blueprint_engine.integrations import BaseTool, public_tools
from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.layout import layered_layout
from blueprint_engine.workflows.nodes import ActionNode, Body, Edge, Node, TriggerNode
from blueprint_engine.workflows.schema import Blueprint, template_sites, validate_blueprint

log = logging.getLogger(__name__)

#: Events this backend emits itself (Razorpay webhooks arrive as ``razorpay/<event>``).
KNOWN_EVENTS = (
    "razorpay/payment.authorized",
    "razorpay/payment.captured",
    "razorpay/payment.failed",
    "razorpay/order.paid",
    "razorpay/payment_link.paid",
    "razorpay/payment_link.expired",
    "razorpay/invoice.paid",
    "razorpay/invoice.expired",
    "razorpay/refund.processed",
)


@dataclass
class Draft:
    """A validated blueprint (as stored: defaults filled in, nulls left out) with advisory
    warnings and how many model calls it took."""

    blueprint: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    attempts: int = 1


class DraftInvalid(AppError):
    """The model never produced a valid blueprint (422); details hold the errors and last draft."""

    status_code = 422
    code = "draft_invalid"


def _tool_catalog(registry: dict[str, BaseTool]) -> str:
    lines = []
    for tool in registry.values():
        lines.append(f"### service `{tool.service}`: {tool.description}")
        if tool.credential_types:
            kinds = ", ".join(model.kind for model in tool.credential_types)
            lines.append(f"  credential types: {kinds}")
        for name, task in tool.tasks.items():
            schema = task.params.model_json_schema()
            lines.append(f"- task `{name}`: {task.description}")
            lines.append(f"  params JSON schema: {json.dumps(schema, separators=(',', ':'))}")
            fields = json.dumps(task.result_fields(), ensure_ascii=False)
            lines.append(f"  output fields: {fields}")
    return "\n".join(lines)


def system_prompt(registry: dict[str, BaseTool] | None = None) -> str:
    """The architect's instructions, generated from the node kinds (their summaries and draft
    rules: :func:`draft_format.kind_rules`), the tool catalog and the blueprint rules."""
    catalog = _tool_catalog(registry if registry is not None else public_tools())
    events = ", ".join(KNOWN_EVENTS)
    owner_fields = ", ".join(f"{{{{ owner.{name} }}}}" for name in expressions.OWNER_FIELDS)
    return f"""You design automation workflows ("blueprints") for a durable workflow engine.
Answer with one blueprint: nodes and edges forming a directed acyclic graph.

{draft_format.kind_rules()}

Rules:
- Events this backend emits: {events}. Razorpay webhook payloads arrive as trigger_data,
  e.g. {{{{ trigger_data.payload.payment.entity.amount }}}} (paise, integer),
  {{{{ trigger_data.payload.payment.entity.contact }}}} (phone), ...entity.email, ...entity.id.
  Payment link events: trigger_data.payload.payment_link.entity.id / .amount / .customer.
- Values may be templates (Jinja): {{{{ trigger_data.<field> }}}} for the trigger payload,
  {{{{ steps.<node_id>.output.<field> }}}} for the output of a node that runs BEFORE this one
  (an ancestor in the graph) and {{{{ owner.<field> }}}} for the user who owns the workflow.
  A string that is exactly one template keeps the value's type.
- The user asking for the workflow is `owner`; their profile gives {owner_fields}.
  "Me", "my phone", "alert me", "notify me", "send me" mean the owner: a WhatsApp message to
  them has `to` "{{{{ owner.phone }}}}" (E.164); use {{{{ owner.email }}}} where their email
  address is needed and {{{{ owner.display_name }}}} for their name. Never invent, guess or use
  a placeholder phone number or address for anyone: the owner's come from `owner`, a
  customer's from the trigger data or an earlier step.
- Secrets (tokens, passwords, API keys, user:password@ in URLs) never go into params: the
  user keeps them in connections, and an action names one in `credential` — only a name from
  the user's connections listed with the request, of a type its service takes; otherwise null.
- A workflow to run as a child run is one of the user's saved workflows listed with the
  request, by its id; when none fits, build the steps in this workflow instead.
- Node ids are snake_case identifiers and unique. Money is in paise (₹1 = 100). Phone numbers
  are E.164 (+919876543210). Only use services and tasks from the catalog.
- Fields that do not apply to a node's type must be null. Edges carry `branch` null unless they
  leave a router or are a wait's timeout edge.

Tool catalog:
{catalog}
"""


def _format_issues(issues: list[dict[str, Any]]) -> str:
    lines = []
    for issue in issues:
        where = ".".join(str(p) for p in issue.get("loc", []))
        node = f"node '{issue['node_id']}' " if issue.get("node_id") else ""
        lines.append(f"- {node}{where}: {issue['message']}")
    return "\n".join(lines)


def _connections(connections: Sequence[tuple[str, str]]) -> str:
    """The user's connection names and types for the request (no values exist here)."""
    if not connections:
        return "\n\nThe user has no connections: leave `credential` null."
    listed = ", ".join(f"{name} ({kind})" for name, kind in connections)
    return f"\n\nThe user's connections (name (type)): {listed}."


@dataclass(frozen=True)
class UserWorkflow:
    """One of the user's saved workflows, which a draft may run as a child run (a ``workflow``
    node, a foreach's ``workflow_id``).

    Attributes:
        id: the workflow's id. name, description: as the user wrote them.
        trigger: the trigger kind of its active version (else of its latest).
        active: whether it has an active version (a child run without a pinned version runs
            the active one).
    """

    id: UUID
    name: str
    description: str | None
    trigger: str
    active: bool


#: Most of the user's workflows listed with a request (the caller gives the most recent first).
MAX_LISTED_WORKFLOWS = 50
#: Longest name or description of a listed workflow, in characters.
_LISTED_CHARS = 120


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _LISTED_CHARS else flat[: _LISTED_CHARS - 1] + "…"


def _workflows(workflows: Sequence[UserWorkflow]) -> str:
    """The user's active workflows for the request: what a draft may run as child runs."""
    active = [w for w in workflows if w.active][:MAX_LISTED_WORKFLOWS]
    if not active:
        return "\n\nThe user has no active saved workflows: the draft can run none of them."
    lines = [
        f"- {w.id}: {_one_line(w.name)}"
        + (f" — {_one_line(w.description)}" if w.description else "")
        + f" (trigger: {w.trigger})"
        for w in active
    ]
    return (
        "\n\nThe user's saved workflows, which the draft may run as child runs "
        "(id: name — description (trigger kind)):\n" + "\n".join(lines)
    )


@dataclass(frozen=True)
class _User:
    """Who a draft is for: what the request tells the model and the checks of its answer."""

    owner: Mapping[str, Any] | None
    connections: Sequence[tuple[str, str]]
    workflows: Sequence[UserWorkflow]
    #: Workflows the draft may run: the user's, plus those the revised blueprint already ran.
    callable: frozenset[UUID]

    def context(self) -> str:
        return _connections(self.connections) + _workflows(self.workflows)


def _calls(blueprint: Any) -> set[UUID]:
    """The workflows a stored blueprint runs (none if it no longer parses)."""
    try:
        nodes = Blueprint.model_validate(blueprint).nodes
    except ValueError:
        return set()
    return {wid for node in nodes for wid, _ in node.calls()}


def _graphs(nodes: Sequence[Node], edges: Sequence[Edge]) -> Iterator[tuple[Node, list[Edge]]]:
    """Every node, loop bodies included, with the edges that leave it."""
    for node in nodes:
        yield node, [e for e in edges if e.source == node.id]
        body = getattr(node, "body", None)
        if isinstance(body, Body):
            yield from _graphs(body.nodes, body.edges)


_STEP_REF = re.compile(r"\bsteps\.([A-Za-z_][A-Za-z0-9_]*)")


class WorkflowArchitect:
    """Drafts and revises blueprints with a chat model.

    Args:
        model: a LangChain chat model supporting ``with_structured_output(method="json_schema")``
            (``ChatOpenAI`` in production).
        settings: repair budget, retry policy, prompt limits.
        registry: the tool catalog (default: the public tools of ``TOOL_REGISTRY``).
    """

    def __init__(
        self,
        model: BaseChatModel,
        settings: Settings,
        registry: dict[str, BaseTool] | None = None,
    ) -> None:
        self.registry = registry if registry is not None else public_tools()
        self.settings = settings
        self.model = llm.StructuredModel(
            model, draft_format.DraftBlueprint, settings, purpose="architect"
        )

    async def draft(
        self,
        prompt: str,
        *,
        owner: Mapping[str, Any] | None = None,
        connections: Sequence[tuple[str, str]] = (),
        workflows: Sequence[UserWorkflow] = (),
    ) -> Draft:
        """Draft a blueprint for ``prompt``. ``owner``: the profile of the user it is for
        (``{"display_name", "email", "phone"}``); a draft that uses an ``owner.<field>`` it
        lacks gets a warning (None: not known, no such warnings). ``connections``: the user's
        credentials as ``(name, type)``, which actions may name (never their values).
        ``workflows``: the user's saved workflows, most recently changed first; the active
        ones are listed for the model to run as child runs, and a draft that runs any other
        workflow is sent back for repair (one of them that is not active: a warning).

        Raises:
            DraftInvalid: 422 after ``ARCHITECT_MAX_REPAIRS`` repairs.
            LLMBadOutput: 502 when no attempt gave an answer that fits the draft schema.
            LLMTimeout: 504. LLMUnavailable: 502.
        """
        user = _User(owner, connections, workflows, frozenset(w.id for w in workflows))
        messages: list[BaseMessage] = [
            SystemMessage(system_prompt(self.registry)),
            HumanMessage(f"Design a workflow for: {prompt}" + user.context()),
        ]
        draft = await self._generate(messages, user)
        layered_layout(draft.blueprint)
        return draft

    async def revise(
        self,
        current: dict[str, Any],
        instruction: str,
        *,
        owner: Mapping[str, Any] | None = None,
        connections: Sequence[tuple[str, str]] = (),
        workflows: Sequence[UserWorkflow] = (),
    ) -> Draft:
        """Apply an edit instruction to ``current``; unchanged nodes keep their ids and canvas
        positions (new nodes go below their parents, clear of every node: see
        :func:`layered_layout`). ``owner``, ``connections``, ``workflows``: as for
        :meth:`draft` (``workflows`` without the one revised: it cannot run itself); the
        workflows ``current`` runs stay allowed.

        Raises:
            DraftInvalid: 422. LLMBadOutput: 502. LLMTimeout: 504. LLMUnavailable: 502.
        """
        allowed = frozenset(w.id for w in workflows) | _calls(current)
        user = _User(owner, connections, workflows, allowed)
        messages: list[BaseMessage] = [
            SystemMessage(system_prompt(self.registry)),
            HumanMessage(
                "Here is the current blueprint:\n"
                + json.dumps(current, indent=1)
                + f"\n\nChange it as follows: {instruction}\n"
                "Return the whole updated blueprint. Keep the id of every node you do not "
                "change, and keep unchanged nodes exactly as they are." + user.context()
            ),
        ]
        draft = await self._generate(messages, user)
        keep_ids(current, draft.blueprint)
        layered_layout(draft.blueprint, keep=current)
        return draft

    async def _generate(self, messages: list[BaseMessage], user: _User) -> Draft:
        """Ask, validate, and send every problem back, ``1 + ARCHITECT_MAX_REPAIRS`` times at
        most. An answer that does not fit the draft schema counts as a failed attempt too."""
        last: dict[str, Any] | None = None
        issues: list[dict[str, Any]] = []
        unusable: LLMBadOutput | None = None
        budget = 1 + self.settings.architect_max_repairs
        for attempt in range(1, budget + 1):
            try:
                parsed = await self.model.ainvoke(messages)
            except LLMBadOutput as exc:
                unusable = exc
                log.info("draft attempt %d unusable: %s", attempt, exc.message)
                messages = [
                    *messages,
                    HumanMessage(
                        f"Your answer could not be used: {exc.message.rstrip('.')}. Answer "
                        "again with the whole blueprint as one JSON object that matches the "
                        "schema; keep it short enough to finish."
                    ),
                ]
                continue
            last, issues = draft_format.to_blueprint(parsed)
            if not issues:
                try:
                    valid = validate_blueprint(last, self.registry)
                except InvalidBlueprint as exc:
                    issues = exc.details
                else:
                    issues = _unknown_calls(valid, user.callable)
                    if not issues:
                        warnings = self._warnings(valid, user)
                        if user.owner is not None:
                            warnings += profile_warnings(valid, user.owner)
                        # as it is stored (defaults filled in), so revisions compare alike
                        stored = valid.model_dump(mode="json", exclude_none=True)
                        return Draft(stored, warnings, attempt)
            log.info("draft attempt %d invalid: %d issue(s)", attempt, len(issues))
            messages = [
                *messages,
                AIMessage(content=parsed.model_dump_json()),
                HumanMessage(
                    "That blueprint is invalid:\n"
                    + _format_issues(issues)
                    + "\nFix every problem and return the whole corrected blueprint."
                ),
            ]
        if last is None and unusable is not None:
            raise LLMBadOutput(
                f"the language model gave no usable answer in {budget} attempt(s); the last: "
                f"{unusable.message}",
                details={"attempts": budget, "problem": unusable.message},
            )
        raise DraftInvalid(
            f"the model did not produce a valid blueprint in {budget} attempt(s)",
            details={"errors": issues, "last_draft": last},
        )

    def _warnings(self, blueprint: Blueprint, user: _User) -> list[str]:
        """What the user should know before activating ``blueprint`` (loop bodies included):
        sandboxed services, connections and workflows to make or activate, unwired branches."""
        warnings = []
        everything = list(_graphs(blueprint.nodes, blueprint.edges))
        actions = [n for n, _ in everything if isinstance(n, ActionNode)]
        for service in sorted({n.service for n in actions if not n.credential}):
            if self.registry[service].sandboxed(self.settings):
                warnings.append(
                    f"{service} has no credentials configured: its steps will run in "
                    "sandbox mode (recorded, not sent) unless they name a connection"
                )
        names = {name for name, _ in user.connections}
        for name in sorted({n.credential for n in actions if n.credential} - names):
            warnings.append(
                f"connection '{name}' does not exist yet: add it (POST /credentials) before "
                "activating the workflow"
            )
        inactive = {w.id: w.name for w in user.workflows if not w.active}
        for node, leaving in everything:
            event = node.event_name() if isinstance(node, TriggerNode) else None
            if event and not event.startswith("razorpay/"):
                warnings.append(
                    f"trigger event '{event}' is not emitted by this backend; "
                    "send it with POST /events"
                )
            for wid, version in node.calls():
                if wid in inactive and version is None:
                    warnings.append(
                        f"node '{node.id}' runs workflow '{inactive[wid]}', which is not "
                        "active: activate it (or pin a version) before this workflow runs"
                    )
            labels = node.branches()
            if None not in labels:  # it always takes a labelled branch: each should lead on
                wired = {e.branch for e in leaving}
                for label in sorted(str(b) for b in labels - wired):
                    warnings.append(f"{node.type} '{node.id}' branch '{label}' leads nowhere")
        return warnings


def _unknown_calls(blueprint: Blueprint, allowed: frozenset[UUID]) -> list[dict[str, Any]]:
    """An issue for each node that runs a workflow outside ``allowed`` (a made-up id, or
    another user's): no later change by the user could make it valid."""
    return [
        {
            "loc": ["nodes", i],
            "node_id": node.id,
            "message": f"runs workflow {wid}, which is not one of the user's saved workflows "
            "listed with the request",
        }
        for i, node in enumerate(blueprint.nodes)
        for wid, _ in node.calls()
        if wid not in allowed
    ]


#: What ``PATCH /me`` takes for each profile field, for the warnings' examples.
_PROFILE_EXAMPLES = {
    "display_name": '{"display_name": "Asha"}',
    "email": '{"email": "asha@example.com"}',
    "phone": '{"phone": "+919876543210"}',
}


def profile_warnings(blueprint: Blueprint, owner: Mapping[str, Any]) -> list[str]:
    """One warning for each ``owner.<field>`` that ``blueprint`` (validated) reads and the
    ``owner`` profile lacks, naming the nodes that read it and how to set it: at run time
    those steps would fail with ``expression_error``."""
    readers: dict[str, list[str]] = {}
    for site in template_sites(blueprint):
        for name in expressions.fields_read("owner", site.text, expression=site.expression):
            if owner.get(name) is None:
                nodes = readers.setdefault(name, [])
                if site.node_id not in nodes:
                    nodes.append(site.node_id)
    warnings = []
    for name, nodes in sorted(readers.items()):
        which = ", ".join(f"'{n}'" for n in nodes)
        one = len(nodes) == 1
        warnings.append(
            f"node{'' if one else 's'} {which} use{'s' if one else ''} {{{{ owner.{name} }}}}, "
            f"but your profile has no {name}: set it with PATCH /me {_PROFILE_EXAMPLES[name]} "
            f"before the workflow runs (until then {'that step fails' if one else 'they fail'})"
        )
    return warnings


def _content(node: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in node.items() if k not in ("id", "name", "position")}, sort_keys=True
    )


def keep_ids(current: dict[str, Any], revised: dict[str, Any]) -> None:
    """Give revised nodes that are unchanged (same content) but renamed their old ids back,
    rewriting edges and ``steps.<id>`` references, so the canvas and run history line up."""
    old_by_content = {_content(n): n["id"] for n in current["nodes"]}
    taken = {n["id"] for n in revised["nodes"]}
    renames: dict[str, str] = {}
    for node in revised["nodes"]:
        old = old_by_content.get(_content(node))
        if old and old != node["id"] and old not in taken:
            renames[node["id"]] = old
            taken.add(old)
    if not renames:
        return

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            return _STEP_REF.sub(lambda m: "steps." + renames.get(m[1], m[1]), value)
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    for node in revised["nodes"]:
        node["id"] = renames.get(node["id"], node["id"])
        for key in node.keys() - {"id", "type", "name", "position"}:
            node[key] = rewrite(node[key])
    for edge in revised["edges"]:
        edge["source"] = renames.get(edge["source"], edge["source"])
        edge["target"] = renames.get(edge["target"], edge["target"])
