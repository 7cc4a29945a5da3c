"""WorkflowArchitect: plain language -> a validated blueprint (and edits to one).

The model answers with structured output (OpenAI ``json_schema``, strict) in a flat, strict-mode
friendly shape (:class:`DraftBlueprint`: params and outputs travel as JSON strings). The draft is
converted to a blueprint and checked by the same validator as execution; errors go back to the
model for a bounded number of repairs, and so does an answer that does not fit the draft schema
at all (prose, fields missing, cut off at the length limit). Nothing invalid is ever returned.

The system prompt is generated from ``TOOL_REGISTRY`` (services, tasks, param schemas, result
fields) and the blueprint rules, so adding a tool needs no prompt edit.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field

from blueprint_engine.agents import llm
from blueprint_engine.config import Settings
from blueprint_engine.errors import AppError, InvalidBlueprint, LLMBadOutput
from blueprint_engine.integrations import BaseTool, public_tools
from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.layout import layered_layout
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftCondition(_Strict):
    """A router rule as the model writes it."""

    branch: str = Field(description="Branch label, e.g. 'large'.")
    when: str = Field(description="Jinja expression without braces, e.g. trigger_data.amount > 100")


class DraftNode(_Strict):
    """One node, flat: fields that do not apply to the node's type are null."""

    id: str = Field(description="Unique identifier: letters, digits, underscores (snake_case).")
    type: Literal["trigger", "action", "router", "delay", "wait_for_event", "end"]
    name: str = Field(description="Short display name for the canvas.")
    trigger: Literal["manual", "webhook", "event", "schedule", "intent"] | None = Field(
        description="trigger only: how runs start."
    )
    event: str | None = Field(description="trigger (event/webhook) or wait_for_event: event name.")
    cron: str | None = Field(description="schedule trigger only: cron, e.g. '0 9 * * 1-5'.")
    timezone: str | None = Field(description="schedule trigger only: IANA zone, e.g. Asia/Kolkata")
    service: str | None = Field(description="action only: a service from the catalog.")
    task: str | None = Field(description="action only: a task of that service.")
    params_json: str | None = Field(
        description="action only: the task's params as a JSON object in a string; values may be "
        "templates such as '{{ trigger_data.payload.payment.entity.amount }}'."
    )
    conditions: list[DraftCondition] | None = Field(description="router only, first match wins.")
    default_branch: str | None = Field(description="router only: label when nothing matches.")
    duration: str | None = Field(description="delay only: e.g. '30s', '10m', '2h', '3d'.")
    match: str | None = Field(
        description="wait_for_event only: Jinja condition over event, trigger_data, steps."
    )
    timeout: str | None = Field(description="wait_for_event only: e.g. '2d'.")
    output_json: str | None = Field(description="end only: JSON value (templates allowed) or null.")
    on_error: Literal["fail", "continue"] | None = Field(description="action only; default fail.")
    credential: str | None = Field(
        description="action only: name of one of the user's connections (credentials) whose "
        "type the service takes; null to use the deployment's account."
    )


class DraftEdge(_Strict):
    """A directed edge; ``branch`` for router branches and a wait's 'timeout' edge."""

    source: str
    target: str
    branch: str | None


class DraftBlueprint(_Strict):
    """The model's answer."""

    name: str
    description: str
    nodes: list[DraftNode]
    edges: list[DraftEdge]


@dataclass
class Draft:
    """A validated blueprint with advisory warnings and how many model calls it took."""

    blueprint: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    attempts: int = 1


class DraftInvalid(AppError):
    """The model never produced a valid blueprint (422); details hold the errors and last draft."""

    status_code = 422
    code = "draft_invalid"


def _parse_json(
    text: str | None, loc: list[Any], node_id: str, issues: list[dict[str, Any]]
) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        issues.append({"loc": loc, "node_id": node_id, "message": f"not valid JSON: {exc.msg}"})
        return None


def to_blueprint(draft: DraftBlueprint) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Convert the model's flat draft into blueprint JSON. Returns (blueprint, issues) where
    issues are JSON-in-string problems the validator cannot see."""
    issues: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for i, n in enumerate(draft.nodes):
        node: dict[str, Any] = {"id": n.id, "type": n.type, "name": n.name}
        if n.type == "trigger":
            node["trigger"] = n.trigger or "manual"
            if n.event:
                node["event"] = n.event
            if n.cron:
                node["cron"] = n.cron
                node["timezone"] = n.timezone or "UTC"
        elif n.type == "action":
            node.update(service=n.service, task=n.task, on_error=n.on_error or "fail")
            if n.credential:
                node["credential"] = n.credential
            params = _parse_json(n.params_json, ["nodes", i, "params_json"], n.id, issues)
            node["params"] = params if params is not None else {}
        elif n.type == "router":
            node["conditions"] = [c.model_dump() for c in n.conditions or []]
            node["default"] = n.default_branch or "default"
        elif n.type == "delay":
            node["duration"] = n.duration
        elif n.type == "wait_for_event":
            node.update(event=n.event, timeout=n.timeout)
            if n.match:
                node["match"] = n.match
        elif n.type == "end":
            node["output"] = _parse_json(n.output_json, ["nodes", i, "output_json"], n.id, issues)
        nodes.append(node)
    edges = [
        {"source": e.source, "target": e.target, **({"branch": e.branch} if e.branch else {})}
        for e in draft.edges
    ]
    blueprint = {
        "schema_version": 1,
        "name": draft.name,
        "description": draft.description,
        "nodes": nodes,
        "edges": edges,
    }
    return blueprint, issues


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
    """The architect's instructions, generated from the tool catalog and the blueprint rules."""
    catalog = _tool_catalog(registry if registry is not None else public_tools())
    events = ", ".join(KNOWN_EVENTS)
    owner_fields = ", ".join(f"{{{{ owner.{name} }}}}" for name in expressions.OWNER_FIELDS)
    return f"""You design automation workflows ("blueprints") for a durable workflow engine.
Answer with one blueprint: nodes and edges forming a directed acyclic graph.

Rules:
- Exactly one node of type "trigger", with no incoming edges; every other node reachable from it.
- trigger kinds: "manual" (run by hand or API), "event"/"webhook" (needs `event`), "intent",
  "schedule" (needs `cron` and `timezone`; trigger_data.scheduled_for is the firing time).
  Events this backend emits: {events}. Razorpay webhook payloads arrive as trigger_data,
  e.g. {{{{ trigger_data.payload.payment.entity.amount }}}} (paise, integer),
  {{{{ trigger_data.payload.payment.entity.contact }}}} (phone), ...entity.email, ...entity.id.
  Payment link events: trigger_data.payload.payment_link.entity.id / .amount / .customer.
- action: `service` + `task` from the catalog below; `params_json` is a JSON object string that
  satisfies the task's params schema. Values may be templates (Jinja):
  {{{{ trigger_data.<field> }}}} for the trigger payload,
  {{{{ steps.<node_id>.output.<field> }}}} for the output of a node that runs BEFORE this one
  (an ancestor in the graph) and {{{{ owner.<field> }}}} for the user who owns the workflow.
  A string that is exactly one template keeps the value's type.
- The user asking for the workflow is `owner`; their profile gives {owner_fields}.
  "Me", "my phone", "alert me", "notify me", "send me" mean the owner: a WhatsApp message to
  them has `to` "{{{{ owner.phone }}}}" (E.164); use {{{{ owner.email }}}} where their email
  address is needed and {{{{ owner.display_name }}}} for their name. Never invent, guess or use
  a placeholder phone number or address for anyone: the owner's come from `owner`, a
  customer's from the trigger data or an earlier step.
- router: ordered `conditions` [{{"branch", "when"}}] with Jinja expressions without braces
  (e.g. trigger_data.payload.payment.entity.amount >= 100000), plus `default_branch`. Every edge
  leaving a router has `branch` set to one of its labels.
- delay: `duration` like "30s", "10m", "2h", "3d".
- wait_for_event: `event`, optional `match` (Jinja condition over event.data, trigger_data and
  steps, e.g. event.data.payload.payment_link.entity.id == steps.create_link.output.id), and
  `timeout` like "2d". Its unlabelled edges run when the event arrives; give the edge to run on
  timeout `branch` "timeout".
- end: optional `output_json` (a JSON value, templates allowed) that becomes the run's output.
- Secrets (tokens, passwords, API keys, user:password@ in URLs) never go into params: the
  user keeps them in connections, and an action names one in `credential` — only a name from
  the user's connections listed with the request, of a type its service takes; otherwise null.
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
        self.model = llm.StructuredModel(model, DraftBlueprint, settings, purpose="architect")

    async def draft(
        self,
        prompt: str,
        *,
        owner: Mapping[str, Any] | None = None,
        connections: Sequence[tuple[str, str]] = (),
    ) -> Draft:
        """Draft a blueprint for ``prompt``. ``owner``: the profile of the user it is for
        (``{"display_name", "email", "phone"}``); a draft that uses an ``owner.<field>`` it
        lacks gets a warning (None: not known, no such warnings). ``connections``: the user's
        credentials as ``(name, type)``, which actions may name (never their values).

        Raises:
            DraftInvalid: 422 after ``ARCHITECT_MAX_REPAIRS`` repairs.
            LLMBadOutput: 502 when no attempt gave an answer that fits the draft schema.
            LLMTimeout: 504. LLMUnavailable: 502.
        """
        messages: list[BaseMessage] = [
            SystemMessage(system_prompt(self.registry)),
            HumanMessage(f"Design a workflow for: {prompt}" + _connections(connections)),
        ]
        draft = await self._generate(messages, owner, connections)
        layered_layout(draft.blueprint)
        return draft

    async def revise(
        self,
        current: dict[str, Any],
        instruction: str,
        *,
        owner: Mapping[str, Any] | None = None,
        connections: Sequence[tuple[str, str]] = (),
    ) -> Draft:
        """Apply an edit instruction to ``current``; unchanged nodes keep their ids and canvas
        positions (new nodes go below their parents, clear of every node: see
        :func:`layered_layout`). ``owner``: as for :meth:`draft`.

        Raises:
            DraftInvalid: 422. LLMBadOutput: 502. LLMTimeout: 504. LLMUnavailable: 502.
        """
        messages: list[BaseMessage] = [
            SystemMessage(system_prompt(self.registry)),
            HumanMessage(
                "Here is the current blueprint:\n"
                + json.dumps(current, indent=1)
                + f"\n\nChange it as follows: {instruction}\n"
                "Return the whole updated blueprint. Keep the id of every node you do not "
                "change, and keep unchanged nodes exactly as they are." + _connections(connections)
            ),
        ]
        draft = await self._generate(messages, owner, connections)
        keep_ids(current, draft.blueprint)
        layered_layout(draft.blueprint, keep=current)
        return draft

    async def _generate(
        self,
        messages: list[BaseMessage],
        owner: Mapping[str, Any] | None,
        connections: Sequence[tuple[str, str]] = (),
    ) -> Draft:
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
            last, issues = to_blueprint(parsed)
            if not issues:
                try:
                    valid = validate_blueprint(last, self.registry)
                except InvalidBlueprint as exc:
                    issues = exc.details
                else:
                    warnings = self._warnings(last, connections)
                    if owner is not None:
                        warnings += profile_warnings(valid, owner)
                    return Draft(last, warnings, attempt)
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

    def _warnings(
        self, blueprint: dict[str, Any], connections: Sequence[tuple[str, str]]
    ) -> list[str]:
        warnings = []
        actions = [n for n in blueprint["nodes"] if n["type"] == "action"]
        used = sorted({n["service"] for n in actions if not n.get("credential")})
        for service in used:
            if self.registry[service].sandboxed(self.settings):
                warnings.append(
                    f"{service} has no credentials configured: its steps will run in "
                    "sandbox mode (recorded, not sent) unless they name a connection"
                )
        names = {name for name, _ in connections}
        for name in sorted({n["credential"] for n in actions if n.get("credential")} - names):
            warnings.append(
                f"connection '{name}' does not exist yet: add it (POST /credentials) before "
                "activating the workflow"
            )
        for node in blueprint["nodes"]:
            if (
                node["type"] == "trigger"
                and node.get("event")
                and not node["event"].startswith("razorpay/")
            ):
                warnings.append(
                    f"trigger event '{node['event']}' is not emitted by this backend; "
                    "send it with POST /events"
                )
            if node["type"] == "router":
                labels = {c["branch"] for c in node["conditions"]} | {node["default"]}
                wired = {e.get("branch") for e in blueprint["edges"] if e["source"] == node["id"]}
                for label in sorted(labels - wired):
                    warnings.append(f"router '{node['id']}' branch '{label}' leads nowhere")
        return warnings


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
        for key in ("params", "output", "match", "conditions"):
            if key in node:
                node[key] = rewrite(node[key])
    for edge in revised["edges"]:
        edge["source"] = renames.get(edge["source"], edge["source"])
        edge["target"] = renames.get(edge["target"], edge["target"])
