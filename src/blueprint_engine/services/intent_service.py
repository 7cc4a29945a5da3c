"""Intents: the catalog users can invoke, and plain language -> intent + normalised entities.

The catalog is generated, never hand-kept: every public tool task that declares a
:class:`~blueprint_engine.integrations.base.Command`, plus every active workflow whose trigger is an
``intent`` trigger with declared slots.

Extraction uses LangChain structured output, which also says which language the message is in
(the reply is then written in it, from the gettext catalogs: :mod:`replies`); normalisation is
ours and deterministic: money ->
minor units with an ISO currency (Razorpay wants paise; precision from Babel's CLDR data), phone
numbers -> E.164 (libphonenumber), emails checked by email-validator (Pydantic's ``EmailStr``),
dates as people say them ("25 Dec", "next Tuesday"; dateparser, in ``DEFAULT_TIMEZONE``) -> ISO
8601. Missing slots are computed here, not trusted from the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import dateparser
import phonenumbers
from babel.numbers import format_currency, get_currency_precision, list_currencies
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, EmailStr, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from blueprint_engine.agents import llm
from blueprint_engine.config import Settings
from blueprint_engine.errors import LLMNotConfigured
from blueprint_engine.integrations import (
    N_,
    Command,
    Lookup,
    Slot,
    TaskParams,
    Wording,
    public_tools,
)
from blueprint_engine.services.i18n import Phrase
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.nodes import IntentTrigger
from blueprint_engine.workflows.schema import Blueprint


@dataclass(frozen=True)
class Intent:
    """One thing a user can ask for: a tool task or an intent-triggered workflow, with how
    its replies read (:class:`~blueprint_engine.integrations.base.Command`'s wordings; for
    workflows, :data:`WORKFLOW_WORDINGS`)."""

    name: str
    description: str
    slots: tuple[Slot, ...]
    help: str
    request: Wording
    result: Wording
    failure: Wording
    confirmation: Wording | None = None
    started: Wording | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    command: Command | None = None
    service: str | None = None
    task: str | None = None
    params: type[TaskParams] | None = None
    workflow_id: UUID | None = None
    version: int | None = None
    workflow_name: str | None = None

    @property
    def required(self) -> list[Slot]:
        """Slots that must be filled before acting."""
        return [s for s in self.slots if s.required]

    @property
    def confirm(self) -> bool:
        """Ask yes/no before acting."""
        return self.confirmation is not None

    @property
    def lookup(self) -> Lookup | None:
        """The read-only task whose facts the confirmation states, if any."""
        return self.command.lookup if self.command is not None else None


#: How an intent workflow's replies read: ``{workflow}`` is its display name (as its owner
#: wrote it), ``{details}`` the values of its slots.
WORKFLOW_WORDINGS: dict[str, Wording] = {
    "help": Wording((N_("Run “{workflow}”"),)),
    "request": Wording((N_("“{workflow}” with {details}"), N_("“{workflow}”"))),
    "confirmation": Wording((N_("Run “{workflow}” with {details}?"), N_("Run “{workflow}”?"))),
    "result": Wording(
        (N_("Done — “{workflow}” has run with {details}."), N_("Done — “{workflow}” has run."))
    ),
    "started": Wording((N_("“{workflow}” has started; it carries on in the background."),)),
    "failure": Wording((N_("Sorry, “{workflow}” didn't finish: {reason}."),)),
}


def command_intents() -> dict[str, Intent]:
    """The intents of the tool tasks that declare a command (the same for every user)."""
    intents: dict[str, Intent] = {}
    for tool in public_tools().values():
        for task_name, task in tool.tasks.items():
            if task.command is not None:
                c = task.command
                intents[c.intent] = Intent(
                    c.intent,
                    c.description,
                    c.slots,
                    help=c.help,
                    request=c.request,
                    result=c.result,
                    failure=c.failure,
                    confirmation=c.confirmation,
                    outputs=c.outputs,
                    command=c,
                    service=tool.service,
                    task=task_name,
                    params=task.params,
                )
    return intents


def workflow_intent(
    name: str, description: str, slots: tuple[Slot, ...], **workflow: Any
) -> Intent:
    """The intent of a workflow with an ``intent`` trigger, its replies read as
    :data:`WORKFLOW_WORDINGS` say (``workflow``: ``workflow_id``, ``version``,
    ``workflow_name``, ``confirm``)."""
    words = WORKFLOW_WORDINGS
    confirm = workflow.pop("confirm", False)
    return Intent(
        name,
        description,
        slots,
        help=words["help"].variants[0],
        request=words["request"],
        result=words["result"],
        failure=words["failure"],
        confirmation=words["confirmation"] if confirm else None,
        started=words["started"],
        **workflow,
    )


async def catalog(pool: Pool, owner: UUID) -> dict[str, Intent]:
    """Every intent available to ``owner`` now: the tool commands, then their own active
    intent workflows."""
    intents = command_intents()
    async with pool.connection() as conn:
        rows = await workflows_store.active_with_intent_triggers(conn, owner)
    for row in rows:
        blueprint = Blueprint.model_validate(row["blueprint"])
        trigger = blueprint.trigger
        if not isinstance(trigger, IntentTrigger) or not trigger.intent:
            continue
        if trigger.intent in intents:
            continue
        slots = tuple(
            Slot(s.name, s.type, s.required, s.question, s.description) for s in trigger.slots
        )
        description = blueprint.description or row["name"]
        intents[trigger.intent] = workflow_intent(
            trigger.intent,
            f"Run the workflow '{row['name']}': {description}",
            slots,
            confirm=trigger.confirm,
            workflow_id=row["workflow_id"],
            version=row["version"],
            workflow_name=row["name"],
        )
    return intents


# -- normalisation -------------------------------------------------------------------------

_SYMBOLS = {"₹": "INR", "$": "USD", "€": "EUR", "£": "GBP"}
_WORDS = {
    "rs": "INR",
    "rupee": "INR",
    "rupees": "INR",
    "dollar": "USD",
    "dollars": "USD",
    "euro": "EUR",
    "euros": "EUR",
    "pound": "GBP",
    "pounds": "GBP",
    "रुपये": "INR",
    "रुपए": "INR",
    "रुपया": "INR",
    "रु": "INR",
    "rupaye": "INR",
    "rupay": "INR",
    "rupiya": "INR",
}
_SCALES = {
    "k": 1000,
    "thousand": 1000,
    "hazar": 1000,
    "hazaar": 1000,
    "हज़ार": 1000,
    "हजार": 1000,
    "lakh": 100_000,
    "lakhs": 100_000,
    "lac": 100_000,
    "लाख": 100_000,
    "crore": 10_000_000,
    "crores": 10_000_000,
    "करोड़": 10_000_000,
    "करोड": 10_000_000,
}
_MONEY = re.compile(
    r"(?P<amount>\d[\d,]*(?:\.\d+)?)\s*(?P<scale>"
    + "|".join(sorted(map(re.escape, _SCALES), key=len, reverse=True))
    + r")?(?!\w)",
    re.IGNORECASE,
)
_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


def _currency(text: str, default: str) -> str:
    for symbol, code in _SYMBOLS.items():
        if symbol in text:
            return code
    codes: set[str] = set(list_currencies())
    for word in re.findall(r"\w+\.?", text):
        token = word.rstrip(".")
        if token.lower() in _WORDS:
            return _WORDS[token.lower()]
        if len(token) == 3 and token.upper() == token and token in codes:
            return str(token)
    return default


class SlotValueError(ValueError):
    """A value that cannot be normalised for its slot type; the message is said to the user
    (an English template, translated by the catalogs)."""


def normalize_money(text: str, default_currency: str) -> dict[str, Any]:
    """``"5000 INR"``, ``"₹5,000"``, ``"5k rupees"``, ``"1.5 lakh"`` -> ``{"amount_minor":
    500000, "currency": "INR", "display": "₹5,000.00"}`` (minor units per ISO 4217 via CLDR).

    Raises:
        SlotValueError: no positive amount in the text.
    """
    match = _MONEY.search(text.replace("\u00a0", " "))
    if not match:
        raise SlotValueError(N_("I couldn't find an amount in that"))
    try:
        amount = Decimal(match["amount"].replace(",", ""))
    except InvalidOperation:
        raise SlotValueError(N_("I couldn't read that amount")) from None
    if match["scale"]:
        amount *= _SCALES[match["scale"].lower()]
    currency = _currency(text, default_currency)
    if amount <= 0:
        raise SlotValueError(N_("The amount must be more than zero"))
    precision = get_currency_precision(currency)
    minor = int((amount * (10**precision)).to_integral_value())
    display = format_currency(amount, currency, locale="en_IN")
    return {"amount_minor": minor, "currency": currency, "display": display}


def normalize_phone(text: str, region: str) -> str:
    """Any common format -> E.164 (``+919876543210``); ``region`` for numbers without +code.

    Raises:
        SlotValueError: not a valid phone number.
    """
    try:
        number = phonenumbers.parse(text.replace("whatsapp:", ""), region)
    except phonenumbers.NumberParseException:
        raise SlotValueError(N_("That doesn't look like a phone number")) from None
    if not phonenumbers.is_valid_number(number):
        raise SlotValueError(N_("That doesn't look like a valid phone number"))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(text: str) -> str:
    """An email address, lower-cased.

    Raises:
        SlotValueError: not an email address.
    """
    try:
        address = _EMAIL.validate_python(text.strip())
    except ValidationError:
        raise SlotValueError(N_("That doesn't look like an email address")) from None
    return address.lower()


#: The longest text read as a date ("the last Friday of next month" is 29).
MAX_DATE_CHARS = 64


def warm_up_dates() -> None:
    """Load dateparser's language data (about 0.3 s, once per process), so that the first
    date a user says is not parsed on the event loop's time. Call it in a worker thread."""
    normalize_date("tomorrow", "UTC")


def normalize_date(text: str, timezone: str) -> date:
    """A date as people write or say it, ``"2026-12-25"``, ``"25 Dec"``, ``"next Tuesday"``,
    ``"tomorrow"``, ``"25/12/2026"`` (day first), resolved against today in ``timezone``; a
    date without a year, or a weekday, is the next one to come.

    Raises:
        SlotValueError: not a date dateparser can read, or longer than ``MAX_DATE_CHARS``.
    """
    if len(text) > MAX_DATE_CHARS:  # dateparser's cost grows with the text; a date is short
        raise SlotValueError(N_("That is too long to be a date"))
    now = datetime.now(ZoneInfo(timezone)).replace(tzinfo=None)
    parsed = dateparser.parse(
        text,
        languages=["en", "hi"],
        settings={"RELATIVE_BASE": now, "PREFER_DATES_FROM": "future", "DATE_ORDER": "DMY"},
    )
    if parsed is None:
        raise SlotValueError(N_("I couldn't read that date"))
    return parsed.date()


def normalize(slot: Slot, value: str, settings: Settings) -> Any:
    """Normalise one extracted value for ``slot``.

    Raises:
        SlotValueError: the value does not fit the slot type.
    """
    text = value.strip()
    if not text:
        raise SlotValueError(N_("That was empty"))
    if slot.type == "money":
        return normalize_money(text, settings.default_currency)
    if slot.type == "phone":
        return normalize_phone(text, settings.default_phone_region)
    if slot.type == "email":
        return normalize_email(text)
    if slot.type == "date":
        return normalize_date(text, settings.default_timezone).isoformat()
    if slot.type == "number":
        try:
            return float(text.replace(",", ""))
        except ValueError:
            raise SlotValueError(N_("That isn't a number")) from None
    return text


def _plain(error: ErrorDetails) -> Phrase:
    """A validation error of a slot's value, in plain words."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "string_too_long":
        return Phrase(
            N_("That's too long — at most {max_length} characters"),
            {"max_length": ctx["max_length"]},
        )
    if kind in ("greater_than", "greater_than_equal"):
        return Phrase(N_("That's too small"))
    if kind in ("less_than", "less_than_equal"):
        return Phrase(N_("That's too large"))
    return Phrase(N_("That doesn't look right"))


def refused_slots(intent: Intent, slots: dict[str, Any]) -> dict[str, Phrase]:
    """Slots whose values the task's params model refuses -> why, in plain words.

    Checked as soon as every required slot is filled (the command's ``build_params`` needs
    them), so before any confirmation: the params go through the same Pydantic model the
    engine validates with, and each error is traced back through :attr:`Slot.param`. Errors
    no slot explains are left for the run to report; intents without a params model (intent
    workflows) have nothing to check here.
    """
    command, model = intent.command, intent.params
    if command is None or model is None or any(s.name not in slots for s in intent.required):
        return {}
    try:
        model.model_validate(command.build_params(slots))
    except ValidationError as exc:
        refused: dict[str, Phrase] = {}
        for error in exc.errors(include_url=False):
            where = ".".join(map(str, error["loc"]))
            for slot in intent.slots:
                if slot.param and slot.name in slots and f"{where}.".startswith(f"{slot.param}."):
                    refused.setdefault(slot.name, Phrase(slot.hint) if slot.hint else _plain(error))
        return refused
    return {}


# -- extraction ----------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExtractedEntity(_Strict):
    """A slot value as the user said it."""

    name: str = Field(description="Slot name from the catalog.")
    value: str = Field(
        description="The value: money as '<number> <ISO currency>', dates and phones as "
        "the user said them."
    )


class Extraction(_Strict):
    """What the model reads from one message."""

    intent: str | None = Field(description="Intent name from the catalog, or null.")
    confidence: float = Field(description="0..1")
    entities: list[ExtractedEntity]
    cancel: bool = Field(description="The user wants to stop or abandon the current request.")
    confirmation: Literal["yes", "no"] | None = Field(
        description="Answer to a pending yes/no confirmation, else null."
    )
    language: str = Field(
        description="The language of the message as a BCP 47 tag: 'en' English, 'hi' Hindi "
        "in Devanagari, 'hi-Latn' Hindi or Hinglish in Latin letters, else its ISO 639-1 code. "
        "For a message that could be any language ('ok', a number), the conversation's."
    )


@dataclass
class Analysis:
    """The outcome of reading a message in its conversation context."""

    intent: str | None
    confidence: float
    entities: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, Phrase] = field(default_factory=dict)
    cancel: bool = False
    confirmation: str | None = None
    language: str | None = None


def _prompt(intents: dict[str, Intent], pending: dict[str, Any] | None, language: str) -> str:
    lines = [
        "You read messages sent to a business assistant on WhatsApp or by voice and extract "
        "what the user wants. Intents (name: description; slots):"
    ]
    for intent in intents.values():
        slots = ", ".join(
            f"{s.name} ({s.type}{', required' if s.required else ''})" for s in intent.slots
        )
        lines.append(f"- {intent.name}: {intent.description}; slots: {slots or 'none'}")
    lines.append(
        "Copy dates as the user said them ('25 Dec', 'next Tuesday'); they are resolved later. "
        "Write money as '<number> <ISO currency>' (e.g. '5000 INR' for 5000 rupees). "
        "Only extract values the user actually said. If nothing matches, intent is null. "
        f"Messages may be in any language (often Hindi or Hinglish); the conversation so far is "
        f"in '{language}'. Say which language this message is in; never translate values."
    )
    if pending:
        lines.append(
            f"The conversation is in the middle of {pending['intent']} with these details so "
            f"far: {pending.get('slots', {})}. "
            + (
                "The assistant asked the user to confirm (yes/no). "
                if pending.get("awaiting") == "confirmation"
                else "The assistant asked for missing details; the message probably answers it. "
            )
            + "Keep intent as that name unless the user clearly asks for something else."
        )
    return "\n".join(lines)


class IntentService:
    """Reads messages with a chat model (``with_structured_output``, json_schema strict)."""

    def __init__(self, model: BaseChatModel | None, settings: Settings) -> None:
        self.settings = settings
        self.model = (
            None
            if model is None
            else llm.StructuredModel(model, Extraction, settings, purpose="intent")
        )

    def configured(self) -> llm.StructuredModel[Extraction]:
        """The model that reads messages.

        Raises:
            LLMNotConfigured: 503, no model is configured (nothing can be understood).
        """
        if self.model is None:
            raise LLMNotConfigured(
                "no language model is configured: set OPENAI_API_KEY "
                "(or OPENAI_BASE_URL) to understand messages"
            )
        return self.model

    async def analyze(
        self,
        text: str,
        intents: dict[str, Intent],
        pending: dict[str, Any] | None,
        language: str = "en",
    ) -> Analysis:
        """Extract intent, entities and the message's language (a BCP 47 tag; the
        conversation's is ``language``) from ``text`` and normalise the entities.

        Raises:
            LLMNotConfigured: 503. LLMBadOutput: 502. LLMTimeout: 504. LLMUnavailable: 502.
        """
        model = self.configured()
        messages = [SystemMessage(_prompt(intents, pending, language)), HumanMessage(text)]
        extraction = await model.ainvoke(messages)
        analysis = Analysis(
            intent=extraction.intent if extraction.intent in intents else None,
            confidence=extraction.confidence,
            cancel=extraction.cancel,
            confirmation=extraction.confirmation,
            language=extraction.language[:35] or None,
        )
        target = intents.get(analysis.intent or (pending or {}).get("intent", ""))
        if target is not None:
            slots = {s.name: s for s in target.slots}
            for entity in extraction.entities:
                slot = slots.get(entity.name)
                if slot is None:
                    continue
                try:
                    analysis.entities[slot.name] = normalize(slot, entity.value, self.settings)
                except SlotValueError as exc:
                    analysis.problems[slot.name] = Phrase(str(exc))
        return analysis
