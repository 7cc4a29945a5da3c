"""What WhatsApp and voice users are told, in their language: written for the chat, spoken
for text-to-speech.

Each command declares how its confirmation, result and failure read (:class:`Wording`, next
to the command: ``integrations/*``; intent workflows: :mod:`intent_service`); this module
fills them in with the request's values, formatted for the user's language (:mod:`i18n`:
``₹1,200``, ``+91 98765 43210``, ``मंगलवार 1 दिसंबर 2026``) and translated by the gettext
catalogs, never by a model. A spoken reply reads amounts and numbers as words, leaves out the
lines that name a link or an id, and stays short: past :data:`SPOKEN_WORDS` words, or when
something was left out, it ends by saying the rest is in the chat.

A person never sees a regex, a validator message, a template or an exception: the reply says
what happened in words, and the technical detail stays where operators look — the run's error
and logs (``GET /runs/{id}``) and the server log. Reasons are chosen by the machine-readable
error ``code``, never copied from the error's ``message``.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from dataclasses import dataclass
from string import Formatter
from typing import Any

from blueprint_engine.errors import (
    AppError,
    LLMBadOutput,
    LLMNotConfigured,
    LLMTimeout,
    LLMUnavailable,
)
from blueprint_engine.integrations import N_, Slot, Wording
from blueprint_engine.services import i18n
from blueprint_engine.services.i18n import Language, Phrase, Speaker
from blueprint_engine.services.intent_service import Intent

log = logging.getLogger(__name__)

#: A spoken reply longer than this says the rest is in the chat.
SPOKEN_WORDS = 30
#: Stands for a value known only once the task ran (its output field), or for the reason of a
#: failure, until :func:`fill` puts it in.
MARK = "⟦{}⟧"
REASON = "reason"


@dataclass(frozen=True)
class Said:
    """A reply as written (the chat) and as spoken (text-to-speech); ``cut``: the spoken one
    leaves out something that is only in the chat (a link, an id); ``tail``: spoken last,
    however long the rest ("Say yes to confirm or no to cancel.")."""

    text: str
    speech: str
    cut: bool = False
    tail: str = ""

    def then(self, other: Said, sep: str = "\n\n") -> Said:
        """This reply followed by ``other``."""
        return Said(
            f"{self.text}{sep}{other.text}",
            f"{self.speech} {other.speech}",
            self.cut or other.cut,
            " ".join(t for t in (self.tail, other.tail) if t),
        )


def plain(text: str) -> Said:
    """A reply that reads the same written and spoken."""
    return Said(text, text)


def fill(said: Said, values: dict[str, Any]) -> Said:
    """Put the values of :data:`MARK` s in (a task's output fields, a failure's reason)."""
    text, speech = said.text, said.speech
    for name, value in values.items():
        text = text.replace(MARK.format(name), str(value))
        speech = speech.replace(MARK.format(name), str(value))
    return Said(text, speech, said.cut, said.tail)


def spoken(said: Said, speaker: Speaker) -> str:
    """What text-to-speech says: the first sentence (cut at :data:`SPOKEN_WORDS` words only
    if it is far longer), then whole sentences while the reply stays within
    :data:`SPOKEN_WORDS` words, then "The rest is in the chat." when anything was left out,
    then the ``tail`` (how to answer a question), whatever the length."""
    sentences = [s for s in re.split(r"(?<=[.?!।])\s+", said.speech.strip()) if s]
    if not sentences:
        return said.tail
    budget = SPOKEN_WORDS - len(said.tail.split())
    first = sentences[0].split()
    kept = [sentences[0] if len(first) <= SPOKEN_WORDS + 10 else " ".join(first[:SPOKEN_WORDS])]
    count = len(kept[0].split())
    for sentence in sentences[1:]:
        size = len(sentence.split())
        if count + size > budget:
            break
        kept.append(sentence)
        count += size
    left_out = said.cut or len(kept) < len(sentences) or kept[0] != sentences[0]
    rest = speaker(N_("The rest is in the chat.")) if left_out else ""
    return " ".join(p for p in (*kept, rest, said.tail) if p)


# -- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """A value a wording names: ``kind`` is a slot type, ``output`` (a task's output field,
    known later) or ``details`` (a workflow's slots as ``(label, Value)`` pairs)."""

    kind: str
    raw: Any


def _kind(fact: Any) -> str:
    if isinstance(fact, dict) and "amount_minor" in fact:
        return "money"
    if isinstance(fact, str) and re.fullmatch(r"\+[1-9]\d{6,14}", fact):
        return "phone"
    return "text"


def values_for(intent: Intent, slots: dict[str, Any], facts: dict[str, Any]) -> dict[str, Value]:
    """The values an intent's wordings may name: its filled slots, the facts its lookup found,
    its task's outputs (filled in later), and for a workflow its display name and details."""
    values = {s.name: Value(s.type, slots[s.name]) for s in intent.slots if s.name in slots}
    values |= {name: Value(_kind(fact), fact) for name, fact in facts.items()}
    values |= {name: Value("output", field) for name, field in intent.outputs.items()}
    if intent.workflow_name is not None:
        values["workflow"] = Value("text", intent.workflow_name)
        details = [
            (s.description or s.name.replace("_", " "), Value(s.type, slots[s.name]))
            for s in intent.slots
            if s.name in slots
        ]
        if details:
            values["details"] = Value("details", details)
    return values


def _written(value: Value, speaker: Speaker) -> str:
    raw = value.raw
    if value.kind == "money":
        return i18n.money(raw, speaker)
    if value.kind == "phone":
        return i18n.phone(raw, speaker)
    if value.kind == "date":
        return i18n.day(raw, speaker)
    if value.kind == "output":
        return MARK.format(raw)
    if value.kind == "details":
        return i18n.listing([f"{label} {_written(v, speaker)}" for label, v in raw], speaker)
    if value.kind == "number" and float(raw).is_integer():
        return str(int(raw))
    return str(raw)


def _spoken(value: Value, speaker: Speaker) -> str:
    raw = value.raw
    if value.kind == "money":
        return i18n.money(raw, speaker, spoken=True)
    if value.kind == "phone":
        return i18n.phone(raw, speaker, spoken=True)
    if value.kind == "details":
        return i18n.listing([f"{label} {_spoken(v, speaker)}" for label, v in raw], speaker)
    if value.kind == "number" and float(raw).is_integer():
        return i18n.number_words(int(raw), speaker)
    return _written(value, speaker)


# -- wordings ------------------------------------------------------------------------------


def fields(template: str) -> set[str]:
    """The value names a template uses (``{amount}`` -> ``amount``)."""
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def choose(wording: Wording, known: set[str]) -> tuple[str, list[str]]:
    """The variant to say (the first whose values are all known) and the extras to add.

    Raises:
        LookupError: no variant fits (a declaration whose last variant needs more than is
            always known; ``tests/test_replies.py`` tries every command).
    """
    for variant in wording.variants:
        if fields(variant) <= known:
            used = fields(variant)
            extras = [e for e in wording.extras if fields(e) <= known and not fields(e) <= used]
            return variant, extras
    raise LookupError(f"no variant of {wording.variants[0]!r} fits the values {sorted(known)}")


def say(wording: Wording, values: dict[str, Value], speaker: Speaker, **more: str) -> Said:
    """``wording`` with ``values`` (and the plain ``more``) in ``speaker``'s language.

    The extras follow the first line of the variant. The spoken version leaves out each line
    that names an output (a link, an id: they are for the chat)."""
    variant, extras = choose(wording, set(values) | set(more))
    try:
        return _render(speaker(variant), [speaker(e) for e in extras], values, more, speaker)
    except (KeyError, ValueError, IndexError):  # a translation naming values it may not
        log.error("the %s translation of %r is broken", speaker.language.tag, variant)
        return _render(variant, extras, values, more, speaker)


def _render(
    variant: str, extras: list[str], values: dict[str, Value], more: dict[str, str], s: Speaker
) -> Said:
    lines = variant.split("\n")
    lines[0] = " ".join([lines[0], *extras])
    written = {name: _written(v, s) for name, v in values.items()} | more
    speech = {name: _spoken(v, s) for name, v in values.items()} | more
    outputs = {name for name, v in values.items() if v.kind == "output"}
    said_lines = [line for line in lines if not fields(line) & outputs]
    return Said(
        "\n".join(line.format_map(written) for line in lines),
        " ".join(line.format_map(speech) for line in said_lines),
        cut=len(said_lines) < len(lines),
    )


def request(intent: Intent, slots: dict[str, Any], speaker: Speaker) -> Said:
    """The request as a noun phrase ("the payment link for ₹1,200")."""
    return say(intent.request, values_for(intent, slots, {}), speaker)


def confirmation(
    intent: Intent, slots: dict[str, Any], facts: dict[str, Any], speaker: Speaker
) -> Said:
    """The yes/no question before acting: every consequential fact, then how to answer."""
    assert intent.confirmation is not None
    said = say(intent.confirmation, values_for(intent, slots, facts), speaker)
    if speaker.channel == "voice":
        answer = speaker(N_("Say yes to confirm or no to cancel."))
        return Said(f"{said.text} {answer}", said.speech, said.cut, answer)
    answer = speaker(N_("Reply YES to confirm or NO to cancel."))
    return Said(f"{said.text}\n{answer}", said.speech, said.cut, answer)


def result(intent: Intent, slots: dict[str, Any], facts: dict[str, Any], speaker: Speaker) -> Said:
    """The answer once the action succeeded; its outputs are :data:`MARK` s until
    :func:`fill`."""
    return say(intent.result, values_for(intent, slots, facts), speaker)


def failure(intent: Intent, slots: dict[str, Any], facts: dict[str, Any], speaker: Speaker) -> Said:
    """The answer when the action failed; ``⟦reason⟧`` until :func:`fill` (see :func:`reasons`)."""
    values = values_for(intent, slots, facts)
    return say(intent.failure, values, speaker, reason=MARK.format(REASON))


def started(intent: Intent, slots: dict[str, Any], speaker: Speaker) -> Said:
    """The answer while the action carries on after the inline wait."""
    if intent.started is not None:
        return say(intent.started, values_for(intent, slots, {}), speaker)
    return plain(speaker(N_("I'm working on it and will message you when it's done.")))


def question(slot: Slot, problem: Phrase | None, speaker: Speaker) -> Said:
    """Ask for a slot; first say why the last value was refused, if it was."""
    asked = speaker(slot.question)
    if problem is None:
        return plain(asked)
    joined = speaker(N_("{problem}. {question}"))
    return plain(joined.format(problem=problem.said(speaker), question=asked))


def cancelled(intent: Intent, slots: dict[str, Any], speaker: Speaker) -> Said:
    """The answer to "cancel" / "never mind" while a request is pending."""
    said = request(intent, slots, speaker)
    return _around(N_("Okay, I've dropped {request}."), said, speaker)


def declined(intent: Intent, slots: dict[str, Any], speaker: Speaker) -> Said:
    """The answer to a "no" to the confirmation."""
    said = request(intent, slots, speaker)
    return _around(N_("Okay, I won't go ahead with {request}."), said, speaker)


def _around(template: str, said: Said, speaker: Speaker) -> Said:
    words = speaker(template)
    return Said(
        words.format(request=said.text), words.format(request=said.speech), said.cut, said.tail
    )


# -- the conversation itself ---------------------------------------------------------------

#: Words that steer the conversation, whole messages of them (comma-separated; translators
#: add their language's words, the first is the one suggested to the user).
CONTROL_WORDS = {
    "end": N_("bye, goodbye, end, stop, quit, exit, ok bye, thanks bye, thank you bye"),
    "continue": N_("continue, resume, carry on, go on"),
    "help": N_("help, menu, options, what can you do"),
}


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold()
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(kept.split())


@functools.cache
def _words(kind: str, language: Language) -> tuple[str, ...]:
    listed = i18n.translate(language, CONTROL_WORDS[kind])
    return tuple(w for w in (_normal(w) for w in listed.split(",")) if w)


def control(text: str, current: Language) -> tuple[str, Language] | None:
    """``(kind, language)`` when the whole message is a control word (``end``, ``continue``,
    ``help``) of any language we write in, the conversation's own first; else None."""
    said = _normal(text)
    languages = [current, *(lang for lang in i18n.LANGUAGES.values() if lang != current)]
    for language in languages:
        for kind in CONTROL_WORDS:
            if said in _words(kind, language):
                return kind, language
    return None


def word(kind: str, speaker: Speaker) -> str:
    """The control word to suggest to the user (``bye``, ``जारी रखें``)."""
    words = [w.strip() for w in speaker(CONTROL_WORDS[kind]).split(",")]
    return words[0]


def help_reply(intents: dict[str, Intent], speaker: Speaker, *, asked: bool) -> Said:
    """What the user can do: every command, and their own intent workflows by name."""
    head = speaker(
        N_("Here's what I can do:")
        if asked
        else N_("Sorry, I didn't catch what you need. Here's what I can do:")
    )
    items = [
        say(Wording((intent.help,)), values_for(intent, {}, {}), speaker).text
        for intent in intents.values()
    ]
    foot = speaker(N_("Say “{bye}” when you're done.")).format(bye=word("end", speaker))
    text = "\n".join([head, *(f"• {item}" for item in items), foot])
    return Said(text, f"{head} {i18n.listing(items, speaker)}. {foot}")


def goodbye(dropped: Said | None, speaker: Speaker) -> Said:
    """The answer to "bye": the conversation is closed (and what was left unfinished)."""
    if dropped is None:
        return plain(
            speaker(N_("Bye! I've closed our conversation — message me any time to start again."))
        )
    closed = N_(
        "Bye! I've dropped {request} and closed our conversation — message me any time to "
        "start again."
    )
    return _around(closed, dropped, speaker)


def unfinished(said: Said, speaker: Speaker) -> Said:
    """The note that a request was left pending when the last conversation timed out."""
    words = speaker(N_("Unfinished from earlier: {request}. Say “{word}” to pick it up."))
    resume = word("continue", speaker)
    return Said(
        words.format(request=said.text, word=resume),
        words.format(request=said.speech, word=resume),
        said.cut,
        said.tail,
    )


def resumed(speaker: Speaker) -> Said:
    """Said before the question of a request picked up again."""
    return plain(speaker(N_("Picking up where we left off.")))


def unsupported_language(name: str) -> Said:
    """Said once per conversation, in English, to a user writing in a language we have no
    catalog for."""
    return plain(f"Sorry, I can't reply in {name} yet, so I'll answer in English.")


# -- failures ------------------------------------------------------------------------------

_LATER = N_("please try again in a few minutes")

#: A failed step's error ``code`` -> why it failed, said to the user.
_BECAUSE: dict[str, str] = {
    "razorpay_bad_request": N_("Razorpay turned the request down"),
    "razorpay_server_error": N_("Razorpay is having trouble right now"),
    "twilio_error": N_("Twilio turned the WhatsApp message down"),
    "network_error": N_("the service it needs could not be reached"),
    "dns_error": N_("the service it needs could not be reached"),
    "timeout": N_("the service it needs took too long to answer"),
    "http_status": N_("the service it needs turned the request down"),
    "destination_blocked": N_("the address it needs is not allowed"),
    "invalid_params": N_("some of the details are not in a form the service accepts"),
    "expression_error": N_("the workflow could not use those details"),
    "engine_unavailable": N_("I couldn't start it"),
}
#: Codes worth another try later: the reason says so.
_TRANSIENT = {
    "razorpay_server_error",
    "network_error",
    "dns_error",
    "timeout",
    "engine_unavailable",
}
_SOMETHING = N_("something went wrong on our side")


def reason(code: str | None, speaker: Speaker) -> str:
    """Why an action with the error ``code`` failed, in plain words."""
    because = speaker(_BECAUSE.get(code or "", _SOMETHING))
    if code in _TRANSIENT:
        return speaker(N_("{reason}; {later}")).format(reason=because, later=speaker(_LATER))
    return because


def reasons(speaker: Speaker) -> dict[str, str]:
    """Every known code's reason (and ``""``: any other), for answers a run says itself."""
    return {code: reason(code, speaker) for code in [*_BECAUSE, ""]}


def failed(said: Said, code: str | None, speaker: Speaker) -> Said:
    """A :func:`failure` with the reason for ``code`` in."""
    return fill(said, {REASON: reason(code, speaker)})


def apology(exc: AppError, speaker: Speaker) -> Said:
    """The answer when a message could not be handled at all: the model failed to read it,
    no model is set up, the audio could not be used."""
    if isinstance(exc, LLMBadOutput):
        text = N_("Sorry, I couldn't make sense of that. Could you say it again, in other words?")
    elif isinstance(exc, (LLMTimeout, LLMUnavailable)):
        text = N_("Sorry, I can't read messages right now; please try again in a few minutes.")
    elif isinstance(exc, LLMNotConfigured):
        text = N_("Sorry, I can't read messages yet: this assistant is not set up.")
    else:
        text = N_("Sorry, I couldn't handle that message.")
    return plain(speaker(text))


def voice_note_unavailable(speaker: Speaker) -> str:
    """A WhatsApp voice note could not be downloaded."""
    return speaker(
        N_(
            "Sorry, I couldn't download your voice note — could you send it again or type "
            "your message?"
        )
    )


def unreadable(speaker: Speaker) -> str:
    """A WhatsApp message with neither text nor a voice note."""
    return speaker(N_("Sorry, I can only read text and voice notes."))
