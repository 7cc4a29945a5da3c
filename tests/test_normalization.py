"""Entity normalisation for slots: money to minor units, phones to E.164, dates to ISO 8601."""

from __future__ import annotations

import pytest

from backend.app.integrations import Slot
from backend.app.services.intent_service import SlotValueError, normalize
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
