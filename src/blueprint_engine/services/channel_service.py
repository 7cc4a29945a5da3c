"""The two conversational entry points: Twilio WhatsApp webhooks and ``/intent-parser``."""

from __future__ import annotations

import base64
import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from blueprint_engine import metrics
from blueprint_engine.config import Settings
from blueprint_engine.errors import (
    AppError,
    LLMTimeout,
    LLMUnavailable,
    NotConfigured,
    SignatureRejected,
    ValidationFailed,
)
from blueprint_engine.integrations import twilio_media
from blueprint_engine.integrations.whatsapp import TwilioCredential, TwilioSettings
from blueprint_engine.services import (
    audio_store,
    conversation_service,
    credential_service,
    i18n,
    link_service,
    replies,
    session_service,
    speech_service,
)
from blueprint_engine.services.conversation_service import Turn
from blueprint_engine.services.intent_service import IntentService
from blueprint_engine.store import events as events_store
from blueprint_engine.store import sessions as sessions_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.runners import Dispatcher

log = logging.getLogger(__name__)


def turn_body(turn: Turn) -> dict[str, Any]:
    """The JSON answer of ``/intent-parser``."""
    return {
        "status": turn.status,
        "reply": turn.reply,
        "analysis": turn.analysis,
        "run_id": turn.run_id,
        "trace_id": turn.trace_id,
        "session_id": turn.session_id,
    }


async def voice_or_text(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intents: IntentService,
    *,
    session_ref: str,
    owner: UUID,
    text: str | None,
    audio: tuple[bytes, str | None, str | None] | None,
    reply_audio: bool,
) -> dict[str, Any]:
    """Handle an ``/intent-parser`` request of ``owner``: transcribe audio if given, then one
    turn in their voice session ``session_ref``.

    A failed model, action or engine is a ``failed`` turn with an apology (see
    :func:`conversation_service.handle`). The spoken reply (``reply_audio``: mp3, the words
    spoken and the voice) reads amounts as words and stays short (:func:`replies.spoken`), in
    a voice for the reply's language (:func:`speech_service.voice_for`); if it cannot be made,
    the answer comes without it.

    Raises:
        UnsupportedMedia: 415. PayloadTooLarge: 413. AppError: 422 for empty input.
        LLMNotConfigured: 503. LLMTimeout, LLMUnavailable: transcribing the audio failed.
    """
    transcript = None
    media: dict[str, Any] | None = None
    if audio is not None:
        data, filename, content_type = audio
        transcript = await speech_service.transcribe(
            data, settings, filename=filename, content_type=content_type
        )
        media = {"filename": filename, "content_type": content_type, "bytes": len(data)}
        kept = await audio_store.keep(
            settings, owner, data, filename=filename, content_type=content_type
        )
        if kept is not None:
            media["audio"] = kept
        text = transcript
    if not text or not text.strip():
        raise ValidationFailed(["body", "text"], "nothing to understand: the text is empty")
    turn = await conversation_service.handle(
        pool,
        dispatcher,
        settings,
        intents,
        channel="voice",
        user_ref=session_ref,
        owner=owner,
        text=text.strip(),
        transcript=transcript,
        media=media,
    )
    body = turn_body(turn)
    if reply_audio:
        try:
            audio_reply = await speech_service.speak(turn.speech, settings, language=turn.language)
        except (LLMTimeout, LLMUnavailable) as exc:  # the turn happened: its text reply stands
            log.warning("session %s: no spoken reply: %s", turn.session_id, exc)
        else:
            body["reply_audio"] = {**audio_reply, "text": turn.speech}
            await _keep_spoken_reply(pool, settings, owner, turn, body["reply_audio"])
    return body


async def _keep_spoken_reply(
    pool: Pool, settings: Settings, owner: UUID, turn: Turn, spoken: dict[str, Any]
) -> None:
    """Keep the spoken reply's audio with the reply message it speaks (``audio_store``)."""
    if turn.outbound_id is None:
        return
    data = base64.b64decode(spoken["base64"])
    kept = await audio_store.keep(
        settings, owner, data, filename=f"reply.{spoken['format']}", content_type=None
    )
    if kept is not None:
        async with pool.connection() as conn:
            await sessions_store.add_audio(conn, turn.outbound_id, kept)


@dataclass(frozen=True)
class Account:
    """A user's own Twilio number that messages come in on (``/whatsapp/{credential_id}``):
    whose it is, and the credential that verifies its webhooks and sends its answers."""

    owner: UUID
    credential: str
    twilio: TwilioCredential


async def account(pool: Pool, settings: Settings, credential_id: UUID) -> Account:
    """The Twilio credential a WhatsApp webhook is addressed to.

    Raises:
        NotFound: 404, no Twilio credential has this id. NotConfigured: 503 (no
            ``CREDENTIALS_KEY``, or it does not open the credential).
    """
    who, data = await credential_service.addressed(pool, settings, credential_id, TwilioCredential)
    return Account(who.owner, who.name, data)


def verify_twilio(
    settings: Settings,
    url: str,
    params: dict[str, str],
    signature: str,
    via: Account | None = None,
) -> None:
    """Check ``X-Twilio-Signature`` with the twilio SDK's ``RequestValidator`` over the public
    URL Twilio called (``PUBLIC_BASE_URL`` + path + query) and every POSTed parameter
    (https://www.twilio.com/docs/usage/webhooks/webhooks-security), with the auth token of
    ``via``'s account, else ``TWILIO_AUTH_TOKEN``.

    Raises:
        NotConfigured: 503 without ``TWILIO_AUTH_TOKEN``. SignatureRejected: 403.
    """
    if via is not None:
        token = via.twilio.auth_token.get_secret_value()
    elif (deployment := settings.tool(TwilioSettings).auth_token) is not None:
        token = deployment.get_secret_value()
    else:
        raise NotConfigured(
            "set TWILIO_AUTH_TOKEN to receive WhatsApp messages", code="whatsapp_not_configured"
        )
    validator = RequestValidator(token)
    if not signature or not validator.validate(url, params, signature):
        raise SignatureRejected("X-Twilio-Signature does not match this request")


def _basic(twilio: TwilioCredential) -> tuple[str, str]:
    return twilio.account_sid, twilio.auth_token.get_secret_value()


def twiml(text: str | None) -> str:
    """A TwiML ``<Response>``, with one message when ``text`` is given."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


async def whatsapp(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intents: IntentService,
    params: dict[str, str],
    *,
    local: bool,
    via: Account | None = None,
) -> str:
    """Handle a verified Twilio WhatsApp webhook; returns TwiML.

    ``via``: the message came in on a user's own Twilio number (a ``twilio`` credential), so
    only that user's linked senders act (for that user), voice notes are fetched with that
    account, and late answers are sent from it.

    The sender acts for the user their number is linked to (:mod:`link_service`); ``link
    <code>`` links it. An unlinked sender is told how to link (at most once per
    ``LINK_HINT_INTERVAL_SECONDS``) and nothing else happens: no session, no command. With
    ``local`` (no identity configured: development), an unlinked sender acts for the local
    user, who owns everything anyway.

    Idempotent on ``MessageSid`` (Twilio retries): a repeat gets an empty response. A voice note
    (``MediaContentType0`` audio/*) is downloaded (``twilio_media``) and transcribed; one that
    cannot be downloaded is recorded in the session and answered with a request to send it
    again or type. If handling crashes, the delivery is forgotten so Twilio's retry is
    processed; a known error (model not configured, engine down) is answered with an apology
    instead.
    """
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or ""
    sender = params.get("From", "")
    if not sid or not sender:
        raise AppError(
            "not a Twilio message webhook (MessageSid and From are required)",
            code="invalid_payload",
            details=[{"loc": ["body", "MessageSid"], "message": "required"}],
        )
    number = link_service.sender_number(sender)
    if number is None:
        raise AppError(
            "From is not a WhatsApp number (whatsapp:+<E.164>)",
            code="invalid_payload",
            details=[{"loc": ["body", "From"], "message": "not whatsapp:+<country><number>"}],
        )
    owner = await link_service.owner_of(pool, number)
    if via is not None and owner != via.owner:
        owner = None  # linked to another user, or to none: not a sender of this number's user
    if owner is None and local:
        owner = LOCAL_USER_ID
    async with pool.connection() as conn:
        # An unlinked sender's delivery is the deployment's (the local user's), in no session.
        if not await events_store.record_delivery(
            conn, "twilio", sid, "twilio/message", owner=owner or LOCAL_USER_ID
        ):
            metrics.delivery_outcome("duplicate")
            return twiml(None)

    async def speaker() -> i18n.Speaker:
        """Who is told a fixed answer (an apology): the sender, in their conversation's
        language (English before there is one, or if the database cannot say)."""
        language = i18n.ENGLISH
        if owner is not None:
            with contextlib.suppress(psycopg.Error):  # the pool's timeout is one too
                language = await conversation_service.language_of(pool, "whatsapp", sender, owner)
        return i18n.Speaker(language, "whatsapp", settings.default_phone_region)

    try:
        text = params.get("Body", "")
        code = link_service.link_code(text)
        if code is not None:
            return twiml(await link_service.redeem(pool, settings, number, code))
        if owner is None:
            metrics.delivery_outcome("unlinked")
            told = await link_service.hint(pool, settings, number)
            return twiml(link_service.UNLINKED if told else None)
        transcript = None
        media: dict[str, Any] | None = None
        if params.get("NumMedia", "0").strip() not in ("", "0"):
            kind = params.get("MediaContentType0", "")
            media = {"url": params.get("MediaUrl0"), "content_type": kind}
            if kind.startswith("audio/") and params.get("MediaUrl0"):
                try:
                    data = await twilio_media.download(
                        params["MediaUrl0"],
                        settings,
                        auth=None if via is None else _basic(via.twilio),
                    )
                except twilio_media.MediaUnavailable as exc:
                    log.warning("whatsapp message %s: voice note not downloaded: %s", sid, exc)
                    unavailable = replies.voice_note_unavailable(await speaker())
                    await session_service.record_unread(
                        pool,
                        dispatcher,
                        settings,
                        channel="whatsapp",
                        user_ref=sender,
                        owner=owner,
                        media={**media, "error": exc.reason},
                        reply=unavailable,
                        provider_message_id=sid,
                    )
                    return twiml(unavailable)
                transcript = await speech_service.transcribe(
                    data, settings, filename=None, content_type=kind
                )
                media = {**(media or {}), "bytes": len(data)}
                kept = await audio_store.keep(settings, owner, data, content_type=kind)
                if kept is not None:
                    media["audio"] = kept
                text = transcript
        if not text.strip():
            return twiml(replies.unreadable(await speaker()))
        turn = await conversation_service.handle(
            pool,
            dispatcher,
            settings,
            intents,
            channel="whatsapp",
            user_ref=sender,
            owner=owner,
            text=text.strip(),
            transcript=transcript,
            media=media,
            provider_message_id=sid,
            reply_to=sender,
            reply_via=None if via is None else via.credential,
        )
    except AppError as exc:
        log.warning("whatsapp message %s: %s", sid, exc.message)
        return twiml(replies.apology(exc, await speaker()).text)
    except Exception:
        async with pool.connection() as conn:
            await conn.execute(
                "delete from webhook_deliveries where provider = 'twilio' and delivery_id = %s",
                (sid,),
            )
        raise
    return twiml(turn.reply if turn.send else None)
