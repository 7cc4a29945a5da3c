"""The gettext catalogs replies are translated with (``src/blueprint_engine/locale``):
complete, in step with the code, and compiled by Babel as the app uses them.

A message added or changed in the code (``N_("…")``) fails these tests until
``scripts/translations.sh`` has extracted it and every catalog translates it with the same
``{values}`` as its English.
"""

from __future__ import annotations

from pathlib import Path
from string import Formatter

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from blueprint_engine.services import i18n

ROOT = Path(__file__).resolve().parents[1]
CATALOGS = [lang.catalog for lang in i18n.LANGUAGES.values() if lang.catalog]


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=locale)


def _ids(catalog: Catalog) -> set[str | tuple[str, ...]]:
    return {m.id for m in catalog if m.id}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name is not None}


def test_the_template_lists_exactly_the_messages_of_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    extracted = tmp_path / "messages.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", "pyproject.toml", "--no-location", "--omit-header",
         "-o", str(extracted), "src/blueprint_engine"]
    )  # fmt: skip
    committed = _ids(_read(i18n.LOCALE_DIR / "messages.pot"))
    in_code = _ids(_read(extracted))
    assert in_code == committed, (
        f"run scripts/translations.sh: new {sorted(map(str, in_code - committed))}, "
        f"gone {sorted(map(str, committed - in_code))}"
    )


@pytest.mark.parametrize("locale", CATALOGS)
def test_every_message_is_translated_with_the_same_values(locale: str) -> None:
    template = _read(i18n.LOCALE_DIR / "messages.pot")
    catalog = _read(i18n.LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po", locale)
    assert _ids(catalog) == _ids(template), "run scripts/translations.sh"
    assert not catalog.fuzzy, "the catalog's header is fuzzy"
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, f"{locale}: fuzzy {message.id!r}"
        english = message.id if isinstance(message.id, tuple) else (message.id,)
        translated = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(translated), f"{locale}: untranslated {message.id!r}"
        for text in translated:
            assert _fields(text) == _fields(english[-1]), f"{locale}: {message.id!r} -> {text!r}"
            assert text.count("\n") == english[0].count("\n"), f"{locale}: lines of {text!r}"
    assert not list(catalog.check()), "Babel's own checks"


def test_the_catalogs_are_compiled_as_the_app_reads_them() -> None:
    """What a process says is the .po file's translation (compiled by Babel in memory)."""
    for language in i18n.LANGUAGES.values():
        if language.catalog is None:
            continue
        catalog = _read(i18n.LOCALE_DIR / language.catalog / "LC_MESSAGES" / "messages.po")
        message = catalog.get("The rest is in the chat.")
        assert message is not None and message.string
        assert i18n.translate(language, "The rest is in the chat.") == message.string
        speaker = i18n.Speaker(language, "voice")
        one, many = (
            speaker.ngettext("{rupees} rupee", "{rupees} rupees", 1),
            speaker.ngettext("{rupees} rupee", "{rupees} rupees", 5),
        )
        assert one != many, "plural forms are read"
    assert i18n.translate(i18n.ENGLISH, "The rest is in the chat.") == "The rest is in the chat."
