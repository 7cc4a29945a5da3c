"""The caller's own account: profile and personal API keys."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from blueprint_engine.config import Settings
from blueprint_engine.errors import NotFound, ValidationFailed
from blueprint_engine.services import auth_service
from blueprint_engine.services.intent_service import (
    SlotValueError,
    normalize_email,
    normalize_phone,
)
from blueprint_engine.store import accounts as store
from blueprint_engine.store import channel_links as channel_links_store
from blueprint_engine.store.db import Pool

MAX_KEYS = 20


async def me(pool: Pool, caller: auth_service.Caller) -> dict[str, Any]:
    """``{"user": profile, "via", "api_keys": [...], "channels": [...]}`` for the caller
    (channels: the WhatsApp numbers linked to them)."""
    async with pool.connection() as conn:
        await store.ensure_user(conn, caller.user_id)
        user = await store.get_user(conn, caller.user_id)
        keys = await store.list_keys(conn, caller.user_id)
        channels = await channel_links_store.links_of(conn, caller.user_id)
    return {"user": user, "via": caller.via, "api_keys": keys, "channels": channels}


async def update_profile(
    pool: Pool, settings: Settings, user_id: UUID, changes: dict[str, str | None]
) -> dict[str, Any]:
    """Set the caller's ``display_name``, ``email`` or ``phone`` (``None`` clears one). The
    phone is stored in E.164 (``DEFAULT_PHONE_REGION`` for numbers without a country code).

    Raises:
        ValidationFailed: 422 naming the field (not a phone number, not an email address).
    """
    clean: dict[str, str | None] = {}
    for field, value in changes.items():
        if value is None or not value.strip():
            clean[field] = None
            continue
        if field == "display_name":
            clean[field] = value.strip()
            continue
        try:
            if field == "phone":
                clean[field] = normalize_phone(value, settings.default_phone_region)
            else:
                clean[field] = normalize_email(value)
        except SlotValueError as exc:
            raise ValidationFailed(["body", field], str(exc)) from None
    async with pool.connection() as conn:
        await store.ensure_user(conn, user_id)
        user = await store.update_profile(conn, user_id, clean)
    assert user is not None
    return dict(user)


async def create_key(pool: Pool, user_id: UUID, name: str) -> dict[str, Any]:
    """A new personal API key for the user; the key is in the answer and nowhere else.

    Raises:
        ValidationFailed: 422, the user already has :data:`MAX_KEYS` live keys.
    """
    key, prefix, digest = auth_service.new_api_key()
    async with pool.connection() as conn, conn.transaction():
        await store.ensure_user(conn, user_id)
        if len(await store.list_keys(conn, user_id)) >= MAX_KEYS:
            raise ValidationFailed(
                ["body"], f"at most {MAX_KEYS} live keys; revoke one you no longer use"
            )
        row = await store.create_key(conn, user_id, name=name, prefix=prefix, key_sha256=digest)
    return {**row, "key": key}


async def revoke_key(pool: Pool, user_id: UUID, key_id: UUID) -> None:
    """Revoke one of the user's keys: it stops working at once.

    Raises:
        NotFound: 404, no live key of this user with that id.
    """
    async with pool.connection() as conn:
        if not await store.revoke_key(conn, user_id, key_id):
            raise NotFound("api key", key_id)
