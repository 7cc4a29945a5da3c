"""Provider webhooks. Signatures are checked before anything is parsed or stored."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from backend.app.http import DispatcherDep, PoolDep, SettingsDep
from backend.app.services import webhook_service

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
    return await webhook_service.receive_razorpay(
        pool, settings, dispatcher, raw, x_razorpay_signature, x_razorpay_event_id
    )
