"""Inbound provider webhooks: verify, dedupe, turn into events."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import razorpay
from razorpay.errors import SignatureVerificationError

from backend.app.config import Settings
from backend.app.errors import AppError, NotConfigured, SignatureInvalid
from backend.app.services import event_service
from backend.app.store import events as store
from backend.app.store.db import Pool
from backend.app.workflows.runners import Dispatcher


async def receive_razorpay(
    pool: Pool,
    settings: Settings,
    dispatcher: Dispatcher,
    raw_body: bytes,
    signature: str | None,
    delivery_id: str | None,
) -> dict[str, Any]:
    """Handle a Razorpay webhook delivery.

    The signature (``X-Razorpay-Signature``: hex HMAC-SHA256 of the raw body with the webhook
    secret; https://razorpay.com/docs/webhooks/validate-test/) is checked before anything else.
    Deliveries are deduped on ``x-razorpay-event-id`` (sha256 of the body when absent), and the
    payload becomes the event ``razorpay/<event>`` in the same transaction.

    Returns:
        ``{"duplicate": bool, "event": name, "event_id"?, "started_run_ids", "resumed_run_ids"}``.

    Raises:
        NotConfigured: 503 when ``RAZORPAY_WEBHOOK_SECRET`` is unset.
        SignatureInvalid: 400, nothing stored. AppError(400): body is not a Razorpay event.
        EngineUnavailable: 503 after the delivery was stored and its runs marked failed
            (retry them with POST /runs/{id}/retry once the engine is back).
    """
    secret = settings.razorpay_webhook_secret
    if secret is None:
        raise NotConfigured(
            "set RAZORPAY_WEBHOOK_SECRET to receive Razorpay webhooks",
            code="webhook_not_configured",
        )
    if not signature:
        raise SignatureInvalid("missing X-Razorpay-Signature header")
    try:
        body_text = raw_body.decode("utf-8")
        razorpay.Utility(None).verify_webhook_signature(
            body_text, signature, secret.get_secret_value()
        )
    except (SignatureVerificationError, UnicodeDecodeError):
        raise SignatureInvalid("X-Razorpay-Signature does not match the body") from None
    try:
        payload = json.loads(body_text)
        event_type = payload["event"]
        if not isinstance(event_type, str) or not event_type:
            raise TypeError
    except (json.JSONDecodeError, KeyError, TypeError):
        raise AppError(
            "body is not a Razorpay event (JSON with an 'event' field)",
            code="invalid_payload",
            details=[{"loc": ["body", "event"], "message": "required"}],
        ) from None
    name = f"razorpay/{event_type}"
    delivery = delivery_id or "sha256:" + hashlib.sha256(raw_body).hexdigest()
    async with pool.connection() as conn, conn.transaction():
        if not await store.record_delivery(conn, "razorpay", delivery, name):
            return {"duplicate": True, "event": name, "started_run_ids": [], "resumed_run_ids": []}
        result = await event_service.emit_in(
            conn, name, payload, source="razorpay", engine=dispatcher.engine
        )
        await store.link_delivery(conn, "razorpay", delivery, result.event_id)
    await event_service.dispatch(pool, dispatcher, result)
    return {
        "duplicate": False,
        "event": name,
        "event_id": result.event_id,
        "started_run_ids": result.started_run_ids,
        "resumed_run_ids": result.resumed_run_ids,
    }
