"""Every command's declared wordings, for every combination of the details a user may give,
in every language: a confirmation states each consequential fact, every reply can be said,
and a spoken reply stays short. (The conversations themselves, through the API, are
``test_conversations``.)"""

from __future__ import annotations

from itertools import chain, combinations
from typing import Any

import pytest

from blueprint_engine.integrations import Slot
from blueprint_engine.services import i18n, replies
from blueprint_engine.services.i18n import Speaker
from blueprint_engine.services.intent_service import Intent, command_intents, workflow_intent

#: A value of each slot type, as normalisation stores it.
SAMPLE: dict[str, Any] = {
    "money": {"amount_minor": 120000, "currency": "INR"},
    "phone": "+919876543210",
    "email": "asha@example.com",
    "date": "2026-12-01",
    "text": "Asha Rao",
    "number": 3.0,
}
#: What a refund's lookup may find: nothing (sandbox), the amount, who paid, earlier refunds.
FACTS: list[dict[str, Any]] = [
    {},
    {"paid": {"amount_minor": 249900, "currency": "INR"}},
    {"paid": {"amount_minor": 249900, "currency": "INR"}, "payer": "+919812345678"},
    {
        "paid": {"amount_minor": 249900, "currency": "INR"},
        "refunded": {"amount_minor": 50000, "currency": "INR"},
        "remaining": {"amount_minor": 199900, "currency": "INR"},
        "payer": "asha@example.com",
    },
]
LANGUAGES = list(i18n.LANGUAGES.values())


def _subsets(slots: list[Slot]) -> list[tuple[Slot, ...]]:
    return list(chain.from_iterable(combinations(slots, n) for n in range(len(slots) + 1)))


def _fillings(intent: Intent) -> list[dict[str, Any]]:
    required = [s for s in intent.slots if s.required]
    optional = [s for s in intent.slots if not s.required]
    values = {"payment_id": "pay_29QQoUBi66xm2f"}
    return [
        {s.name: values.get(s.name, SAMPLE[s.type]) for s in (*required, *chosen)}
        for chosen in _subsets(optional)
    ]


def _written(value: Any, kind: str, speaker: Speaker) -> str:
    return replies._written(replies.Value(kind, value), speaker)


def _intents() -> list[Intent]:
    workflow = workflow_intent(
        "BOOK_VISIT",
        "Run the workflow 'Site visit'",
        (
            Slot("day", "date", True, "Which day?"),
            Slot("phone", "phone", False, "Whose number?", "customer phone"),
        ),
        confirm=True,
        workflow_name="Site visit for ACME Ltd",
    )
    return [*command_intents().values(), workflow]


@pytest.mark.parametrize("intent", _intents(), ids=lambda i: i.name)
@pytest.mark.parametrize("language", LANGUAGES, ids=lambda lang: lang.tag)
def test_every_reply_of_every_command_can_be_said(intent: Intent, language: i18n.Language) -> None:
    speaker = Speaker(language, "whatsapp")
    facts_sets = FACTS if intent.lookup is not None else [{}]
    for slots in _fillings(intent):
        for facts in facts_sets:
            said = [
                replies.result(intent, slots, facts, speaker),
                replies.failed(replies.failure(intent, slots, facts, speaker), "timeout", speaker),
                replies.request(intent, slots, speaker),
                replies.started(intent, slots, speaker),
            ]
            if intent.confirm:
                said.append(replies.confirmation(intent, slots, facts, speaker))
            for reply in said:
                assert "{" not in reply.text and "⟦reason⟧" not in reply.text, reply.text
    # with nothing said yet (a goodbye while the first question is pending)
    assert replies.request(intent, {}, speaker).text


@pytest.mark.parametrize("intent", [i for i in _intents() if i.confirm], ids=lambda i: i.name)
@pytest.mark.parametrize("language", LANGUAGES, ids=lambda lang: lang.tag)
def test_a_confirmation_states_every_consequential_fact(
    intent: Intent, language: i18n.Language
) -> None:
    """Every detail the user gave and every fact the lookup found is in the question: the
    amount, the full amount of a full refund, who gets it, which workflow and day."""
    speaker = Speaker(language, "whatsapp")
    kinds = {s.name: s.type for s in intent.slots}
    for slots in _fillings(intent):
        for facts in FACTS if intent.lookup is not None else [{}]:
            text = replies.confirmation(intent, slots, facts, speaker).text
            for name, value in slots.items():
                assert _written(value, kinds[name], speaker) in text, (name, text)
            for name, value in facts.items():
                if name == "remaining" and "amount" in slots:
                    continue  # a partial refund names its amount, not what is left
                assert _written(value, replies._kind(value), speaker) in text, (name, text)
            if intent.workflow_name:
                assert f"“{intent.workflow_name}”" in text


def test_a_full_refund_says_how_much_and_a_partial_one_of_how_much() -> None:
    [refund] = [i for i in command_intents().values() if i.name == "REFUND_PAYMENT"]
    speaker = Speaker(i18n.ENGLISH, "whatsapp")
    full = replies.confirmation(refund, {"payment_id": "pay_1"}, FACTS[1], speaker).text
    assert full.startswith("Refund the full ₹2,499 of payment pay_1?")
    part = {"payment_id": "pay_1", "amount": {"amount_minor": 50000, "currency": "INR"}}
    assert replies.confirmation(refund, part, FACTS[1], speaker).text.startswith(
        "Refund ₹500 of the ₹2,499 payment pay_1?"
    )
    rest = replies.confirmation(refund, {"payment_id": "pay_1"}, FACTS[3], speaker).text
    assert rest.startswith(
        "Refund the remaining ₹1,999 of payment pay_1? ₹500 of its ₹2,499 was refunded before."
    )


@pytest.mark.parametrize(
    ("minor", "currency", "language", "written", "spoken"),
    [
        (120000, "INR", i18n.ENGLISH, "₹1,200", "one thousand two hundred rupees"),
        (12000050, "INR", i18n.ENGLISH, "₹1,20,000.50", "one lakh twenty thousand rupees and "
         "fifty paise"),
        (100, "INR", i18n.ENGLISH, "₹1", "one rupee"),
        (249900, "INR", i18n.HINDI, "₹2,499", "दो हज़ार चार सौ निन्यान्बे रुपये"),
        (15000000, "INR", i18n.HINGLISH, "₹1,50,000", "एक लाख पचास हज़ार rupaye"),
        (500000, "USD", i18n.ENGLISH, "$5,000", "five thousand US dollars"),
    ],
)  # fmt: skip
def test_amounts_are_written_for_the_locale_and_spoken_as_words(
    minor: int, currency: str, language: i18n.Language, written: str, spoken: str
) -> None:
    speaker = Speaker(language, "voice")
    value = {"amount_minor": minor, "currency": currency}
    assert i18n.money(value, speaker) == written
    assert i18n.money(value, speaker, spoken=True) == spoken


def test_a_spoken_reply_keeps_to_about_thirty_words_and_its_question() -> None:
    speaker = Speaker(i18n.ENGLISH, "voice")
    short = replies.Said("Done.", "Done.")
    assert replies.spoken(short, speaker) == "Done."
    long = " ".join(f"Sentence number {n} is here." for n in range(12))
    said = replies.spoken(replies.Said(long, long, tail="Say yes or no."), speaker)
    assert said.endswith("The rest is in the chat. Say yes or no.")
    assert len(said.split()) <= replies.SPOKEN_WORDS + 6
    linked = replies.Said("Ready.\nhttps://x", "Ready.", cut=True)
    assert replies.spoken(linked, speaker) == "Ready. The rest is in the chat."


@pytest.mark.parametrize(
    ("text", "kind", "language"),
    [
        ("Bye!", "end", "en"),
        ("  STOP ", "end", "en"),
        ("ok, bye.", "end", "en"),
        ("अलविदा", "end", "hi"),
        ("बंद करो", "end", "hi"),
        ("khatam", "end", "hi-Latn"),
        ("continue", "continue", "en"),
        ("जारी रखें", "continue", "hi"),
        ("aage badho", "continue", "hi-Latn"),
        ("What can you do?", "help", "en"),
        ("मदद", "help", "hi"),
    ],
)
def test_control_words_are_recognised_in_every_language(
    text: str, kind: str, language: str
) -> None:
    assert replies.control(text, i18n.ENGLISH) == (kind, i18n.LANGUAGES[language])


@pytest.mark.parametrize("text", ["stop sending reminders to Asha", "end of month invoice", "bye2"])
def test_a_control_word_inside_a_request_is_not_one(text: str) -> None:
    assert replies.control(text, i18n.ENGLISH) is None


@pytest.mark.parametrize(
    ("tag", "language", "unsupported"),
    [
        ("en", "en", None),
        ("en-IN", "en", None),
        ("hi", "hi", None),
        ("hi-Deva", "hi", None),
        ("hi-Latn", "hi-Latn", None),
        ("Hinglish", "hi-Latn", None),
        ("fr", "en", "French"),
        ("ta-IN", "en", "Tamil"),
        ("und", "hi", None),
        ("", "hi", None),
        ("not a language", "hi", None),
    ],
)
def test_the_models_language_tag_picks_the_reply_language(
    tag: str, language: str, unsupported: str | None
) -> None:
    assert i18n.language_of(tag, i18n.HINDI) == (i18n.LANGUAGES[language], unsupported)
