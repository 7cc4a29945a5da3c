"""The caller's account: who am I, my profile, my API keys, my linked WhatsApp numbers."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from blueprint_engine.http import CallerDep, CheckedRoute, PoolDep, SettingsDep
from blueprint_engine.routers.schemas import (
    ApiKeyOut,
    LinkCodeOut,
    MeOut,
    NewApiKeyOut,
    ProfileOut,
)
from blueprint_engine.services import account_service, link_service

router = APIRouter(route_class=CheckedRoute, tags=["account"])


class ProfileIn(BaseModel):
    """Body of PATCH /me: the fields to change (null clears one)."""

    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=40, examples=["+919876543210"])


class LinkWhatsAppIn(BaseModel):
    """Body of POST /me/channels/whatsapp (may be empty: your profile phone)."""

    number: str | None = Field(
        default=None,
        max_length=40,
        description="The WhatsApp number to link, any common format; default your profile phone.",
        examples=["+919876543210"],
    )


class NewKeyIn(BaseModel):
    """Body of POST /me/api-keys."""

    name: str = Field(min_length=1, max_length=100, examples=["zapier", "my laptop"])


@router.get("/me", response_model=MeOut)
async def get_me(pool: PoolDep, caller: CallerDep) -> dict[str, Any]:
    """Who you are (``via``: how you authenticated), your profile, your API keys (names
    and prefixes only) and your linked WhatsApp numbers."""
    return await account_service.me(pool, caller)


@router.patch("/me", response_model=ProfileOut)
async def update_me(
    body: ProfileIn, pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """Change your display name, email or phone (E.164; used as ``{{ owner.phone }}``). Not
    with a personal API key: a leaked key must not redirect your "send me" alerts."""
    caller.require_not_personal_key("change the profile")
    changes = body.model_dump(exclude_unset=True)
    return await account_service.update_profile(pool, settings, caller.user_id, changes)


@router.post("/me/api-keys", status_code=201, response_model=NewApiKeyOut)
async def create_api_key(body: NewKeyIn, pool: PoolDep, caller: CallerDep) -> dict[str, Any]:
    """A new personal API key (``X-API-Key`` or ``Authorization: Bearer``). The key is in this
    answer only; it is stored as a hash. 403 with a personal API key: a leaked key must not
    mint its successor."""
    caller.require_not_personal_key("create API keys")
    return await account_service.create_key(pool, caller.user_id, body.name)


@router.get("/me/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(pool: PoolDep, caller: CallerDep) -> list[dict[str, Any]]:
    """Your live API keys (names and prefixes)."""
    me = await account_service.me(pool, caller)
    keys: list[dict[str, Any]] = me["api_keys"]
    return keys


@router.delete("/me/api-keys/{key_id}", status_code=204)
async def revoke_api_key(
    key_id: Annotated[UUID, Path(description="Key id")], pool: PoolDep, caller: CallerDep
) -> Response:
    """Revoke one of your keys; it stops working at once (404 if it is not yours)."""
    await account_service.revoke_key(pool, caller.user_id, key_id)
    return Response(status_code=204)


@router.post("/me/channels/whatsapp", status_code=201, response_model=LinkCodeOut)
async def link_whatsapp(
    pool: PoolDep, settings: SettingsDep, caller: CallerDep, body: LinkWhatsAppIn | None = None
) -> dict[str, Any]:
    """A one-time code that links a WhatsApp number to you: send ``link <code>`` from that
    number to the deployment's WhatsApp number within ``LINK_CODE_TTL_SECONDS`` (10 minutes).
    It works once, only from that number, and stops after 5 wrong codes. Asking again replaces
    it. 409 ``already_linked`` when the number is yours already; 403 with a personal API key
    (a linked number acts for you, so it is a credential too)."""
    caller.require_not_personal_key("link a WhatsApp number")
    number = body.number if body is not None else None
    return await link_service.issue_code(pool, settings, caller.user_id, number)


@router.delete("/me/channels/whatsapp/{number}", status_code=204)
async def unlink_whatsapp(
    number: Annotated[
        str, Path(max_length=40, description="The linked number, e.g. +919876543210")
    ],
    pool: PoolDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> Response:
    """Unlink one of your WhatsApp numbers: its messages stop acting for you at once (404 if it
    is not linked to you)."""
    await link_service.unlink(pool, settings, caller.user_id, number)
    return Response(status_code=204)
