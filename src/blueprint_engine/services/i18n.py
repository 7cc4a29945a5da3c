"""The user's language: the languages replies are written in, their gettext catalogs, and
values (money, dates, phone numbers) formatted for them with Babel, written or spoken.

Every text said to a WhatsApp or voice user is English in the code, marked with ``N_`` (tool
commands, :mod:`replies`), and translated by the gettext catalogs in ``src/blueprint_engine/locale``
(``<locale>/LC_MESSAGES/messages.po``). A process compiles a catalog the first time it needs
it, with Babel's own reader and compiler (what ``pybabel compile`` does, in memory): the
``.po`` files are the one source, so a fresh clone, the Docker image and the tests use exactly
what is in the tree and there is no ``.mo`` to rebuild or forget. ``scripts/translations.sh``
extracts new messages (``pybabel extract``) and merges them into the catalogs (``pybabel
update``); ``tests/test_translations.py`` fails while a message is missing, untranslated,
fuzzy, or names other values than its English.

The model that reads a message only says which language it is in (a BCP 47 tag, resolved by
:func:`language_of`); it never writes or translates a reply.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, get_currency_name, get_currency_precision
from babel.support import Translations
from num2words import num2words
from num_to_words import num_to_word

from blueprint_engine.integrations import N_

#: Where the catalogs are: ``<locale>/LC_MESSAGES/messages.po`` and the template
#: ``messages.pot``.
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "messages"


@dataclass(frozen=True)
class Language:
    """A language replies can be written in.

    Attributes:
        tag: BCP 47 (``en``, ``hi``, ``hi-Latn``), as the model names it.
        name: in English, for logs and notices.
        locale: Babel's locale id without a region (``hi_Latn``); formatting adds the
            deployment's region (``DEFAULT_PHONE_REGION``: ``hi_IN``, ``en_IN``).
        catalog: the catalog's directory under :data:`LOCALE_DIR`; None for English, the
            language the templates are written in.
        numbers: the language numbers are spoken in (Hinglish amounts are read in Hindi).
    """

    tag: str
    name: str
    locale: str
    catalog: str | None
    numbers: str


ENGLISH = Language("en", "English", "en", None, "en")
HINDI = Language("hi", "Hindi", "hi", "hi", "hi")
#: Hindi written in Latin letters, often mixed with English ("1200 ka payment link bhejo").
HINGLISH = Language("hi-Latn", "Hinglish", "hi_Latn", "hi_Latn", "hi")
LANGUAGES: dict[str, Language] = {lang.tag: lang for lang in (ENGLISH, HINDI, HINGLISH)}


def language_of(tag: str | None, current: Language) -> tuple[Language, str | None]:
    """The language to answer a message in, from the tag the model gave it.

    Returns:
        ``(language, None)`` for a language we write in; ``(ENGLISH, "French")`` for one we
        do not (its English name, from CLDR, for the notice); ``(current, None)`` when the
        tag says nothing (missing, ``und``, not a language): a "yes" or a number stays in the
        conversation's language.
    """
    text = (tag or "").strip().replace("_", "-")
    low = text.lower()
    if low == "hinglish" or low.startswith("hi-latn"):
        return HINGLISH, None
    primary = low.split("-")[0]
    if primary in ("hi", "hindi"):
        return HINDI, None
    if primary in ("en", "english"):
        return ENGLISH, None
    if not primary or primary in ("und", "zxx", "mul", "mis"):
        return current, None
    try:
        locale = Locale.parse(text, sep="-")
    except (ValueError, TypeError, UnknownLocaleError):
        return current, None
    return ENGLISH, Locale.parse("en").languages.get(locale.language) or text


@functools.cache
def _catalog(directory: str) -> Translations:
    """The compiled catalog of ``directory`` (``hi``): Babel reads the .po file and compiles
    it as ``pybabel compile`` would (fuzzy entries left out), once per process."""
    path = LOCALE_DIR / directory / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=directory)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def load_catalogs() -> None:
    """Compile every catalog now (at start-up, so no user waits for it)."""
    for language in LANGUAGES.values():
        if language.catalog is not None:
            _catalog(language.catalog)


def translate(language: Language, message: str) -> str:
    """``message`` (an English template) in ``language``; itself when untranslated."""
    if language.catalog is None:
        return message
    return str(_catalog(language.catalog).gettext(message))


# -- values, formatted for a language ------------------------------------------------------


@functools.cache
def locale_for(language: Language, region: str) -> Locale:
    """Babel's locale for ``language`` in ``region`` (``hi_IN``), else the language's own."""
    try:
        return Locale.parse(f"{language.locale}_{region}")
    except (ValueError, UnknownLocaleError):
        return Locale.parse(language.locale)


@dataclass(frozen=True)
class Speaker:
    """Who is told: their language and where (``whatsapp`` or ``voice``), and the
    deployment's region for formats (``DEFAULT_PHONE_REGION``)."""

    language: Language
    channel: str
    region: str = "IN"
    locale: Locale = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "locale", locale_for(self.language, self.region))

    def __call__(self, message: str) -> str:
        """``message`` in this speaker's language."""
        return translate(self.language, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The form of ``singular``/``plural`` for ``n`` in this speaker's language (its
        plural rules); named so that Babel's extractor finds both forms."""
        if self.language.catalog is None:
            return singular if n == 1 else plural
        return str(_catalog(self.language.catalog).ngettext(singular, plural, n))


def money(value: dict[str, Any], speaker: Speaker, *, spoken: bool = False) -> str:
    """``{"amount_minor": 120000, "currency": "INR"}`` as written in the locale (``₹1,200``;
    ``₹1,20,000.50``: Babel, CLDR patterns, no decimals for a whole amount) or as spoken
    ("one thousand two hundred rupees", "एक हज़ार दो सौ रुपये")."""
    currency = str(value["currency"])
    minor = int(value["amount_minor"])
    precision = get_currency_precision(currency)
    whole, cents = divmod(minor, 10**precision)
    if spoken and (currency == "INR" or not cents):
        return _spoken_money(whole, cents, currency, speaker)
    amount = Decimal(minor).scaleb(-precision)
    if cents:
        return format_currency(amount, currency, locale=speaker.locale)
    whole_pattern = re.sub(r"\.0+", "", speaker.locale.currency_formats["standard"].pattern)
    return format_currency(
        amount, currency, format=whole_pattern, currency_digits=False, locale=speaker.locale
    )


def _spoken_money(whole: int, cents: int, currency: str, speaker: Speaker) -> str:
    if currency == "INR":
        rupees = speaker.ngettext("{rupees} rupee", "{rupees} rupees", whole)
        said = rupees.format(rupees=number_words(whole, speaker))
        if cents:
            paise = speaker(N_("{rupees} and {paise} paise"))
            said = paise.format(rupees=said, paise=number_words(cents, speaker))
        return said
    name = get_currency_name(currency, count=whole, locale=speaker.locale)
    return f"{number_words(whole, speaker)} {name}"


def number_words(n: int, speaker: Speaker) -> str:
    """``n`` in words, for speech: Indian grouping in India ("one lakh twenty thousand"),
    Hindi with indic-num2words ("एक लाख बीस हज़ार"), English with num2words."""
    if speaker.language.numbers == "hi":
        return str(num_to_word(n, "hi", separator=" "))
    words = num2words(n, lang="en_IN" if speaker.region == "IN" else "en")
    return str(words).replace(",", "")


def phone(number: str, speaker: Speaker, *, spoken: bool = False) -> str:
    """An E.164 number grouped as people write it (``+91 98765 43210``), or spoken digit by
    digit in the user's language ("plus nine one, nine eight seven…")."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    written = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if not spoken:
        return written
    groups = [g for g in re.split(r"[^0-9]+", written) if g]
    digits = ", ".join(" ".join(number_words(int(d), speaker) for d in g) for g in groups)
    return speaker(N_("plus {digits}")).format(digits=digits)


def day(iso: str, speaker: Speaker) -> str:
    """An ISO date spelled out in the locale: ``Tuesday 1 December 2026``, ``मंगलवार 1 दिसंबर
    2026`` (the same written and spoken)."""
    return format_date(date.fromisoformat(iso), "EEEE d MMMM y", locale=speaker.locale)


def listing(items: list[str], speaker: Speaker) -> str:
    """``a, b and c`` in the locale (CLDR list patterns)."""
    return format_list(items, locale=speaker.locale) if items else ""


@dataclass(frozen=True)
class Phrase:
    """A message and the values it names, said later in the listener's language (a reason
    a value was refused: ``Phrase(N_("That's too long — at most {max_length} characters"),
    {"max_length": 1600})``)."""

    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def said(self, speaker: Speaker) -> str:
        """The phrase in ``speaker``'s language (in English if its translation is broken)."""
        try:
            return speaker(self.message).format_map(self.values)
        except (KeyError, ValueError, IndexError):
            return self.message.format_map(self.values)
