"""Conversation sessions."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from sse_starlette import EventSourceResponse

from backend.app.http import Authenticated, CallerDep, CheckedRoute, CursorDep, HubDep, PoolDep, sse
from backend.app.routers.schemas import SessionOut, SessionPageOut
from backend.app.services import session_service, stream_service

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
async def get_session(session_id: SessionID, pool: PoolDep, caller: CallerDep) -> dict[str, Any]:
    """State (open/closed), pending intent and slots, every message in and out, and the summary
    stored when the session closed after inactivity."""
    return await session_service.get(pool, session_id, owner=caller.user_id)


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
