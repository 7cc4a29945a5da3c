"""The tool contract: what an integration declares and how the engine calls it.

A tool is one service (``whatsapp``, ``razorpay``…) with named tasks. Each task declares a
Pydantic params model, a description and the shape of its result; the architect's prompt, the
blueprint validator and ``GET /tools`` are all generated from these declarations.

With no credentials configured (or ``SANDBOX=true``) a tool runs in **sandbox mode**: it
validates the params, builds the exact request it would send, and returns
``{"sandbox": true, "request": {...}, ...}`` with clearly fake ids derived from the
idempotency key, so a sandboxed run can flow end to end without pretending to be real.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from blueprint_engine.config import Settings
from blueprint_engine.integrations.credentials import Credential, CredentialData


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


@dataclass(frozen=True)
class Task:
    """One task of a tool.

    Attributes:
        params: Pydantic model the (rendered) params must satisfy.
        description: one line for people and for the architect's prompt.
        result: JSON-schema-like description of the output's fields (``{"sid": "string"}``).
        command: set when users may ask for this task in plain language.
    """

    params: type[TaskParams]
    description: str
    result: dict[str, str] = field(default_factory=dict)
    command: Command | None = None


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call.

    Attributes:
        idempotency_key: ``"<run_id>:<node_id>"``; pass it wherever the vendor API accepts one.
        settings: credentials and limits.
        sandbox: True forces sandbox mode even with credentials (dry runs, ``SANDBOX=true``).
        credential: the node's credential (``"credential": "<name>"``), decrypted for this
            call only; ``data`` is None in sandbox mode. A tool uses it, else the deployment's
            settings, else runs in sandbox mode.
    """

    idempotency_key: str
    settings: Settings
    sandbox: bool = False
    credential: Credential | None = None


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


class BaseTool(ABC):
    """Base class for integrations. Subclasses set ``service``, ``description`` and ``tasks``.

    Subclasses implement :meth:`has_credentials`, :meth:`build_request` (the request as it would
    go on the wire, used by sandbox mode and for logs) and :meth:`send` (the real call).
    """

    service: ClassVar[str]
    description: ClassVar[str]
    tasks: ClassVar[dict[str, Task]]
    #: Internal tools serve the system's own blueprints (session timeouts, channel replies):
    #: hidden from the architect, the intent catalog and ``GET /tools``.
    internal: ClassVar[bool] = False
    #: False for tools whose calls change nothing outside the run (``transform``): the engine
    #: need not count their attempts durably before they run, since repeating one is harmless.
    side_effects: ClassVar[bool] = True
    #: The credential types a node of this tool may name (``"credential": "<name>"``); empty
    #: for tools that take none. The first is the one the tool's own settings stand in for.
    credential_types: ClassVar[tuple[type[CredentialData], ...]] = ()

    @abstractmethod
    def has_credentials(self, settings: Settings) -> bool:
        """Return True when the settings hold what a real call needs."""

    @abstractmethod
    def build_request(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Describe the HTTP request ``task`` would send: ``{method, url, body?, headers?}``."""

    @abstractmethod
    async def send(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Perform the real call and return the task's result.

        Raises:
            ToolError: the vendor refused or could not be reached.
        """

    def sandbox_result(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Fields a sandboxed call returns besides ``sandbox`` and ``request`` (fake ids)."""
        return {}

    def is_sandboxed(self, context: ToolContext) -> bool:
        """True when this call will not leave the process: forced, or with neither the node's
        credential nor the deployment's settings to call with."""
        if context.sandbox or context.settings.sandbox:
            return True
        if context.credential is not None:
            return context.credential.data is None
        return not self.has_credentials(context.settings)

    def accepts(self, kind: str) -> bool:
        """True when a node of this tool may name a credential of type ``kind``."""
        return any(model.kind == kind for model in self.credential_types)

    async def execute(self, task: str, params: TaskParams, context: ToolContext) -> dict[str, Any]:
        """Run ``task`` with validated ``params``; in sandbox mode return the request instead.

        Raises:
            ToolError: the task failed (``retryable`` tells the engine whether to retry).
            KeyError: unknown task (the validator prevents this for stored blueprints).
        """
        if task not in self.tasks:
            raise KeyError(f"{self.service} has no task {task!r}")
        if self.is_sandboxed(context):
            result = {
                "sandbox": True,
                "request": self.build_request(task, params, context),
                **self.sandbox_result(task, params, context),
            }
            if context.credential is not None:  # the reference, never its values
                result["credential"] = context.credential.name
            return result
        return await self.send(task, params, context)


def fake_id(prefix: str, key: str) -> str:
    """A stable, obviously fake vendor id for sandbox results (``pay_sandbox_1a2b3c4d5e6f``)."""
    return f"{prefix}_sandbox_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
