"""Conversation sessions."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from sse_starlette import EventSourceResponse

from blueprint_engine.errors import NotFound
from blueprint_engine.http import (
    Authenticated,
    CallerDep,
    CheckedRoute,
    CursorDep,
    HubDep,
    PoolDep,
    SettingsDep,
    sse,
)
from blueprint_engine.routers.schemas import SessionOut, SessionPageOut
from blueprint_engine.services import audio_store, session_service, stream_service

router = APIRouter(route_class=CheckedRoute, tags=["sessions"], dependencies=[Authenticated])


@router.get("/sessions", response_model=SessionPageOut)
async def list_sessions(
    pool: PoolDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Your sessions, latest activity first: channel, user, state, the request being filled,
    and the last message. ``{"sessions": [...], "next_cursor"}``."""
    return await session_service.page(pool, owner=caller.user_id, limit=limit, cursor=cursor)


SessionID = Annotated[UUID, Path(description="Session id")]


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(
    session_id: SessionID, pool: PoolDep, caller: CallerDep, settings: SettingsDep
) -> dict[str, Any]:
    """State (open/closed), pending intent and slots, every message in and out, and the summary
    stored when the session closed after inactivity. A message with kept audio (a voice note,
    a spoken reply) has its ``audio_url``: a signed Supabase Storage URL (valid
    ``AUDIO_URL_TTL_SECONDS``), or ``/sessions/{id}/messages/{message_id}/audio`` on this API."""
    session = await session_service.get(pool, session_id, owner=caller.user_id)
    return await audio_store.link_all(settings, session)


@router.get(
    "/sessions/{session_id}/messages/{message_id}/audio",
    response_class=FileResponse,
    responses={200: {"content": {"audio/*": {}}, "description": "The audio as it was kept."}},
)
async def get_message_audio(
    session_id: SessionID,
    message_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="Message id")],
    pool: PoolDep,
    caller: CallerDep,
    settings: SettingsDep,
) -> FileResponse:
    """The voice note or spoken reply kept with one of your messages on this machine
    (``AUDIO_DIR``); 404 if it has none here (audio kept in Supabase Storage is linked from
    ``GET /sessions/{id}`` with a signed URL instead)."""
    session = await session_service.get(pool, session_id, owner=caller.user_id)
    message = next((m for m in session["messages"] if m["id"] == message_id), None)
    if message is None:
        raise NotFound("message", message_id)
    path, content_type = audio_store.local_file(settings, message)
    return FileResponse(path, media_type=content_type)


@router.get("/sessions/{session_id}/stream", response_class=EventSourceResponse)
async def stream_session(
    session_id: SessionID, pool: PoolDep, hub: HubDep, caller: CallerDep, cursor: CursorDep
) -> EventSourceResponse:
    """Server-sent events of a conversation: ``message`` whenever a message is added — the
    inbound text or voice transcript, the question asked, the action's result — or filled in
    (what was understood, the reply once delivered), as it is then; the SSE id is its
    ``change_seq``. Messages after ``Last-Event-ID`` or ``?last_id=`` (default 0: the whole
    conversation) are sent first, then live. A keep-alive comment every 15 s."""
    frames = await stream_service.session(
        pool, hub, session_id, after_seq=cursor or 0, owner=caller.user_id
    )
    return sse(frames, "session")
