"""``trigger``: where a run starts; its output is the run's trigger data.

The kinds of trigger form a union on ``trigger`` (``manual`` when absent): each declares the
fields it needs and what makes it valid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Discriminator, Field, Tag

from blueprint_engine.workflows.nodes.base import (
    CREDENTIAL_NAME,
    Checker,
    Loc,
    Model,
    NodeId,
    NodeKind,
    NodeResult,
    NodeRun,
)
from blueprint_engine.workflows.nodes.drafting import DraftField, DraftValues
from blueprint_engine.workflows.steps import NO_RETRY, StepOutcome

#: The longest a webhook trigger may ask its hook to wait for the run's end (``response_timeout``).
MAX_HOOK_RESPONSE_SECONDS = 300


class IntentSlot(Model):
    """A detail an intent-triggered workflow needs; it arrives as ``trigger_data.<name>``."""

    name: NodeId
    type: Literal["text", "money", "phone", "email", "date", "number"] = "text"
    required: bool = True
    question: str = Field(min_length=1, max_length=300)
    description: str = ""


class TriggerNode(NodeKind):
    """Where a run starts. Its output is the trigger data."""

    summary = "Where a run starts; its output is the run's trigger data."
    draft_rule = (
        'Exactly one node of type "trigger", with no incoming edges; every other node is '
        "reachable from it. Its `trigger` says how runs start (below); its output, the run's "
        "input, is {{ trigger_data }}."
    )

    type: Literal["trigger"]
    trigger: str

    @classmethod
    def from_draft(cls, draft: DraftValues) -> dict[str, Any]:
        """Its kind's ``trigger`` and its draft fields."""
        return {
            "trigger": get_args(cls.model_fields["trigger"].annotation)[0],
            **super().from_draft(draft),
        }

    def event_name(self) -> str | None:
        """The event that starts runs of this workflow, if any (``workflows.trigger_event``)."""
        return None

    async def run(self, ctx: NodeRun) -> NodeResult:
        """Record the trigger data as the trigger's output."""
        data = ctx.context()["trigger_data"]

        async def step(attempt: int) -> StepOutcome:
            return StepOutcome(input=None, output=data)

        return NodeResult(await ctx.port.run(ctx.step_id(self.id), step, NO_RETRY, pure=True))


class ManualTrigger(TriggerNode):
    """Runs started by hand, by ``POST /workflows/{id}/run`` or by a parent workflow."""

    summary = "Runs started by hand, by the API, or by another workflow as a child run."
    draft_rule = (
        "No fields of its own. trigger_data is the input the run was started with (a parent "
        "workflow's `input_json`, or a foreach item)."
    )

    trigger: Literal["manual"] = "manual"


class EventTrigger(TriggerNode):
    """Runs started by an event posted to ``POST /events`` or emitted by an integration."""

    summary = "Runs started by an event posted to POST /events or emitted by an integration."
    draft_rule = "`event` names the event (one this backend emits, or any name sent to /events)."
    draft_fields = {
        "event": DraftField(str, "The event name, e.g. razorpay/payment.captured."),
    }

    trigger: Literal["event"]
    event: str | None = Field(
        default=None,
        max_length=200,
        description="The event name, e.g. razorpay/payment.captured.",
    )

    def event_name(self) -> str | None:
        """The event's name."""
        return self.event

    def check(self, checker: Checker, loc: Loc) -> None:
        """The event name is required."""
        if not self.event:
            checker.add([*loc, "event"], f"a {self.trigger} trigger needs an event name", self.id)


class WebhookTrigger(TriggerNode):
    """Runs started through the workflow's own URL, ``POST /hooks/{workflow_id}/{token}``
    (``services/hook_delivery_service``), and, when it names an ``event``, by that vendor
    webhook event too.

    The trigger data is ``{"body", "headers", "query", "method"}``. ``respond`` says how the
    hook answers: ``immediately`` (202 with the run id) or ``when_finished`` (the run's end
    output, waiting at most ``response_timeout`` seconds, capped by
    ``HOOK_RESPONSE_MAX_SECONDS``). With a ``credential`` (a ``webhook_secret``), a request must
    carry the HMAC-SHA256 of its raw body in ``signature_header``.
    """

    summary = "Runs started through the workflow's own webhook URL (or a vendor's event)."
    draft_rule = (
        "The workflow gets its own URL that any service can POST to; trigger_data.body is the "
        "request's JSON or form body, trigger_data.headers and trigger_data.query the rest. "
        "`event` (optional) also starts it on that vendor event, e.g. razorpay/payment.captured."
    )

    draft_fields = {
        "event": DraftField(str, "Optional vendor event that also starts it."),
        "respond": DraftField(
            Literal["immediately", "when_finished"],
            "'when_finished' answers the caller with the run's end output (null: immediately).",
        ),
        "response_timeout": DraftField(int, "With when_finished: seconds to wait (null: 10)."),
        "credential": DraftField(
            str, "A webhook_secret connection of the user's to check an HMAC signature with."
        ),
        "signature_header": DraftField(str, "The signature's header (null: X-Signature-256)."),
    }

    trigger: Literal["webhook"]
    event: str | None = Field(
        default=None,
        max_length=200,
        description="Optional: a vendor webhook event that also starts it, e.g. "
        "razorpay/payment.captured.",
    )
    respond: Literal["immediately", "when_finished"] | None = Field(
        default=None,
        description="'immediately' (default) answers 202 with the run id; 'when_finished' waits "
        "for the run's end and answers its output (200), or 502 if it failed, or 202 after "
        "response_timeout.",
    )
    response_timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_HOOK_RESPONSE_SECONDS,
        description="With respond 'when_finished': seconds to wait (default 10; the deployment "
        "caps it with HOOK_RESPONSE_MAX_SECONDS).",
    )
    credential: str | None = Field(
        default=None,
        pattern=CREDENTIAL_NAME,
        description="A webhook_secret credential; requests must then carry the HMAC-SHA256 of "
        "their raw body (hex, optionally 'sha256=<hex>') in signature_header.",
    )
    signature_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$",
        description="With a credential: the header carrying the signature (default "
        "X-Signature-256).",
    )

    def event_name(self) -> str | None:
        """The vendor event that also starts it, if any."""
        return self.event

    def check(self, checker: Checker, loc: Loc) -> None:
        """``response_timeout`` only when waiting, ``signature_header`` only with a
        ``credential`` (that it exists, is the owner's and a ``webhook_secret`` is checked at
        save: ``credential_service.check_references``)."""
        if self.response_timeout is not None and self.respond != "when_finished":
            checker.add(
                [*loc, "response_timeout"],
                "response_timeout applies only with respond: 'when_finished'",
                self.id,
            )
        if self.signature_header is not None and self.credential is None:
            checker.add(
                [*loc, "signature_header"],
                "signature_header needs a credential (a webhook_secret) to check it with",
                self.id,
            )


class ScheduleTrigger(TriggerNode):
    """Runs started on a cron schedule; ``trigger_data.scheduled_for`` is the firing time."""

    summary = "Runs started on a cron schedule."
    draft_rule = (
        "`cron` (5 fields: minute hour day month weekday, e.g. '0 9 * * 1-5' for 09:00 on "
        "weekdays) and `timezone` (IANA, e.g. Asia/Kolkata; null: UTC). "
        "trigger_data.scheduled_for is the firing time."
    )
    draft_fields = {
        "cron": DraftField(str, "Cron expression, e.g. '0 9 * * 1-5'."),
        "timezone": DraftField(str, "IANA zone of the cron, e.g. Asia/Kolkata (null: UTC)."),
    }

    trigger: Literal["schedule"]
    cron: str | None = Field(
        default=None,
        description="5 fields (minute hour day month weekday), or 6 with seconds last, e.g. "
        "'0 9 * * 1-5' for 09:00 on weekdays.",
    )
    timezone: str = Field(default="UTC", description="IANA zone of the cron.")

    def check(self, checker: Checker, loc: Loc) -> None:
        """The cron expression and the zone must be real."""
        if not self.cron:
            checker.add([*loc, "cron"], "a schedule trigger needs a cron expression", self.id)
        elif not croniter.is_valid(self.cron):
            checker.add(
                [*loc, "cron"],
                f"{self.cron!r} is not a cron expression such as '0 9 * * 1-5'",
                self.id,
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            checker.add([*loc, "timezone"], f"unknown time zone {self.timezone!r}", self.id)


class IntentTrigger(TriggerNode):
    """Runs started by a spoken or typed command (WhatsApp, voice) once its slots are known."""

    summary = "Runs started by a command the user says or types (WhatsApp, voice)."
    draft_rule = (
        "`intent` is the command's UPPER_SNAKE name (e.g. SEND_REMINDERS); `slots` are the "
        "details to ask the user for before the run starts, each {name (snake_case; the value "
        "arrives as trigger_data.<name>), type (text, money, phone, email, date, number), "
        "required, question (what to ask when it is missing), description}; `confirm` true to "
        "ask yes/no first (do so for anything that moves money or messages many people). A "
        'money slot arrives as {amount_minor, currency, display} (₹50 = {"amount_minor": '
        '5000, "currency": "INR"}), a phone as E.164, a date as ISO 8601, a number as a number.'
    )
    draft_fields = {
        "intent": DraftField(str, "The command name users invoke, e.g. SEND_REMINDERS."),
        "slots": DraftField(list[IntentSlot], "Details to collect before the run starts."),
        "confirm": DraftField(bool, "Ask the user yes/no before the run starts."),
    }

    trigger: Literal["intent"]
    intent: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Z0-9_]{1,63}$",
        description="The command name users invoke, e.g. SEND_REMINDERS.",
    )
    slots: list[IntentSlot] = Field(default_factory=list, description="Details to collect first.")
    confirm: bool = Field(default=False, description="Ask yes/no first.")

    def check(self, checker: Checker, loc: Loc) -> None:
        """The intent name is required."""
        if not self.intent:
            checker.add([*loc, "intent"], "an intent trigger needs an intent name", self.id)


TRIGGER_KINDS: tuple[type[TriggerNode], ...] = (
    ManualTrigger,
    EventTrigger,
    WebhookTrigger,
    ScheduleTrigger,
    IntentTrigger,
)
TRIGGER_NAMES: tuple[str, ...] = tuple(
    get_args(kind.model_fields["trigger"].annotation)[0] for kind in TRIGGER_KINDS
)


def _trigger_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        tag = value.get("trigger", "manual")
        return tag if isinstance(tag, str) else None
    return getattr(value, "trigger", None)


if TYPE_CHECKING:
    Trigger = TriggerNode
else:
    #: The trigger kinds as one union, told apart by ``trigger`` (``manual`` when absent).
    Trigger = Annotated[
        Union[  # noqa: UP007 - built from the tuple above
            tuple(
                Annotated[kind, Tag(name)]
                for kind, name in zip(TRIGGER_KINDS, TRIGGER_NAMES, strict=True)
            )
        ],
        Discriminator(
            _trigger_tag,
            custom_error_type="trigger_kind",
            custom_error_message=f"trigger must be one of {', '.join(TRIGGER_NAMES)}",
        ),
    ]
