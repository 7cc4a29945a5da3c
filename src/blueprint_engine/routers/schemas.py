"""Response shapes of the HTTP API: the contract ``/docs`` shows and FastAPI enforces."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
NodeStatus = Literal["pending", "succeeded", "failed", "skipped", "waiting", "retrying"]


class ErrorDetailOut(BaseModel):
    """What went wrong: a machine ``code``, a ``message``, and ``details`` where there are some
    (validation errors: ``[{"loc", "message"}]``)."""

    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every error answer's body."""

    error: ErrorDetailOut


class NodeStateOut(BaseModel):
    """One node of a run, as the dashboard draws it (``pending`` until its first log row)."""

    id: str
    type: str
    name: str | None = None
    status: NodeStatus
    attempt: int | None = None
    input: Any = None
    output: Any = None
    error: Any = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None


class RunOut(BaseModel):
    """A run with every node's state, in blueprint order."""

    id: UUID
    owner_id: UUID
    workflow_id: UUID
    version: int
    status: RunStatus
    engine: Literal["embedded", "inngest"]
    trigger_data: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    trace_id: str | None = None
    wake_at: datetime | None = Field(default=None, description="When a waiting run resumes.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    parent_run_id: UUID | None = Field(
        default=None, description="A child run: the run whose step started it."
    )
    parent_step_id: str | None = Field(
        default=None, description="A child run: the step of the parent that started it."
    )
    sandbox: bool = Field(
        default=False,
        description="Started in sandbox mode (wf run --sandbox): no tool call of it (or of its "
        "child runs) leaves the process, whichever worker runs it.",
    )
    nodes: list[NodeStateOut]


class RunSummaryOut(BaseModel):
    """A run in a list (and in the run streams of a workflow or of all your runs)."""

    id: UUID
    workflow_id: UUID
    workflow_name: str
    version: int
    status: RunStatus
    error: dict[str, Any] | None = None
    trace_id: str | None = None
    wake_at: datetime | None = Field(default=None, description="When a waiting run resumes.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    parent_run_id: UUID | None = Field(
        default=None, description="A child run: the run whose step started it."
    )
    parent_step_id: str | None = Field(
        default=None,
        description="A child run: the step of the parent that started it (a workflow node's "
        "step id, ``<foreach id>.<index>`` for a foreach over a saved workflow).",
    )


class RunPageOut(BaseModel):
    """A page of runs, newest first; pass ``next_cursor`` back as ``cursor``."""

    runs: list[RunSummaryOut]
    next_cursor: str | None = None


class ExecuteOut(BaseModel):
    """A queued run (``created`` false: the idempotency key matched an earlier run)."""

    run_id: UUID
    created: bool
    status_url: str


class LogRowOut(BaseModel):
    """One ``workflow_logs`` row: a step attempt, a wait, or a skipped node."""

    id: int
    node_id: str
    step_id: str
    status: Literal["succeeded", "failed", "skipped", "waiting", "retrying"]
    attempt: int
    input: Any = None
    output: Any = None
    error: Any = None
    started_at: datetime
    finished_at: datetime
    duration_ms: float


class LogsOut(BaseModel):
    """Log rows in write order."""

    logs: list[LogRowOut]


class VersionOut(BaseModel):
    """A version of a workflow (without its blueprint)."""

    version: int
    trigger_kind: str
    trigger_event: str | None = None
    created_at: datetime


class HookOut(BaseModel):
    """A workflow's hook: ``POST /hooks/{workflow_id}/{token}`` starts it while its active
    version has a webhook trigger. The token is shown once (``path``), in the response that
    made or rotated it; only its SHA-256 is kept."""

    path: str | None = Field(
        default=None,
        description="/hooks/{workflow_id}/{token}: only in the response that made or rotated "
        "the hook; never again.",
    )
    path_hint: str = Field(description="The path with the token's first characters.")
    token_hint: str
    live: bool = Field(description="It answers now: the active version has a webhook trigger.")
    signed: bool = Field(description="The active version's trigger checks an HMAC signature.")
    created_at: datetime
    rotated_at: datetime | None = None
    last_used_at: datetime | None = None


class HookUrlOut(HookOut):
    """A workflow's hook with absolute URLs (``PUBLIC_BASE_URL`` + path)."""

    url: str | None = Field(
        default=None, description="The full URL: only in the answer to rotate; never again."
    )
    url_hint: str


class WorkflowOut(BaseModel):
    """A workflow with one version's blueprint (default the latest) and its version list."""

    id: UUID
    owner_id: UUID
    name: str
    description: str | None = None
    origin: Literal["api", "adhoc", "draft", "system", "channel"]
    latest_version: int
    active_version: int | None = None
    active: bool
    version: int = Field(description="The version whose blueprint is included.")
    blueprint: dict[str, Any]
    versions: list[VersionOut]
    archived_at: datetime | None = Field(
        default=None, description="Set once archived (DELETE): it starts no more runs."
    )
    credentials: list[CredentialNeedOut] = Field(
        default_factory=list,
        description="The credentials this version names, and whether you have each.",
    )
    hook: HookOut | None = Field(
        default=None, description="Its hook URL, once a version with a webhook trigger was saved."
    )
    created_at: datetime
    updated_at: datetime


class EventOut(BaseModel):
    """What an event did."""

    event_id: UUID
    resumed_run_ids: list[UUID]
    started_run_ids: list[UUID]


class DraftOut(BaseModel):
    """A saved draft or revision."""

    workflow_id: UUID
    version: int
    blueprint: dict[str, Any]
    warnings: list[str]
    attempts: int = Field(description="Model calls it took (1 + repairs).")
    hook: HookOut | None = Field(
        default=None,
        description="The workflow's hook, when it has one; ``path`` holds its token only when "
        "this revision made it (a revision that gave the workflow a webhook trigger).",
    )


class DryRunNodeOut(BaseModel):
    """A node of a dry run."""

    id: str
    type: str
    name: str | None = None
    status: Literal["pending", "succeeded", "failed", "skipped"]
    input: Any = None
    output: Any = None
    error: Any = None


class DryRunStepOut(BaseModel):
    """A step of a loop body in a dry run: ``each.0.send`` of node ``send``."""

    step_id: str
    node_id: str
    status: Literal["succeeded", "failed", "skipped"]
    input: Any = None
    output: Any = None
    error: Any = None


class DryRunOut(BaseModel):
    """What a run would do, with every tool sandboxed."""

    workflow_id: UUID
    version: int
    status: Literal["succeeded", "failed", "waiting"]
    output: Any = None
    error: dict[str, Any] | None = None
    sandbox: bool
    nodes: list[DryRunNodeOut]
    steps: list[DryRunStepOut] = Field(
        default_factory=list, description="Steps of loop bodies, in the order they ran."
    )


class AnalysisOut(BaseModel):
    """What was understood from a message."""

    intent: str | None = None
    entities: dict[str, Any]
    missing_slots: list[str]
    confidence: float | None = None
    transcript: str | None = None
    language: str | None = Field(
        default=None, description="The language of the reply (BCP 47: en, hi, hi-Latn)."
    )


class TurnOut(BaseModel):
    """The answer to one ``/intent-parser`` message."""

    status: Literal["completed", "needs_input", "no_action", "failed"]
    reply: str
    analysis: AnalysisOut
    run_id: UUID | None = None
    trace_id: str
    session_id: UUID
    reply_audio: dict[str, str] | None = Field(
        default=None,
        description='{"format": "mp3", "base64": ..., "text": the words spoken, "voice": ...} '
        "when reply_audio was asked.",
    )


class MessageOut(BaseModel):
    """A message of a session, in or out."""

    id: int
    direction: Literal["in", "out"]
    text: str | None = None
    transcript: str | None = None
    media: Any = None
    intent: str | None = None
    entities: Any = None
    trace_id: str | None = None
    provider_message_id: str | None = None
    delivery: str | None = None
    audio_url: str | None = Field(
        default=None,
        description="The kept voice note or spoken reply: a signed Supabase Storage URL, or "
        "this API's /sessions/{id}/messages/{message_id}/audio.",
    )
    created_at: datetime


class SessionOut(BaseModel):
    """A conversation session."""

    id: UUID
    owner_id: UUID
    channel: Literal["whatsapp", "voice"]
    user_ref: str
    status: Literal["open", "closed"]
    pending: dict[str, Any] | None = None
    slots: dict[str, Any]
    last_activity_at: datetime
    closed_at: datetime | None = None
    summary: str | None = None
    summary_source: str | None = None
    created_at: datetime
    messages: list[MessageOut]


class LastMessageOut(BaseModel):
    """The latest message of a session (``text``: its text, or a voice note's transcript)."""

    direction: Literal["in", "out"]
    text: str | None = None
    created_at: datetime


class SessionSummaryOut(BaseModel):
    """A conversation session in a list."""

    id: UUID
    channel: Literal["whatsapp", "voice"]
    user_ref: str = Field(description="whatsapp:+<number>, or a voice client's session_id.")
    status: Literal["open", "closed"]
    pending_intent: str | None = Field(default=None, description="The request being filled.")
    awaiting: Literal["slots", "confirmation"] | None = None
    last_message: LastMessageOut | None = None
    last_activity_at: datetime
    closed_at: datetime | None = None
    created_at: datetime


class SessionPageOut(BaseModel):
    """A page of sessions, latest activity first; pass ``next_cursor`` back as ``cursor``."""

    sessions: list[SessionSummaryOut]
    next_cursor: str | None = None


class ProfileOut(BaseModel):
    """A user's profile: what templates see as ``owner`` (``{{ owner.phone }}``)."""

    id: UUID
    display_name: str | None = None
    email: str | None = None
    phone: str | None = Field(default=None, description="E.164, e.g. +919876543210.")


class ApiKeyOut(BaseModel):
    """A personal API key, without the key itself (shown once, at creation)."""

    id: UUID
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None = None


class NewApiKeyOut(ApiKeyOut):
    """A key just created: ``key`` is shown this once and stored only as a hash."""

    key: str


class ChannelLinkOut(BaseModel):
    """A number linked to the user: its messages act for them."""

    id: UUID
    channel: Literal["whatsapp"]
    number: str = Field(description="E.164, e.g. +919876543210.")
    linked_at: datetime


class LinkCodeOut(BaseModel):
    """A one-time code: send ``text`` from ``number`` to the deployment's WhatsApp number
    (``send_to``) before ``expires_at``. Shown this once and stored only as a hash."""

    channel: Literal["whatsapp"]
    number: str = Field(description="The number the code links (E.164); it works only from it.")
    code: str = Field(examples=["482913"])
    text: str = Field(description="What to send.", examples=["link 482913"])
    send_to: str | None = Field(
        default=None, description="The deployment's WhatsApp number (TWILIO_WHATSAPP_FROM)."
    )
    expires_at: datetime


class MeOut(BaseModel):
    """Who the caller is."""

    user: ProfileOut
    via: Literal["token", "api_key", "service_key", "local"] = Field(
        description="How the request was authenticated ('local': no identity is configured)."
    )
    api_keys: list[ApiKeyOut]
    channels: list[ChannelLinkOut] = Field(description="Linked WhatsApp numbers.")


class LastRunOut(BaseModel):
    """The latest run of a workflow."""

    id: UUID
    status: RunStatus
    created_at: datetime
    finished_at: datetime | None = None


class WorkflowSummaryOut(BaseModel):
    """A workflow in a list, with its latest run."""

    id: UUID
    name: str
    description: str | None = None
    origin: Literal["api", "draft"]
    active: bool
    active_version: int | None = None
    latest_version: int
    created_at: datetime
    updated_at: datetime
    last_run: LastRunOut | None = None


class WorkflowPageOut(BaseModel):
    """A page of workflows, most recently changed first; pass ``next_cursor`` back as
    ``cursor``."""

    workflows: list[WorkflowSummaryOut]
    next_cursor: str | None = None


class PublicAuthOut(BaseModel):
    """How a client signs in: ``local`` (nothing to do: one local user), ``api_key`` (an API
    key as ``X-API-Key`` or Bearer), ``supabase`` (Supabase Auth with this project URL and anon
    key; an API key works too)."""

    mode: Literal["local", "api_key", "supabase"]
    supabase_url: str | None = None
    supabase_anon_key: str | None = None


class PublicConfigOut(BaseModel):
    """What a client needs to know before signing in; nothing secret."""

    auth: PublicAuthOut
    engine: Literal["embedded", "inngest"]
    version: str


class CredentialOut(BaseModel):
    """A credential as listings show it: never its data."""

    id: UUID
    name: str
    type: str
    hint: str = Field(description="Masked: identity fields and at most a long secret's last 4.")
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = None
    webhook_url: str | None = Field(
        default=None,
        description="razorpay: where to point the account's webhooks (verified with this "
        "credential's webhook_secret; events start only your workflows). twilio: the number's "
        "'when a message comes in' URL (your linked senders command you from it).",
    )


class CredentialTypeOut(BaseModel):
    """A credential type: what ``data`` it takes (JSON Schema) and which tools (and
    triggers) use it."""

    type: str
    label: str
    schema_: dict[str, Any] = Field(alias="schema")
    services: list[str]
    triggers: list[str] = Field(default_factory=list, description="Trigger kinds that take it.")


class CredentialNeedOut(BaseModel):
    """A credential a workflow's blueprint names, and whether the owner has it."""

    name: str
    types: list[str] = Field(description="Types the naming nodes' tools take.")
    nodes: list[str]
    present: bool
    type: str | None = Field(default=None, description="The stored credential's type.")
