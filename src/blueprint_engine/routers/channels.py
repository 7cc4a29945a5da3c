"""Conversational entry point ``POST /intent-parser`` (text or voice). The WhatsApp webhook is
in ``webhooks``, with the other signed endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from blueprint_engine import boundary
from blueprint_engine.errors import ValidationFailed
from blueprint_engine.http import (
    CallerDep,
    CheckedRoute,
    DispatcherDep,
    IntentsDep,
    PoolDep,
    SettingsDep,
)
from blueprint_engine.routers.schemas import TurnOut
from blueprint_engine.services import channel_service

router = APIRouter(route_class=CheckedRoute, tags=["channels"])
_TRUE = ("1", "true", "yes", "on")


@router.post("/intent-parser", response_model=TurnOut)
async def intent_parser(
    request: Request,
    caller: CallerDep,
    pool: PoolDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    intents: IntentsDep,
) -> dict[str, Any]:
    """One conversational turn from text or audio, in your session ``session_id`` (the same id
    from another user is their own, separate session).

    Multipart (``audio_file`` and/or ``text``) or form or JSON (``text``); ``session_id``
    required; ``reply_audio`` true adds a spoken reply (base64 mp3). Response: ``{status:
    completed|needs_input|no_action|failed, reply, analysis: {intent, entities, missing_slots,
    transcript}, run_id, trace_id, session_id, reply_audio?}``. Audio: flac, mp3, mp4, mpeg,
    mpga, m4a, ogg, wav, webm (else 415), at most 25 MB (else 413).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    audio = None
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_part_size=settings.max_audio_bytes + 1)
        boundary.check_form(form)
        fields: dict[str, Any] = {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
        upload = form.get("audio_file")
        if isinstance(upload, UploadFile):
            audio = (await upload.read(), upload.filename, upload.content_type)
    elif kind == "application/json":
        fields = await request.json()  # the boundary's parse (CheckedRoute)
        if not isinstance(fields, dict):
            raise ValidationFailed(["body"], "must be a JSON object")
    else:
        raise ValidationFailed(
            ["header", "content-type"],
            "send multipart/form-data (audio_file, text), a form, or JSON (text)",
        )
    session_ref = str(fields.get("session_id") or "").strip()
    if not session_ref or len(session_ref) > 200:
        raise ValidationFailed(["body", "session_id"], "required (1-200 characters)")
    text = fields.get("text")
    if audio is None and not (isinstance(text, str) and text.strip()):
        raise ValidationFailed(["body", "text"], "give text or an audio_file")
    reply_audio = (
        str(fields.get("reply_audio", "")).lower() in _TRUE or fields.get("reply_audio") is True
    )
    return await channel_service.voice_or_text(
        pool,
        dispatcher,
        settings,
        intents,
        session_ref=session_ref,
        owner=caller.user_id,
        text=text if isinstance(text, str) else None,
        audio=audio,
        reply_audio=reply_audio,
    )
