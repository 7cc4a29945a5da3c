"""Inbound provider webhooks: verify, dedupe, turn into events."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

import razorpay
from razorpay.errors import SignatureVerificationError

from blueprint_engine import boundary, metrics
from blueprint_engine.config import Settings
from blueprint_engine.errors import (
    InvalidHeader,
    InvalidPayload,
    NotConfigured,
    SignatureInvalid,
)
from blueprint_engine.integrations.razorpay_tool import RazorpayCredential, RazorpaySettings
from blueprint_engine.services import credential_service, event_service
from blueprint_engine.store import events as store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.runners import Dispatcher

_MAX_EVENT_CHARS = 200  # as POST /events allows; Razorpay's names are like "payment.captured"
_MAX_ID_CHARS = 200  # Razorpay's look like "Gb5kMCdcAZ8jJ8"; the id is a unique-index key


async def receive_razorpay(
    pool: Pool,
    settings: Settings,
    dispatcher: Dispatcher,
    raw_body: bytes,
    signature: str | None,
    event_id: str | None,
) -> dict[str, Any]:
    """Handle a Razorpay webhook delivery: signature, then payload, then dedupe.

    The signature (``X-Razorpay-Signature``: hex HMAC-SHA256 of the raw body with the webhook
    secret; https://razorpay.com/docs/webhooks/validate-test/#validate-webhooks) is checked
    before anything else. The payload then passes the input boundary and becomes the event
    ``razorpay/<event>``, recorded in the same transaction as the delivery.

    Dedupe: Razorpay delivers at least once, and a retry carries the same body and the same
    ``x-razorpay-event-id``, whose value "is unique per event"
    (https://razorpay.com/docs/webhooks/validate-test/#idempotency,
    https://razorpay.com/docs/webhooks/best-practices/#handle-duplicate-events). The signature
    covers only the body, so the header alone is no key: anyone holding one signed delivery
    could send it again under a new event id. A delivery is therefore a duplicate when its
    event id or the sha256 of its body was seen before; a genuine retry matches both.

    Owner: ``RAZORPAY_WEBHOOK_SECRET`` is the deployment's, so its events belong to the local
    user (the deployment's own account): they start that user's workflows and resume that
    user's waits. A user's own Razorpay account posts to :func:`receive_razorpay_for`.

    Returns:
        ``{"duplicate": bool, "event": name, "event_id"?, "started_run_ids", "resumed_run_ids"}``.

    Raises:
        NotConfigured: 503 when ``RAZORPAY_WEBHOOK_SECRET`` is unset.
        SignatureInvalid: 400, nothing stored (missing, not ASCII, or not the body's HMAC).
        InvalidPayload: 400, a signed body that is not a Razorpay event or that the boundary
            refuses (details name the field). InvalidHeader: 400, a malformed event id.
        EngineUnavailable: 503 after the delivery was stored and its runs marked failed
            (retry them with POST /runs/{id}/retry once the engine is back).
    """
    secret = settings.tool(RazorpaySettings).webhook_secret
    if secret is None:
        raise NotConfigured(
            "set RAZORPAY_WEBHOOK_SECRET to receive Razorpay webhooks",
            code="webhook_not_configured",
        )
    return await _receive(
        pool,
        dispatcher,
        raw_body,
        signature,
        event_id,
        secret=secret.get_secret_value(),
        owner=LOCAL_USER_ID,
        provider="razorpay",
    )


async def receive_razorpay_for(
    pool: Pool,
    settings: Settings,
    dispatcher: Dispatcher,
    credential_id: UUID,
    raw_body: bytes,
    signature: str | None,
    event_id: str | None,
) -> dict[str, Any]:
    """A delivery to ``/webhooks/razorpay/{credential_id}``: one user's Razorpay account.

    Verified with that credential's ``webhook_secret`` (decrypted for this check only); its
    events belong to the credential's owner, so they start only that user's workflows and
    resume only that user's waits. Deliveries are deduplicated per credential.

    Returns:
        As :func:`receive_razorpay`.

    Raises:
        NotFound: 404, no Razorpay credential has this id. NotConfigured: 503
        ``webhook_not_configured`` (the credential has no webhook secret) or
        ``credentials_key_missing``. The rest as :func:`receive_razorpay`.
    """
    account, data = await credential_service.addressed(
        pool, settings, credential_id, RazorpayCredential
    )
    if data.webhook_secret is None:
        raise NotConfigured(
            "this Razorpay credential has no webhook_secret: its owner adds one with PUT "
            "/credentials/<name> (with all its fields)",
            code="webhook_not_configured",
        )
    secret = data.webhook_secret.get_secret_value()
    return await _receive(
        pool,
        dispatcher,
        raw_body,
        signature,
        event_id,
        secret=secret,
        owner=account.owner,
        provider=f"razorpay:{credential_id}",
    )


async def _receive(
    pool: Pool,
    dispatcher: Dispatcher,
    raw_body: bytes,
    signature: str | None,
    event_id: str | None,
    *,
    secret: str,
    owner: UUID,
    provider: str,
) -> dict[str, Any]:
    """Verify with ``secret``, parse, dedupe (per ``provider``) and emit for ``owner``."""
    if not signature:
        raise SignatureInvalid("missing X-Razorpay-Signature header")
    try:  # the SDK's hmac.compare_digest raises TypeError on a non-ASCII str: never pass one
        valid = signature.isascii() and razorpay.Utility(None).verify_webhook_signature(
            raw_body.decode("utf-8"), signature, secret
        )
    except (SignatureVerificationError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise SignatureInvalid("X-Razorpay-Signature does not match the body")
    with boundary.webhook_payload():
        payload = boundary.loads(raw_body)
    event_type = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event_type, str) or not 0 < len(event_type) <= _MAX_EVENT_CHARS:
        raise InvalidPayload(
            "body is not a Razorpay event (JSON with an 'event' field)",
            details=[{"loc": ["body", "event"], "message": "required"}],
        )
    if event_id and len(boundary.check_header("x-razorpay-event-id", event_id)) > _MAX_ID_CHARS:
        raise InvalidHeader("x-razorpay-event-id", f"longer than {_MAX_ID_CHARS} characters")
    name = f"razorpay/{event_type}"
    body_sha256 = hashlib.sha256(raw_body).hexdigest()
    delivery = event_id or f"sha256:{body_sha256}"
    async with pool.connection() as conn, conn.transaction():
        if not await store.record_delivery(
            conn, provider, delivery, name, owner=owner, body_sha256=body_sha256
        ):
            metrics.delivery_outcome("duplicate")
            return {"duplicate": True, "event": name, "started_run_ids": [], "resumed_run_ids": []}
        result = await event_service.emit_in(
            conn, name, payload, source="razorpay", engine=dispatcher.engine, owner=owner
        )
        await store.link_delivery(conn, provider, delivery, result.event_id)
    await event_service.dispatch(pool, dispatcher, result)
    return {
        "duplicate": False,
        "event": name,
        "event_id": result.event_id,
        "started_run_ids": result.started_run_ids,
        "resumed_run_ids": result.resumed_run_ids,
    }
