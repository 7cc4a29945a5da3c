"""Provider webhooks. Signatures are checked before anything is parsed or stored; then the
payload passes the input boundary (as 400 ``invalid_payload``), so these routes are plain
``APIRoute``s rather than ``CheckedRoute``s."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from blueprint_engine import boundary, metrics
from blueprint_engine.http import DispatcherDep, IntentsDep, PoolDep, SettingsDep
from blueprint_engine.services import channel_service, webhook_service
from blueprint_engine.services.auth_service import Authenticator

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/razorpay")
async def razorpay_webhook(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    x_razorpay_signature: Annotated[str | None, Header()] = None,
    x_razorpay_event_id: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Verify, dedupe and emit ``razorpay/<event>``. 400 on a bad signature (nothing stored)."""
    raw = await request.body()
    with metrics.webhook_delivery("razorpay"):
        return await webhook_service.receive_razorpay(
            pool, settings, dispatcher, raw, x_razorpay_signature, x_razorpay_event_id
        )


@router.post("/webhooks/razorpay/{credential_id}")
async def razorpay_account_webhook(
    credential_id: UUID,
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    x_razorpay_signature: Annotated[str | None, Header()] = None,
    x_razorpay_event_id: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """A user's own Razorpay account (``webhook_url`` of their ``razorpay`` credential):
    verified with that credential's webhook secret; its events reach only its owner's
    workflows and waits. 404 for an unknown credential; 400 on a bad signature (nothing
    stored)."""
    raw = await request.body()
    with metrics.webhook_delivery("razorpay"):
        return await webhook_service.receive_razorpay_for(
            pool,
            settings,
            dispatcher,
            credential_id,
            raw,
            x_razorpay_signature,
            x_razorpay_event_id,
        )


@router.post("/whatsapp", tags=["channels"])
async def whatsapp_webhook(
    request: Request,
    pool: PoolDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    intents: IntentsDep,
) -> Response:
    """Twilio's WhatsApp webhook (form-encoded) for the deployment's number. ``X-Twilio-Signature``
    is verified first (403, nothing stored, on mismatch); answers in TwiML. A sender acts for the
    user who linked the number (``link <code>``); unlinked senders are told how to link, and
    nothing runs."""
    return await _whatsapp(request, pool, dispatcher, settings, intents, None)


@router.post("/whatsapp/{credential_id}", tags=["channels"])
async def whatsapp_account_webhook(
    credential_id: UUID,
    request: Request,
    pool: PoolDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    intents: IntentsDep,
) -> Response:
    """Twilio's WhatsApp webhook for a user's own number (``webhook_url`` of their ``twilio``
    credential): verified with that account's auth token; only that user's linked senders act,
    and answers go out from that number. 404 for an unknown credential."""
    via = await channel_service.account(pool, settings, credential_id)
    return await _whatsapp(request, pool, dispatcher, settings, intents, via)


async def _whatsapp(
    request: Request,
    pool: PoolDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    intents: IntentsDep,
    via: channel_service.Account | None,
) -> Response:
    with metrics.webhook_delivery("twilio"):
        form = await request.form()
        params = {key: str(value) for key, value in form.items()}
        url = settings.public_base_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        channel_service.verify_twilio(
            settings, url, params, request.headers.get("X-Twilio-Signature", ""), via
        )
        with boundary.webhook_payload():
            boundary.check_form(form)
        authenticator: Authenticator = request.app.state.auth
        body = await channel_service.whatsapp(
            pool, dispatcher, settings, intents, params, local=authenticator.open, via=via
        )
    return Response(content=body, media_type="application/xml")
