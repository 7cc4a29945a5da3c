"""Linking a WhatsApp number to a user, so that its messages act for that user.

1. The user asks for a code over the API (:func:`issue_code`) for one number — theirs, in any
   common format; their profile phone by default. The code is six digits, works for
   ``LINK_CODE_TTL_SECONDS`` (10 minutes), once, and only from that number; it is stored as a
   salted SHA-256, never in clear.
2. They send ``link <code>`` from that number to the deployment's WhatsApp number;
   :func:`redeem` links (channel, number) -> user and says so in plain words.

Guessing is bounded by construction: a code is tied to the number it was made for, so a guess
from any other number finds nothing to guess against, and after :data:`MAX_ATTEMPTS` wrong
codes from the number its code stops working (at most 5 guesses in 10**6 per code issued).

One number belongs to at most one user. Linking it to another user needs the first to unlink
(``DELETE /me/channels/whatsapp/{number}``): a phone held for a minute by someone else must not
move the owner's conversations (and their commands' results) into a stranger's account.
Asking for a code never reveals whether a number is linked to someone else; only the number's
holder learns it, when the code is sent.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from typing import Any
from uuid import UUID

from blueprint_engine.config import Settings
from blueprint_engine.errors import Conflict, NotFound, ValidationFailed
from blueprint_engine.integrations.whatsapp import TwilioSettings
from blueprint_engine.services.intent_service import SlotValueError, normalize_phone
from blueprint_engine.store import accounts as accounts_store
from blueprint_engine.store import channel_links as store
from blueprint_engine.store.db import Pool

WHATSAPP = "whatsapp"
CODE_DIGITS = 6
#: Wrong codes sent from a number before its code stops working.
MAX_ATTEMPTS = 5
#: Live codes per user (one per number); more is a mistake or abuse.
MAX_LIVE_CODES = 5

#: ``link 123456``, ``Link 123 456``, ``link: 123-456``.
_LINK = re.compile(r"^\s*link\b\s*[:#]?\s*(\d{3})[\s-]?(\d{3})\s*[.!]?\s*$", re.IGNORECASE)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

HOW_TO_LINK = (
    "get a WhatsApp link code for this number from your account, then send "
    '"link" and the code here, e.g. "link 123456"'
)
UNLINKED = (
    f"This number isn't linked to an account yet, so I can't act on it. To link it, {HOW_TO_LINK}."
)
NO_CODE = (
    "There's no link code waiting for this number. A code works once, for a few minutes, and "
    f"only from the number it was made for. To link this number, {HOW_TO_LINK}."
)


def link_code(text: str) -> str | None:
    """The code of a ``link <code>`` message (six digits, spaces and dashes removed), else
    None: any other message is a conversation."""
    found = _LINK.match(text)
    return None if found is None else found.group(1) + found.group(2)


def sender_number(sender: str) -> str | None:
    """The E.164 number of a Twilio ``From`` (``whatsapp:+919876543210``), or None when it is
    not one."""
    number = sender.removeprefix("whatsapp:").strip()
    return number if _E164.match(number) else None


def _digest(code_id: UUID, number: str, code: str) -> str:
    """How a code is stored: SHA-256 of (its id, its number, the code). The id salts it; the
    protection is the short life and the bounded attempts, not the hash."""
    return hashlib.sha256(f"{code_id}|{number}|{code}".encode()).hexdigest()


async def issue_code(
    pool: Pool, settings: Settings, owner: UUID, number: str | None
) -> dict[str, Any]:
    """A fresh one-time code that links ``number`` (default: the user's profile phone) to the
    user when sent from it as ``link <code>``; replaces the user's previous code for that
    number. Returns ``{channel, number, code, text, send_to, expires_at}``; the code is in this
    answer only.

    Raises:
        ValidationFailed: 422, not a phone number, none given and no profile phone, or
            :data:`MAX_LIVE_CODES` other numbers waiting. Conflict: 409, already linked to you.
    """
    async with pool.connection() as conn:
        if number is None:
            user = await accounts_store.get_user(conn, owner)
            number = (user or {}).get("phone")
            if not number:
                raise ValidationFailed(
                    ["body", "number"], "give the WhatsApp number (your profile has no phone)"
                )
        try:
            number = normalize_phone(number, settings.default_phone_region)
        except SlotValueError as exc:
            raise ValidationFailed(["body", "number"], str(exc)) from None
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        code_id = uuid.uuid4()
        async with conn.transaction():
            if await store.owner_of(conn, WHATSAPP, number) == owner:
                raise Conflict(f"{number} is already linked to your account", code="already_linked")
            if await store.count_codes(conn, owner, besides=number) >= MAX_LIVE_CODES:
                raise ValidationFailed(
                    ["body", "number"],
                    f"at most {MAX_LIVE_CODES} numbers may wait for linking; use or let expire one",
                )
            expires_at = await store.put_code(
                conn,
                code_id,
                owner,
                WHATSAPP,
                number,
                _digest(code_id, number, code),
                settings.link_code_ttl_seconds,
            )
    send_to = settings.tool(TwilioSettings).whatsapp_from
    return {
        "channel": WHATSAPP,
        "number": number,
        "code": code,
        "text": f"link {code}",
        "send_to": send_to.removeprefix("whatsapp:") if send_to else None,
        "expires_at": expires_at,
    }


async def redeem(pool: Pool, settings: Settings, number: str, code: str) -> str | None:
    """Handle ``link <code>`` sent from ``number``: link it to the user whose live code it is.
    Returns the reply in plain words, or None to stay silent: an unlinked sender with no code
    waiting is told how to link as rarely as any unlinked sender (:func:`hint`)."""
    async with pool.connection() as conn, conn.transaction():
        codes = await store.live_codes(conn, WHATSAPP, number, MAX_ATTEMPTS)
        linked_to = await store.owner_of(conn, WHATSAPP, number)
        if not codes:
            if linked_to is not None:
                return "This number is already linked to your account."
            interval = settings.link_hint_interval_seconds
            return NO_CODE if await store.claim_hint(conn, WHATSAPP, number, interval) else None
        match = next(
            (
                c
                for c in codes
                if secrets.compare_digest(c["code_sha256"], _digest(c["id"], number, code))
            ),
            None,
        )
        if match is None:
            attempts = await store.count_wrong(conn, [c["id"] for c in codes])
            left = MAX_ATTEMPTS - attempts
            if left <= 0:
                return (
                    "That code doesn't match, and that was the last try: this code no longer "
                    "works. Ask for a new one in your account."
                )
            tries = "1 try" if left == 1 else f"{left} tries"
            return f"That code doesn't match. Check it and send it again ({tries} left)."
        owner = UUID(str(match["owner_id"]))
        if linked_to is not None and linked_to != owner:
            return (
                "This number is linked to another account. Unlink it there first, then send "
                "the code again."
            )
        await store.drop_code(conn, match["id"])
        if linked_to == owner:
            return "This number is already linked to your account."
        if not await store.link(conn, owner, WHATSAPP, number):  # linked meanwhile
            return "This number is linked to another account. Unlink it there first."
        user = await accounts_store.get_user(conn, owner)
    who = (user or {}).get("display_name") or (user or {}).get("email") or "your account"
    return f"Linked: this number now acts for {who}. Tell me what you need."


async def hint(pool: Pool, settings: Settings, number: str) -> bool:
    """Whether to tell an unlinked sender how to link now (at most once per
    ``LINK_HINT_INTERVAL_SECONDS`` per number, recorded in the database)."""
    async with pool.connection() as conn:
        return await store.claim_hint(conn, WHATSAPP, number, settings.link_hint_interval_seconds)


async def owner_of(pool: Pool, number: str) -> UUID | None:
    """The user a WhatsApp number is linked to, or None."""
    async with pool.connection() as conn:
        return await store.owner_of(conn, WHATSAPP, number)


async def links(pool: Pool, owner: UUID) -> list[dict[str, Any]]:
    """The user's linked numbers: ``[{id, channel, number, linked_at}]``."""
    async with pool.connection() as conn:
        return [dict(row) for row in await store.links_of(conn, owner)]


async def unlink(pool: Pool, settings: Settings, owner: UUID, number: str) -> None:
    """Unlink one of the user's numbers (and drop their code for it): its messages stop acting
    for them at once.

    Raises:
        NotFound: 404, the number is not linked to this user.
    """
    try:
        number = normalize_phone(number, settings.default_phone_region)
    except SlotValueError:
        raise NotFound("whatsapp link", number) from None
    async with pool.connection() as conn, conn.transaction():
        if not await store.unlink(conn, owner, WHATSAPP, number):
            raise NotFound("whatsapp link", number)
