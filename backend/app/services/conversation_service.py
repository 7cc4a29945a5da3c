"""One conversation turn: understand the message, fill slots across turns, confirm, act, answer.

State per session (``sessions.state.pending``): the intent being filled, its slots (merged
turn by turn, never replaced wholesale), its trace id, and whether the assistant is waiting for
details or for a yes/no. "cancel" / "never mind" abandons it; anything that moves money asks for
confirmation first; a "no" does nothing.

A value is checked when it is given: normalised for its slot type, then, once the details are
complete, against the task's params model; a refused value is dropped and asked for again in
plain words, so a confirmation is only ever asked for details that can run. When the model or
the engine fails, or the action fails, the user is told so in plain words (:mod:`replies`) and
the technical detail goes to the server log and the run; the state is left so that the next
message can succeed (a model failure keeps the pending request; an attempted action never stays
pending).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

import psycopg
from babel.dates import format_date

from backend.app.config import Settings
from backend.app.errors import AppError, EngineUnavailable, LLMBadOutput, LLMTimeout, LLMUnavailable
from backend.app.integrations import Slot
from backend.app.services import action_service, intent_service, replies, session_service
from backend.app.services.action_service import ActionOutcome, LateReply
from backend.app.services.intent_service import Analysis, Intent, IntentService
from backend.app.store import sessions as store
from backend.app.store.db import Pool
from backend.app.workflows.runners import Dispatcher

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """The answer to one message (the shape of ``/intent-parser``'s response)."""

    status: str  # completed | needs_input | no_action | failed
    reply: str
    session_id: UUID
    trace_id: str
    analysis: dict[str, Any]
    run_id: UUID | None = None
    #: The outbound message row; ``answered``: ``reply`` is the answer (not an acknowledgement);
    #: ``send``: include ``reply`` in the HTTP response (False when the run already sent it).
    outbound_id: int | None = None
    answered: bool = True
    send: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _display(slot: Slot, value: Any) -> str:
    """A slot's value as the user should check it: money as formatted, a date spelled out
    (``Tuesday 1 December 2026``), so a "next Tuesday" shows which Tuesday it became."""
    if isinstance(value, dict) and "display" in value:
        return str(value["display"])
    if slot.type == "date":
        return format_date(date.fromisoformat(value), "EEEE d MMMM y", locale="en_IN")
    return str(value)


def _confirmation(intent: Intent, slots: dict[str, Any]) -> str:
    details = ", ".join(
        f"{s.name.replace('_', ' ')}: {_display(s, slots[s.name])}"
        for s in intent.slots
        if s.name in slots
    )
    return (
        f"Please confirm — {intent.description[0].lower()}{intent.description[1:]} "
        f"({details}). Reply yes to go ahead or no to cancel."
    )


def _question(slot: Slot, problem: str | None) -> str:
    if not problem:
        return slot.question
    return f"{problem[0].upper()}{problem[1:]}. {slot.question}"


def _help(intents: dict[str, Intent]) -> str:
    things = "; ".join(i.description.rstrip(".").lower() for i in intents.values())
    return f"Sorry, I didn't catch what you need. I can: {things}."


@dataclass(frozen=True)
class _Thread:
    """Whose conversation a turn belongs to, and where a late answer goes (WhatsApp)."""

    session_id: UUID
    owner: UUID
    reply_to: str | None
    reply_via: str | None = None  # the user's twilio credential the message came in on


@asynccontextmanager
async def _one_turn_at_a_time(settings: Settings, conversation: str) -> AsyncIterator[None]:
    """Serialise turns of one conversation (owner, channel, user) across processes with a
    Postgres advisory lock, held on a connection of its own (so waiting turns never starve the
    pool); closing the connection releases it."""
    key = f"conversation:{conversation}"
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        await conn.execute("select pg_advisory_lock(hashtext(%s))", (key,))
        yield


async def handle(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intents_reader: IntentService,
    *,
    channel: str,
    user_ref: str,
    owner: UUID,
    text: str,
    transcript: str | None = None,
    media: Any = None,
    provider_message_id: str | None = None,
    reply_to: str | None = None,
    reply_via: str | None = None,
) -> Turn:
    """Process one inbound message of (``channel``, ``user_ref``) in ``owner``'s conversation
    and produce the answer.
    Messages of one user are handled one at a time, in arrival order of the lock.

    ``reply_to`` (WhatsApp) enables late answers: if the action outlives the inline wait, the
    run itself sends the answer to that number — through the user's ``twilio`` credential
    ``reply_via`` when the message came in on their own number.

    A model that fails (times out, is unavailable, answers unusably) or an action that cannot
    start or fails is answered with a ``failed`` turn whose reply is an apology in plain words.

    Raises:
        LLMNotConfigured: 503 (a deployment without a model).
    """
    async with _one_turn_at_a_time(settings, f"{owner}:{channel}:{user_ref}"):
        async with pool.connection() as conn, conn.transaction():
            session = await store.open_for(conn, channel, user_ref, owner)
            inbound_id = await store.add_message(
                conn,
                session["id"],
                "in",
                text=text,
                transcript=transcript,
                media=media,
                provider_message_id=provider_message_id,
            )
        session_id: UUID = session["id"]
        state: dict[str, Any] = dict(session["state"] or {})
        pending: dict[str, Any] | None = state.get("pending")
        intents = await intent_service.catalog(pool, owner)
        try:
            analysis = await intents_reader.analyze(text, intents, pending)
        except (LLMBadOutput, LLMTimeout, LLMUnavailable) as exc:
            log.warning("session %s: the model could not read a message: %s", session_id, exc)
            turn = _unread(exc, session_id, pending)
        else:
            thread = _Thread(session_id, owner, reply_to, reply_via)
            turn = await _decide(
                pool, dispatcher, settings, intents, analysis, pending, thread, state
            )
        turn.analysis["transcript"] = transcript

        async with pool.connection() as conn, conn.transaction():
            await store.annotate_message(
                conn,
                inbound_id,
                intent=turn.analysis["intent"],
                entities=turn.analysis["entities"],
                trace_id=turn.trace_id,
            )
            if turn.outbound_id is None or not turn.answered:
                # The answer itself, or the acknowledgement sent while the run finishes the work.
                ack = await store.add_message(
                    conn,
                    session_id,
                    "out",
                    text=turn.reply,
                    trace_id=turn.trace_id,
                    delivery="inline",
                )
                turn.outbound_id = turn.outbound_id or ack
            await store.save_state(conn, session_id, state)
        try:
            await session_service.schedule_timeout(
                pool, dispatcher, settings, session_id, inbound_id, owner=owner
            )
        except EngineUnavailable as exc:  # the answer stands; a later message starts a timer
            log.warning("session %s: no inactivity timer: %s", session_id, exc)
        return turn


def _unread(exc: AppError, session_id: UUID, pending: dict[str, Any] | None) -> Turn:
    """The answer when the model could not read the message; the pending request stays."""
    return Turn(
        "failed",
        replies.apology(exc),
        session_id,
        (pending or {}).get("trace_id") or uuid.uuid4().hex,
        {"intent": None, "entities": {}, "missing_slots": [], "confidence": None},
    )


async def _decide(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intents: dict[str, Intent],
    analysis: Analysis,
    pending: dict[str, Any] | None,
    thread: _Thread,
    state: dict[str, Any],
) -> Turn:
    trace_id = (pending or {}).get("trace_id") or uuid.uuid4().hex

    def turn(
        status: str, reply: str, intent: str | None, slots: dict[str, Any], missing: list[str]
    ) -> Turn:
        return Turn(
            status,
            reply,
            thread.session_id,
            trace_id,
            {
                "intent": intent,
                "entities": slots,
                "missing_slots": missing,
                "confidence": analysis.confidence,
            },
        )

    if analysis.cancel and pending:
        state.pop("pending", None)
        return turn("no_action", "Okay, cancelled.", pending["intent"], pending["slots"], [])

    if (
        pending
        and pending.get("awaiting") == "confirmation"
        and analysis.intent in (None, pending["intent"])
        and not analysis.entities
    ):
        intent = intents.get(pending["intent"])
        if intent is None or analysis.confirmation == "no":
            state.pop("pending", None)
            return turn(
                "no_action", "Okay, I won't do that.", pending["intent"], pending["slots"], []
            )
        if analysis.confirmation != "yes":
            return turn(
                "needs_input",
                _confirmation(intent, pending["slots"]),
                intent.name,
                pending["slots"],
                [],
            )
        return await _act(
            pool,
            dispatcher,
            settings,
            intent,
            pending["slots"],
            trace_id,
            thread,
            state,
            analysis,
        )

    if pending and analysis.intent in (None, pending["intent"]):
        name, slots = pending["intent"], {**pending["slots"], **analysis.entities}
    elif analysis.intent is not None:
        name, slots = analysis.intent, dict(analysis.entities)
        trace_id = uuid.uuid4().hex
    else:
        state.pop("pending", None)
        return turn("no_action", _help(intents), None, {}, [])

    intent = intents.get(name)
    if intent is None:  # the workflow behind a pending intent was deactivated meanwhile
        state.pop("pending", None)
        return turn("no_action", _help(intents), None, {}, [])
    problems = {**analysis.problems, **intent_service.refused_slots(intent, slots)}
    slots = {key: value for key, value in slots.items() if key not in problems}
    missing = [s.name for s in intent.required if s.name not in slots]
    ask = next((s for s in intent.slots if s.name in problems or s.name in missing), None)
    if ask is not None:
        state["pending"] = {
            "intent": name,
            "slots": slots,
            "trace_id": trace_id,
            "awaiting": "slots",
        }
        asking = missing if ask.name in missing else [ask.name, *missing]
        return turn("needs_input", _question(ask, problems.get(ask.name)), name, slots, asking)
    if intent.confirm:
        state["pending"] = {
            "intent": name,
            "slots": slots,
            "trace_id": trace_id,
            "awaiting": "confirmation",
        }
        return turn("needs_input", _confirmation(intent, slots), name, slots, [])
    return await _act(pool, dispatcher, settings, intent, slots, trace_id, thread, state, analysis)


async def _act(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intent: Intent,
    slots: dict[str, Any],
    trace_id: str,
    thread: _Thread,
    state: dict[str, Any],
    analysis: Analysis,
) -> Turn:
    state.pop("pending", None)
    late = None
    outbound_id = None
    if thread.reply_to is not None and intent.command is not None:
        async with pool.connection() as conn:
            outbound_id = await store.add_message(conn, thread.session_id, "out", trace_id=trace_id)
        late = LateReply(outbound_id, thread.reply_to, thread.reply_via)
    try:
        outcome = await action_service.execute(
            pool, dispatcher, settings, intent, slots, trace_id, owner=thread.owner, late=late
        )
    except AppError as exc:  # the engine refused the run, or the params did not validate
        log.warning("trace %s: %s not carried out: %s", trace_id, intent.name, exc)
        outcome = ActionOutcome("failed", replies.failed(exc.code), None, True)
    result = Turn(
        outcome.status,
        outcome.reply,
        thread.session_id,
        trace_id,
        {
            "intent": intent.name,
            "entities": slots,
            "missing_slots": [],
            "confidence": analysis.confidence,
        },
        run_id=outcome.run_id,
        outbound_id=outbound_id,
        answered=outcome.done,
    )
    if outbound_id is not None and outcome.done:
        async with pool.connection() as conn:
            # First to claim delivers: normally us (inline), unless the run already replied.
            result.send = await store.claim_delivery(conn, outbound_id, "inline", outcome.reply)
    return result
