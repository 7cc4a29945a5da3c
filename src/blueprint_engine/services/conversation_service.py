"""One conversation turn: understand the message, fill slots across turns, confirm, act, answer
in the user's language.

State per session (``sessions.state``): ``pending``, the intent being filled, its slots
(merged turn by turn, never replaced wholesale), its trace id, whether the assistant is waiting
for details or for a yes/no, and the facts its confirmation stated; ``language``, the language
of the conversation (the model says which each message is in; the reply is written in it from
the gettext catalogs, :mod:`replies`; a language we have no catalog for is answered in English,
saying so once: ``told``); ``interrupted``, a request that was pending when the previous
session timed out.

Words that steer the conversation are recognised without the model, in any language we write
in (:data:`replies.CONTROL_WORDS`): "bye" / "अलविदा" ends the session at once (its summary is
stored straight away: :func:`session_service.end`); "continue" picks up the interrupted
request, which the first reply of the new session mentions; "help" lists what the user can do.
"cancel" / "never mind" abandons the pending request; anything that moves money asks for
confirmation first, stating every consequential fact; a "no" does nothing.

A value is checked when it is given: normalised for its slot type, then, once the details are
complete, against the task's params model (and by the command's lookup, which may find it
does not exist); a refused value is dropped and asked for again in plain words, so a
confirmation is only ever asked for details that can run. When the model or the engine fails,
or the action fails, the user is told so in plain words and the technical detail goes to the
server log and the run; the state is left so that the next message can succeed (a model failure
keeps the pending request; an attempted action never stays pending).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from blueprint_engine.config import Settings
from blueprint_engine.errors import (
    AppError,
    EngineUnavailable,
    LLMBadOutput,
    LLMTimeout,
    LLMUnavailable,
)
from blueprint_engine.integrations import N_
from blueprint_engine.services import action_service, i18n, intent_service, replies, session_service
from blueprint_engine.services.action_service import ActionOutcome, LateReply, Replies
from blueprint_engine.services.i18n import Phrase, Speaker
from blueprint_engine.services.intent_service import Analysis, Intent, IntentService
from blueprint_engine.services.replies import Said
from blueprint_engine.store import sessions as store
from blueprint_engine.store.db import Conn, Pool
from blueprint_engine.workflows.runners import Dispatcher

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """The answer to one message (the shape of ``/intent-parser``'s response).

    ``said`` is the reply written (``reply``, as sent) and spoken (``speech``: what
    text-to-speech says, :func:`replies.spoken`); ``language`` the BCP 47 tag it is in;
    ``ended``: the user closed the session.
    """

    status: str  # completed | needs_input | no_action | failed
    said: Said
    session_id: UUID
    trace_id: str
    analysis: dict[str, Any]
    run_id: UUID | None = None
    #: The outbound message row; ``answered``: ``reply`` is the answer (not an acknowledgement);
    #: ``send``: include ``reply`` in the HTTP response (False when the run already sent it).
    outbound_id: int | None = None
    answered: bool = True
    send: bool = True
    language: str = "en"
    speech: str = ""
    ended: bool = False

    @property
    def reply(self) -> str:
        """The reply as written (WhatsApp, the voice client's chat)."""
        return self.said.text


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


async def _carried_over(conn: Conn, channel: str, user_ref: str, owner: UUID) -> dict[str, Any]:
    """What a new session takes from the user's previous one: its language, and the request
    that was pending when it timed out (a session the user ended keeps none)."""
    previous = await store.previous(conn, channel, user_ref, owner)
    state: dict[str, Any] = dict((previous or {}).get("state") or {})
    carried: dict[str, Any] = {}
    if isinstance(state.get("language"), str):
        carried["language"] = state["language"]
    if isinstance(state.get("pending"), dict):
        carried["interrupted"] = {**state["pending"], "told": False}
    return carried


async def language_of(pool: Pool, channel: str, user_ref: str, owner: UUID) -> i18n.Language:
    """The language of the user's conversation (English if none yet), for what is said
    outside a turn (a voice note that could not be downloaded)."""
    async with pool.connection() as conn:
        tag = await store.language(conn, channel, user_ref, owner)
    return i18n.LANGUAGES.get(tag or "", i18n.ENGLISH)


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
    and produce the answer, in the user's language.
    Messages of one user are handled one at a time, in arrival order of the lock.

    ``reply_to`` (WhatsApp) enables late answers: if the action outlives the inline wait, the
    run itself sends the answer to that number — through the user's ``twilio`` credential
    ``reply_via`` when the message came in on their own number.

    A model that fails (times out, is unavailable, answers unusably) or an action that cannot
    start or fails is answered with a ``failed`` turn whose reply is an apology in plain words.

    Raises:
        LLMNotConfigured: 503 (a deployment without a model).
    """
    intents_reader.configured()  # a deployment without a model holds no conversation
    async with _one_turn_at_a_time(settings, f"{owner}:{channel}:{user_ref}"):
        async with pool.connection() as conn, conn.transaction():
            session = await store.open_for(conn, channel, user_ref, owner)
            state: dict[str, Any] = dict(session["state"] or {})
            if session["created"]:
                state |= await _carried_over(conn, channel, user_ref, owner)
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
        intents = await intent_service.catalog(pool, owner)
        talk = _Conversation(
            pool,
            dispatcher,
            settings,
            intents,
            _Thread(session_id, owner, reply_to, reply_via),
            state,
            channel,
        )
        turn = await talk.respond(text, intents_reader)
        turn.analysis["transcript"] = transcript
        turn.analysis["language"] = turn.language = talk.speaker.language.tag
        turn.speech = replies.spoken(turn.said, talk.speaker)

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
            if turn.ended:
                await session_service.end(pool, dispatcher, session_id, owner=owner)
            else:
                await session_service.schedule_timeout(
                    pool, dispatcher, settings, session_id, inbound_id, owner=owner
                )
        except EngineUnavailable as exc:  # the answer stands; a later message starts a timer
            log.warning("session %s: no timer or summary run: %s", session_id, exc)
        return turn


class _Conversation:
    """One turn's view of a conversation: the catalog, the session's state (changed in
    place, saved by :func:`handle`) and who is told, in which language."""

    def __init__(
        self,
        pool: Pool,
        dispatcher: Dispatcher,
        settings: Settings,
        intents: dict[str, Intent],
        thread: _Thread,
        state: dict[str, Any],
        channel: str,
    ) -> None:
        self.pool, self.dispatcher, self.settings = pool, dispatcher, settings
        self.intents, self.thread, self.state, self.channel = intents, thread, state, channel
        self.speaker = self._speaker(i18n.LANGUAGES.get(state.get("language", ""), i18n.ENGLISH))
        self.trace_id = (state.get("pending") or {}).get("trace_id") or uuid.uuid4().hex
        self.confidence: float | None = None

    def _speaker(self, language: i18n.Language) -> Speaker:
        return Speaker(language, self.channel, self.settings.default_phone_region)

    def _speak(self, language: i18n.Language) -> None:
        """Answer in ``language`` from now on (and remember it for the session)."""
        self.state["language"] = language.tag
        if language != self.speaker.language:
            self.speaker = self._speaker(language)

    def turn(
        self,
        status: str,
        said: Said,
        intent: str | None,
        slots: dict[str, Any],
        missing: list[str] | None = None,
    ) -> Turn:
        """A turn of this conversation."""
        return Turn(
            status,
            said,
            self.thread.session_id,
            self.trace_id,
            {
                "intent": intent,
                "entities": slots,
                "missing_slots": missing or [],
                "confidence": self.confidence,
            },
        )

    async def respond(self, text: str, reader: IntentService) -> Turn:
        """The answer to ``text``: a control word, else what the model reads in it."""
        steer = replies.control(text, self.speaker.language)
        if steer is not None:
            kind, language = steer
            if "language" not in self.state:
                self._speak(language)
            if kind == "end":
                return self.goodbye()
            if kind == "help":
                return self.with_notices(self.help(asked=True))
            if kind == "continue" and self.state.get("interrupted"):
                return await self.resume()
        pending = self.state.get("pending")
        try:
            analysis = await reader.analyze(text, self.intents, pending, self.speaker.language.tag)
        except (LLMBadOutput, LLMTimeout, LLMUnavailable) as exc:
            log.warning(
                "session %s: the model could not read a message: %s", self.thread.session_id, exc
            )
            return self.turn("failed", replies.apology(exc, self.speaker), None, {})
        self.confidence = analysis.confidence
        language, unsupported = i18n.language_of(analysis.language, self.speaker.language)
        self._speak(language)
        turn = self.with_notices(await self.decide(analysis))
        told: list[str] = self.state.setdefault("told", [])
        if unsupported is not None and unsupported not in told:
            told.append(unsupported)
            turn.said = replies.unsupported_language(unsupported).then(turn.said)
        return turn

    def with_notices(self, turn: Turn) -> Turn:
        """The turn, with the note of a request the last session left unfinished (once)."""
        interrupted = self.state.get("interrupted")
        if not interrupted or interrupted.get("told"):
            return turn
        interrupted["told"] = True
        intent = self.intents.get(interrupted.get("intent", ""))
        if intent is None:  # the workflow behind it was deactivated meanwhile
            self.state.pop("interrupted")
            return turn
        what = replies.request(intent, interrupted.get("slots") or {}, self.speaker)
        turn.said = turn.said.then(replies.unfinished(what, self.speaker))
        return turn

    def help(self, *, asked: bool) -> Turn:
        """What the user can do (``asked``: they asked; else the message matched nothing)."""
        said = replies.help_reply(self.intents, self.speaker, asked=asked)
        return self.turn("no_action", said, None, {})

    def goodbye(self) -> Turn:
        """The user ends the conversation: the pending request is dropped (and said so)."""
        pending = self.state.pop("pending", None)
        self.state.pop("interrupted", None)
        dropped = None
        intent = self.intents.get((pending or {}).get("intent", ""))
        if pending and intent is not None:
            dropped = replies.request(intent, pending["slots"], self.speaker)
        turn = self.turn("no_action", replies.goodbye(dropped, self.speaker), None, {})
        turn.ended = True
        return turn

    async def resume(self) -> Turn:
        """Pick up the request the last session left unfinished: ask what it still needs."""
        interrupted = self.state.pop("interrupted")
        intent = self.intents.get(interrupted.get("intent", ""))
        if intent is None:
            return self.help(asked=False)
        self.trace_id = interrupted.get("trace_id") or self.trace_id
        turn = await self.advance(intent, dict(interrupted.get("slots") or {}), {})
        turn.said = replies.resumed(self.speaker).then(turn.said, "\n")
        return turn

    async def decide(self, analysis: Analysis) -> Turn:
        """The next step of the conversation after the model read the message."""
        pending: dict[str, Any] | None = self.state.get("pending")
        if analysis.cancel and pending:
            self.state.pop("pending", None)
            intent = self.intents.get(pending["intent"])
            said = (
                replies.cancelled(intent, pending["slots"], self.speaker)
                if intent is not None
                else replies.plain(self.speaker(N_("Okay, cancelled.")))
            )
            return self.turn("no_action", said, pending["intent"], pending["slots"])

        if (
            pending
            and pending.get("awaiting") == "confirmation"
            and analysis.intent in (None, pending["intent"])
            and not analysis.entities
        ):
            intent = self.intents.get(pending["intent"])
            if intent is None or analysis.confirmation == "no":
                self.state.pop("pending", None)
                said = (
                    replies.declined(intent, pending["slots"], self.speaker)
                    if intent is not None
                    else replies.plain(self.speaker(N_("Okay, cancelled.")))
                )
                return self.turn("no_action", said, pending["intent"], pending["slots"])
            facts = pending.get("facts") or {}
            if analysis.confirmation != "yes":
                said = replies.confirmation(intent, pending["slots"], facts, self.speaker)
                return self.turn("needs_input", said, intent.name, pending["slots"])
            return await self.act(intent, pending["slots"], facts)

        if pending and analysis.intent in (None, pending["intent"]):
            name, slots = pending["intent"], {**pending["slots"], **analysis.entities}
        elif analysis.intent is not None:
            name, slots = analysis.intent, dict(analysis.entities)
            self.trace_id = uuid.uuid4().hex
        else:
            self.state.pop("pending", None)
            return self.help(asked=False)

        intent = self.intents.get(name)
        if intent is None:  # the workflow behind a pending intent was deactivated meanwhile
            self.state.pop("pending", None)
            return self.help(asked=False)
        return await self.advance(intent, slots, analysis.problems)

    async def advance(
        self, intent: Intent, slots: dict[str, Any], problems: dict[str, Phrase]
    ) -> Turn:
        """Ask for what is missing or refused; else look up what the confirmation must
        state and ask for it; else act."""
        problems = {**problems, **intent_service.refused_slots(intent, slots)}
        slots = {key: value for key, value in slots.items() if key not in problems}
        missing = [s.name for s in intent.required if s.name not in slots]
        ask = next((s for s in intent.slots if s.name in problems or s.name in missing), None)
        if ask is not None:
            return self.ask(intent, slots, ask.name, problems.get(ask.name), missing)
        if not intent.confirm:
            return await self.act(intent, slots, {})
        facts: dict[str, Any] = {}
        if intent.lookup is not None:
            try:
                found = await action_service.look_up(
                    self.pool,
                    self.dispatcher,
                    self.settings,
                    intent,
                    slots,
                    self.trace_id,
                    owner=self.thread.owner,
                )
            except AppError as exc:  # the engine did not take the lookup
                found = action_service.Found(None, exc.code)
            if found.refused:
                blamed = intent.lookup.slot
                slots.pop(blamed, None)
                missing = [s.name for s in intent.required if s.name not in slots]
                return self.ask(intent, slots, blamed, Phrase(intent.lookup.refused), missing)
            if found.facts is None:
                self.state.pop("pending", None)
                failure = replies.failure(intent, slots, {}, self.speaker)
                said = replies.failed(failure, found.code, self.speaker)
                return self.turn("failed", said, intent.name, slots)
            facts = found.facts
        self.state["pending"] = {
            "intent": intent.name,
            "slots": slots,
            "trace_id": self.trace_id,
            "awaiting": "confirmation",
            "facts": facts,
        }
        said = replies.confirmation(intent, slots, facts, self.speaker)
        return self.turn("needs_input", said, intent.name, slots)

    def ask(
        self,
        intent: Intent,
        slots: dict[str, Any],
        name: str,
        problem: Phrase | None,
        missing: list[str],
    ) -> Turn:
        """Ask for the slot ``name`` (saying why its last value was refused, if it was)."""
        self.state["pending"] = {
            "intent": intent.name,
            "slots": slots,
            "trace_id": self.trace_id,
            "awaiting": "slots",
        }
        slot = next(s for s in intent.slots if s.name == name)
        asking = missing if name in missing else [name, *missing]
        said = replies.question(slot, problem, self.speaker)
        return self.turn("needs_input", said, intent.name, slots, asking)

    async def act(self, intent: Intent, slots: dict[str, Any], facts: dict[str, Any]) -> Turn:
        """Carry the request out and answer (or acknowledge, if it outlives the wait)."""
        self.state.pop("pending", None)
        speaker, thread = self.speaker, self.thread
        told = Replies(
            done=replies.result(intent, slots, facts, speaker),
            failed=replies.failure(intent, slots, facts, speaker),
            started=replies.started(intent, slots, speaker),
            reasons=replies.reasons(speaker),
        )
        late = None
        outbound_id = None
        if thread.reply_to is not None and intent.command is not None:
            async with self.pool.connection() as conn:
                outbound_id = await store.add_message(
                    conn, thread.session_id, "out", trace_id=self.trace_id
                )
            late = LateReply(outbound_id, thread.reply_to, thread.reply_via)
        try:
            outcome = await action_service.execute(
                self.pool,
                self.dispatcher,
                self.settings,
                intent,
                slots,
                self.trace_id,
                told,
                owner=thread.owner,
                late=late,
            )
        except AppError as exc:  # the engine refused the run, or the params did not validate
            log.warning("trace %s: %s not carried out: %s", self.trace_id, intent.name, exc)
            outcome = ActionOutcome("failed", told.failure(exc.code), None, True)
        result = self.turn(outcome.status, outcome.reply, intent.name, slots)
        result.run_id = outcome.run_id
        result.outbound_id = outbound_id
        result.answered = outcome.done
        if outbound_id is not None and outcome.done:
            async with self.pool.connection() as conn:
                # First to claim delivers: normally us (inline), unless the run already replied.
                result.send = await store.claim_delivery(
                    conn, outbound_id, "inline", outcome.reply.text
                )
        return result
