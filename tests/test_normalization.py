"""Entity normalisation for slots: money to minor units, phones to E.164, emails checked by
email-validator, dates as people say them to ISO 8601 in the configured time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from blueprint_engine.integrations import Slot
from blueprint_engine.services.intent_service import SlotValueError, normalize, normalize_email
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("said", "minor", "currency"),
    [
        ("5000 INR", 500000, "INR"),
        ("₹5,000", 500000, "INR"),
        ("5k rupees", 500000, "INR"),
        ("1.5 lakh", 15000000, "INR"),
        ("$20", 2000, "USD"),
        ("12.50 USD", 1250, "USD"),
        ("250 JPY", 250, "JPY"),
        ("Acme, 5000", 500000, "INR"),
    ],
)
def test_money_becomes_minor_units(said: str, minor: int, currency: str) -> None:
    value = normalize(Slot("amount", "money", True, "?"), said, make_settings("postgresql://x"))
    assert (value["amount_minor"], value["currency"]) == (minor, currency)


def test_phone_date_and_errors() -> None:
    settings = make_settings("postgresql://x")
    phone = Slot("to", "phone", True, "?")
    assert normalize(phone, "98765 43210", settings) == "+919876543210"
    assert normalize(phone, "whatsapp:+1 415 555 2671", settings) == "+14155552671"
    assert normalize(Slot("d", "date", True, "?"), "2026-12-01", settings) == "2026-12-01"
    for slot_type, bad in (("phone", "12"), ("money", "lots"), ("date", "soon"), ("email", "nope")):
        with pytest.raises(SlotValueError):
            normalize(Slot("x", slot_type, True, "?"), bad, settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("said", "iso"),
    [
        ("2026-12-01", "2026-12-01"),
        ("2026-12-01T10:30:00Z", "2026-12-01"),
        ("25 December 2026", "2026-12-25"),
        ("01/02/2027", "2027-02-01"),  # day first
        ("Dec 5 2026", "2026-12-05"),
    ],
)
def test_dates_in_the_forms_people_write_them(said: str, iso: str) -> None:
    settings = make_settings("postgresql://x")
    assert normalize(Slot("d", "date", True, "?"), said, settings) == iso


def test_relative_dates_resolve_in_the_configured_time_zone() -> None:
    """UTC+14 and UTC-11 are always on different dates; "today" and "tomorrow" follow the zone."""
    slot = Slot("d", "date", True, "?")
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        settings = make_settings("postgresql://x", default_timezone=zone)
        today = datetime.now(ZoneInfo(zone)).date()
        assert normalize(slot, "today", settings) == today.isoformat()
        assert normalize(slot, "tomorrow", settings) == (today + timedelta(days=1)).isoformat()
    with pytest.raises(ValidationError, match="unknown time zone"):
        make_settings("postgresql://x", default_timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("said", "stored"),
    [
        ("Asha@Example.com", "asha@example.com"),
        ("  ap@acme.example ", "ap@acme.example"),
        ("用户@例子.广告", "用户@例子.广告"),  # internationalised, as email-validator allows
    ],
)
def test_emails_email_validator_accepts(said: str, stored: str) -> None:
    assert normalize_email(said) == stored


@pytest.mark.parametrize(
    "bad",
    [
        "nope",
        "asha..k@example.com",
        ".asha@example.com",
        "asha@-bad.com",
        "a@b",
        "x" * 250 + "@e.co",
    ],
)
def test_emails_email_validator_refuses(bad: str) -> None:
    with pytest.raises(SlotValueError, match="doesn't look like an email address"):
        normalize_email(bad)


def test_a_date_longer_than_a_date_is_refused_before_parsing() -> None:
    """dateparser's cost grows with the text: a hostile slot value is refused unread."""
    slot = Slot("d", "date", True, "?")
    with pytest.raises(SlotValueError, match="too long to be a date"):
        normalize(slot, "next tuesday " * 400, make_settings("postgresql://x"))
