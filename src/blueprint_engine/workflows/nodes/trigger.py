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
    Checker,
    Loc,
    Model,
    NodeId,
    NodeKind,
    NodeResult,
    NodeRun,
)
from blueprint_engine.workflows.steps import NO_RETRY, StepOutcome


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
        "reachable from it."
    )

    type: Literal["trigger"]
    trigger: str

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

    trigger: Literal["manual"] = "manual"


class EventTrigger(TriggerNode):
    """Runs started by an event posted to ``POST /events`` or emitted by an integration."""

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


class WebhookTrigger(EventTrigger):
    """Runs started by a vendor webhook delivering the event ``event``."""

    trigger: Literal["webhook"]  # type: ignore[assignment]


class ScheduleTrigger(TriggerNode):
    """Runs started on a cron schedule; ``trigger_data.scheduled_for`` is the firing time."""

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
