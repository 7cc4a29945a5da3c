"""Credentials (connections): ``/credentials``. Data goes in, never comes out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from blueprint_engine.http import Authenticated, CallerDep, CheckedRoute, PoolDep, SettingsDep
from blueprint_engine.integrations import CREDENTIAL_TYPES, TOOL_REGISTRY, TRIGGER_CREDENTIAL_TYPES
from blueprint_engine.routers.schemas import CredentialOut, CredentialTypeOut
from blueprint_engine.services import credential_service
from blueprint_engine.workflows.nodes.base import CREDENTIAL_NAME

router = APIRouter(route_class=CheckedRoute, tags=["credentials"])

NamePath = Annotated[
    str, Path(pattern=CREDENTIAL_NAME, description="The credential's name", examples=["shop"])
]


class CredentialIn(BaseModel):
    """Body of POST /credentials."""

    name: str = Field(
        pattern=CREDENTIAL_NAME,
        description="What blueprints call it: letters, digits, '_', '-', '.'; up to 64.",
        examples=["shop_razorpay"],
    )
    type: str = Field(max_length=64, examples=["razorpay"], description="GET /credentials/types")
    data: dict[str, Any] = Field(description="The type's fields (GET /credentials/types).")


class CredentialDataIn(BaseModel):
    """Body of PUT /credentials/{name}: the new data (same type)."""

    data: dict[str, Any]


@router.get(
    "/credentials/types", response_model=list[CredentialTypeOut], dependencies=[Authenticated]
)
async def credential_types() -> list[dict[str, Any]]:
    """Every credential type: its fields as JSON Schema (secret ones are ``writeOnly``), the
    services that take it and the triggers that do (``webhook_secret``: webhook triggers)."""
    return [
        {
            "type": kind,
            "label": model.label,
            "schema": model.model_json_schema(),
            "services": [s for s, tool in TOOL_REGISTRY.items() if tool.accepts(kind)],
            "triggers": [t for t, models in TRIGGER_CREDENTIAL_TYPES.items() if model in models],
        }
        for kind, model in sorted(CREDENTIAL_TYPES.items())
    ]


@router.get("/credentials", response_model=list[CredentialOut])
async def list_credentials(
    pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> list[dict[str, Any]]:
    """Your credentials: name, type, dates and a masked hint — never the secret."""
    return await credential_service.list_for(pool, settings, caller.user_id)


@router.post("/credentials", status_code=201, response_model=CredentialOut)
async def create_credential(
    body: CredentialIn, pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """Store a credential, encrypted. 422 names the field ``data`` lacks or the type refuses;
    409 ``credential_exists``; 503 ``credentials_key_missing`` when the deployment has no
    ``CREDENTIALS_KEY``; 403 with a personal API key (a leaked key must not swap your Razorpay
    account for someone else's)."""
    caller.require_not_personal_key("change credentials")
    return await credential_service.create(
        pool, settings, caller.user_id, name=body.name, kind=body.type, data=body.data
    )


@router.put("/credentials/{name}", response_model=CredentialOut)
async def rotate_credential(
    name: NamePath, body: CredentialDataIn, pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """Replace a credential's data (rotate a key): its type stays; workflows naming it use the
    new data from their next step. 404 if you have none of that name."""
    caller.require_not_personal_key("change credentials")
    return await credential_service.replace(pool, settings, caller.user_id, name, data=body.data)


@router.delete("/credentials/{name}", status_code=204)
async def delete_credential(name: NamePath, pool: PoolDep, caller: CallerDep) -> Response:
    """Delete a credential. 409 ``credential_in_use`` (``details.workflows``) while an active
    workflow names it; 404 if you have none of that name."""
    caller.require_not_personal_key("change credentials")
    await credential_service.delete(pool, caller.user_id, name)
    return Response(status_code=204)
