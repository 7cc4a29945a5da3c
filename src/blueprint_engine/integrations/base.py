"""The tool contract: what an integration declares and how the engine calls it.

A tool is one service (``whatsapp``, ``razorpay``…) with named tasks. Each task is declared
once, on its handler (:func:`task`): a Pydantic params model, a result model, a description
and, for commands users may say, a :class:`Command`. The architect's prompt, the blueprint
validator, the intent catalog and ``GET /tools`` are all generated from these declarations. A
tool owns its settings (a :class:`~blueprint_engine.config.ToolSettings` with its prefix,
``TWILIO_*``) and its credential types; a call gets a :class:`ToolContext` with the process's
database and its one HTTP client.

With no credentials configured (or ``SANDBOX=true``) a tool with side effects runs in **sandbox
mode**: it validates the params and returns ``{"sandbox": true, "request": {...}, ...}`` — the
request it would send, when the task declares one, and its declared fake result, with clearly
fake ids derived from the idempotency key — so a sandboxed run can flow end to end without
pretending to be real. A tool without side effects (``transform``) always runs for real.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from blueprint_engine.config import Settings, ToolSettings
from blueprint_engine.integrations.credentials import Credential, CredentialData
from blueprint_engine.integrations.resources import Connect, ToolResources


class TaskParams(BaseModel):
    """Base for task params models: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


SlotType = Literal["text", "money", "phone", "email", "date", "number"]


@dataclass(frozen=True)
class Slot:
    """A detail a spoken/typed command needs.

    Attributes:
        type: how the value is normalised (money -> minor units + currency, phone -> E.164,
            date -> ISO 8601).
        question: what to ask when it is missing (English, marked with :func:`N_`).
        param: where the command's ``build_params`` puts the value in the task's params (a
            dotted path: ``payment_id``, ``customer.email``, ``line_items.0.amount``), so a
            value the params model refuses is traced back to this slot and asked for again.
        hint: said, in plain words, when the params model refuses the value ("That doesn't
            look like a Razorpay payment id — they start with pay_"); without one the reason
            is derived from the kind of validation error ("That's too long — at most 1600
            characters").
    """

    name: str
    type: SlotType
    required: bool
    question: str
    description: str = ""
    param: str | None = None
    hint: str | None = None


def N_(message: str) -> str:
    """Mark ``message`` (a reply template, a question) for translation and return it as is.

    Babel's extractor collects every ``N_("…")`` into the catalogs
    (``src/blueprint_engine/locale``); the reply is translated when it is said, in the user's
    language (``services/i18n``).
    """
    return message


@dataclass(frozen=True)
class Wording:
    """How one reply of a command reads, in English (translated by the catalogs).

    Templates name values in braces: a slot (``{amount}``, formatted for the user's language:
    money with Babel, phones grouped, dates spelled out), a fact the command's :class:`Lookup`
    found (``{paid}``), or an output of the task (``{link}``, see :attr:`Command.outputs`).

    Attributes:
        variants: the first whose every value is known is said, so list the most specific
            first and end with one that needs only what is always known.
        extras: sentences added after the first line of the chosen variant when their values
            are known and it did not say them ("Razorpay will email it to {customer_email}.").
    """

    variants: tuple[str, ...]
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lookup:
    """A read-only task a command runs once its details are complete, before asking for
    confirmation, so the confirmation can state what the user did not say (how much a full
    refund is, who gets it back).

    Attributes:
        task: a task of the same tool (``fetch_payment``).
        build_params: normalised slots -> the lookup's params.
        facts: the lookup's output -> values the wordings may name; money as
            ``{"amount_minor", "currency"}``, phone numbers in E.164. Unknown facts are left
            out (a sandboxed lookup knows none), and the wordings fall back to variants
            without them.
        slot: the slot blamed when the remote service refuses the lookup (no such payment):
            it is dropped and asked for again after ``refused``.
        refused: said, in plain words, when that happens.
    """

    task: str
    build_params: Callable[[dict[str, Any]], dict[str, Any]]
    facts: Callable[[dict[str, Any]], dict[str, Any]]
    slot: str
    refused: str


@dataclass(frozen=True)
class Command:
    """Declares a task as a user command (an intent) for the WhatsApp and voice channels,
    with what the user is told about it (each text is English, marked with :func:`N_`).

    Attributes:
        intent: e.g. ``CREATE_INVOICE``.
        description: what the command does, for the model that reads messages.
        slots: what to extract or ask for.
        build_params: normalised slots -> the task's params.
        help: the line of the help reply that offers it ("Create a payment link").
        request: the request as a noun phrase ("the payment link for {amount}"), for "cancelled:
            …" and "unfinished from earlier: …"; its last variant names no value.
        result: the answer when the task succeeded, with what the user needs next (the link);
            a line naming an output is left out of a spoken reply (it is in the chat).
        failure: the answer when it failed; ``{reason}`` is why, in plain words.
        confirmation: asked before running, stating every consequential fact (amounts,
            recipients, dates); None runs it at once (nothing that moves money).
        outputs: value name -> the task's output field (``{"link": "short_url"}``).
        lookup: a read-only task whose facts the confirmation states.
    """

    intent: str
    description: str
    slots: tuple[Slot, ...]
    build_params: Callable[[dict[str, Any]], dict[str, Any]]
    help: str
    request: Wording
    result: Wording
    failure: Wording
    confirmation: Wording | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    lookup: Lookup | None = None


class TaskResult(BaseModel):
    """Base for task result models: the fields a step's output has (``output.<field>`` in later
    steps). A handler returns one; the step's output is its fields (``model_dump()``), which
    the engine stores as JSON exactly as a replay reads them back (a value JSON cannot hold —
    NaN, a lone surrogate — fails the step as ``output_not_storable`` instead of being
    altered). Its JSON Schema is shown by ``GET /tools`` and, compactly, in the architect's
    catalog, so describe each field (``Field(description=…)``)."""

    model_config = ConfigDict(extra="forbid")


P = TypeVar("P", bound=TaskParams)
#: A result model: a :class:`TaskResult`, or a ``RootModel`` for an output of any shape.
R = TypeVar("R", bound=BaseModel)
#: A task's handler: ``async def name(self, params: P, ctx: ToolContext) -> R`` (the real call).
Handler = Callable[[Any, P, "ToolContext"], Awaitable[R]]
#: What a sandboxed call returns instead: ``def …(self, params: P, ctx) -> R`` (fake ids).
Fake = Callable[[Any, P, "ToolContext"], R]
#: The request a call would send, shown in sandbox mode: ``def …(self, params: P, ctx) -> dict``.
Describe = Callable[[Any, P, "ToolContext"], dict[str, Any]]


class Task(Generic[P, R]):
    """One task of a tool, declared with :func:`task` on its handler; its name is the
    handler's.

    Attributes:
        params: Pydantic model the (rendered) params must satisfy.
        result: Pydantic model of the output (:class:`TaskResult`).
        description: one line for people and for the architect's prompt.
        command: set when users may ask for this task in plain language.
        fake: the sandbox result (``@<task>.sandbox``); a tool with side effects needs one per
            task.
        describe: the request the call would send, for the sandbox output (``@<task>.request``);
            none for a task that sends no request people would recognise.
    """

    def __init__(
        self,
        handler: Handler[P, R],
        *,
        params: type[P],
        result: type[R],
        description: str,
        command: Command | None,
    ) -> None:
        self.name = handler.__name__
        self.handler = handler
        self.params = params
        self.result = result
        self.description = description
        self.command = command
        self.fake: Fake[P, R] | None = None
        self.describe: Describe[P] | None = None

    def sandbox(self, fake: Fake[P, R]) -> Fake[P, R]:
        """Decorator: declare what a sandboxed call returns (clearly fake ids derived from the
        idempotency key, so later steps still resolve)."""
        self.fake = fake
        return fake

    def request(self, describe: Describe[P]) -> Describe[P]:
        """Decorator: declare the request the call would send (``{method, url, body?,
        headers?}``, secrets ``[redacted]``), shown as ``request`` in sandbox mode."""
        self.describe = describe
        return describe

    def result_fields(self) -> dict[str, str]:
        """The result's fields in a line each, for the architect's prompt:
        ``{"sid": "string: Twilio message SID (SM…)"}``; a result of any shape (a root model)
        as ``{"*": <its description>}``."""
        schema = self.result.model_json_schema()
        properties: dict[str, Any] = schema.get("properties", {})
        if not properties:
            return {"*": str(schema.get("description", "any JSON value"))}
        fields = {}
        for name, prop in properties.items():
            kind = _schema_type(prop)
            text = prop.get("description")
            fields[name] = f"{kind}: {text}" if text else kind
        return fields


def _schema_type(field: dict[str, Any]) -> str:
    """``string``, ``integer or null``, ``object``… of a JSON Schema property (``any`` when it
    says nothing)."""
    if "anyOf" in field:
        return " or ".join(_schema_type(option) for option in field["anyOf"])
    if "$ref" in field:
        return "object"
    kind = field.get("type")
    return str(kind) if kind else "any"


def task(
    *,
    params: type[P],
    result: type[R],
    description: str,
    command: Command | None = None,
) -> Callable[[Handler[P, R]], Task[P, R]]:
    """Declare a tool's method as a task::

        @task(params=SendMessage, result=MessageSent, description="Send a WhatsApp message.")
        async def send_message(self, params: SendMessage, ctx: ToolContext) -> MessageSent: ...

        @send_message.sandbox
        def send_message_sandbox(self, params: SendMessage, ctx: ToolContext) -> MessageSent: ...

    The handler's params and return types must be ``params`` and ``result`` (mypy checks).
    """

    def declare(handler: Handler[P, R]) -> Task[P, R]:
        return Task(handler, params=params, result=result, description=description, command=command)

    return declare


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call, and what it may use.

    Attributes:
        idempotency_key: ``"<run_id>:<node_id>"``; pass it wherever the vendor API accepts one.
        settings: the deployment's settings; a tool's own are ``settings.tool(<its
            ToolSettings>)``.
        resources: the process's database and HTTP client (see :attr:`db`, :attr:`http`).
        sandbox: True forces sandbox mode even with credentials (dry runs, ``SANDBOX=true``).
        credential: the node's credential (``"credential": "<name>"``), decrypted for this
            call only; ``data`` is None in sandbox mode. A tool uses it, else the deployment's
            settings, else runs in sandbox mode.
    """

    idempotency_key: str
    settings: Settings
    resources: ToolResources
    sandbox: bool = False
    credential: Credential | None = None

    @property
    def db(self) -> Connect:
        """A connection from the app's pool: ``async with ctx.db() as conn`` (autocommit,
        dict rows)."""
        return self.resources.db

    @property
    def http(self) -> httpx.AsyncClient:
        """The process's one HTTP client, through the outbound guard (only public addresses
        unless ``HTTP_ALLOW_HOSTS``; no redirects followed); its timeout is
        ``HTTP_TIMEOUT_SECONDS``, a request may pass its own (``timeout=``)."""
        return self.resources.http


class ToolError(Exception):
    """A task failed. ``retryable`` says whether trying again could help (timeouts, 5xx, 429).

    ``code`` is machine-readable (``http_status``, ``razorpay_bad_request``…), ``details`` is
    JSON-serialisable context such as the vendor's error body; ``retry_after`` is how many
    seconds the service asked to be left alone before the next try (its ``Retry-After``,
    :func:`retry_after_seconds`), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.details = details or {}
        self.retry_after = retry_after


#: The longest ``Retry-After`` taken as given, in seconds (a day); longer ones are cut to it.
#: The retry policy waits far less (``RETRY_AFTER_MAX_SECONDS``); this only keeps the number
#: finite and sane wherever it goes (an error's JSON, a timedelta).
RETRY_AFTER_CEILING_SECONDS = 86_400.0

_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_RETRY_AFTER_HEADERS = frozenset({"retry-after", "retry-after-ms"})


def retry_after_seconds(
    status: int, headers: Mapping[str, str], *, now: datetime | None = None
) -> float | None:
    """How long a ``status`` response asks the client to wait before trying again, in seconds:
    its ``Retry-After`` (RFC 9110 10.2.3: delay-seconds, or an HTTP-date, which counts from
    ``now``; a date past is 0), or ``retry-after-ms`` (milliseconds, as OpenAI-compatible
    servers send), on a 429 or 503 only. Cut to :data:`RETRY_AFTER_CEILING_SECONDS`.

    Returns:
        None when the status is another, or there is no such header, or it does not parse
        (negative numbers, garbage).
    """
    if status not in _RETRY_AFTER_STATUSES:
        return None
    found = {k.lower(): v for k, v in headers.items() if k.lower() in _RETRY_AFTER_HEADERS}
    millis = found.get("retry-after-ms", "").strip()
    if _DELAY_SECONDS.fullmatch(millis):
        return min(float(millis) / 1000, RETRY_AFTER_CEILING_SECONDS)
    value = found.get("retry-after", "").strip()
    if _DELAY_SECONDS.fullmatch(value):
        return min(float(value), RETRY_AFTER_CEILING_SECONDS)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if at.tzinfo is None:  # "-0000": UTC, origin unknown (RFC 5322 3.3)
        at = at.replace(tzinfo=UTC)
    waited = (at - (now or datetime.now(UTC))).total_seconds()
    return min(max(waited, 0.0), RETRY_AFTER_CEILING_SECONDS)


class BaseTool:
    """Base class for integrations: a service with tasks (:func:`task` on each handler).

    A subclass sets ``service`` and ``description``, and may set ``credential_types``,
    ``settings_type`` (its :class:`ToolSettings`), ``internal`` and ``side_effects``. Adding a
    tool is its file and one line in ``TOOL_REGISTRY``.

    Raises:
        TypeError: at class creation, a task of a tool with side effects declares no sandbox
            result.
    """

    service: ClassVar[str]
    description: ClassVar[str]
    #: Its tasks by name, collected from the class's :func:`task` declarations.
    tasks: ClassVar[dict[str, Task[Any, Any]]] = {}
    #: Internal tools serve the system's own blueprints (session timeouts, channel replies):
    #: hidden from the architect, the intent catalog and ``GET /tools``.
    internal: ClassVar[bool] = False
    #: False for tools whose calls change nothing outside the run (``transform``): never
    #: sandboxed (their output is real in a dry run too), and the engine need not count their
    #: attempts durably before they run, since repeating one is harmless.
    side_effects: ClassVar[bool] = True
    #: The credential types a node of this tool may name (``"credential": "<name>"``); empty
    #: for tools that take none. The first is the one the tool's own settings stand in for.
    credential_types: ClassVar[tuple[type[CredentialData], ...]] = ()
    #: The tool's own settings (``TWILIO_*``…), if it has any.
    settings_type: ClassVar[type[ToolSettings] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tasks = dict(cls.tasks)
        for value in vars(cls).values():
            if isinstance(value, Task):
                tasks[value.name] = value
        if cls.side_effects:
            for name, declared in tasks.items():
                if declared.fake is None:
                    raise TypeError(
                        f"{cls.__name__}.{name} has side effects: declare what it returns in "
                        f"sandbox mode with @{name}.sandbox"
                    )
        cls.tasks = tasks

    def configured(self, settings: Settings) -> bool:
        """True when the deployment's settings hold what a real call needs: the tool's own
        settings are :meth:`~ToolSettings.ready` (a tool without settings needs none)."""
        return self.settings_type is None or settings.tool(self.settings_type).ready()

    def sandboxed(
        self, settings: Settings, *, forced: bool = False, credential: Credential | None = None
    ) -> bool:
        """True when a call will not leave the process: the tool has side effects and the call
        is ``forced`` (or ``SANDBOX=true``), or has neither the node's ``credential`` (with its
        data) nor :meth:`configured` settings to call with."""
        if not self.side_effects:
            return False
        if forced or settings.sandbox:
            return True
        if credential is not None:
            return credential.data is None
        return not self.configured(settings)

    def accepts(self, kind: str) -> bool:
        """True when a node of this tool may name a credential of type ``kind``."""
        return any(model.kind == kind for model in self.credential_types)

    def sandbox_output(self, name: str, params: TaskParams, context: ToolContext) -> dict[str, Any]:
        """What task ``name`` returns in sandbox mode: ``{"sandbox": true, "request"?: {...},
        ...the fake result's fields, "credential"?: <the node's credential name>}``.

        Raises:
            KeyError: unknown task. LookupError: the task declares no sandbox result (a tool
                without side effects is never sandboxed).
        """
        declared = self.tasks[name]
        if declared.fake is None:
            raise LookupError(f"{self.service}.{name} has no sandbox result")
        output: dict[str, Any] = {"sandbox": True}
        if declared.describe is not None:
            output["request"] = declared.describe(self, params, context)
        output.update(_dump(declared, declared.fake(self, params, context)))
        if context.credential is not None:  # the reference, never its values
            output["credential"] = context.credential.name
        return output

    async def execute(self, name: str, params: TaskParams, context: ToolContext) -> dict[str, Any]:
        """Run task ``name`` with validated ``params`` and return its result's fields; in
        sandbox mode return :meth:`sandbox_output` instead.

        Raises:
            ToolError: the task failed (``retryable`` tells the engine whether to retry);
                ``unexpected_result`` (not retryable: the call may have taken effect) when the
                handler could not make its result model of what the service answered.
            KeyError: unknown task (the validator prevents this for stored blueprints).
        """
        declared = self.tasks[name]
        if self.sandboxed(context.settings, forced=context.sandbox, credential=context.credential):
            return self.sandbox_output(name, params, context)
        try:
            result = await declared.handler(self, params, context)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ToolError(
                f"{self.service}.{name}: unexpected answer: {first['msg']}",
                code="unexpected_result",
                retryable=False,
                details={"errors": exc.errors(include_url=False, include_input=False)},
            ) from None
        return _dump(declared, result)


def _dump(declared: Task[Any, Any], result: BaseModel) -> dict[str, Any]:
    """``result``'s fields, checked to be the task's result model; left for the engine to store
    (:mod:`blueprint_engine.store.storable`), not converted here: pydantic's JSON mode would
    turn NaN into null and fail on a lone surrogate, where the engine reports the value.

    Raises:
        TypeError: the handler returned something else (a bug in the tool).
    """
    if not isinstance(result, declared.result):
        raise TypeError(
            f"{declared.name} returned {type(result).__name__}, not {declared.result.__name__}"
        )
    dumped: Any = result.model_dump()
    if not isinstance(dumped, dict):
        raise TypeError(f"{declared.name}'s result is not an object")
    return dumped


def fake_id(prefix: str, key: str) -> str:
    """A stable, obviously fake vendor id for sandbox results (``pay_sandbox_1a2b3c4d5e6f``)."""
    return f"{prefix}_sandbox_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
