"""Conversation sessions."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query

from backend.app.http import Authenticated, CallerDep, CheckedRoute, PoolDep
from backend.app.routers.schemas import SessionOut, SessionPageOut
from backend.app.services import session_service

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


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(
    session_id: Annotated[UUID, Path(description="Session id")], pool: PoolDep, caller: CallerDep
) -> dict[str, Any]:
    """State (open/closed), pending intent and slots, every message in and out, and the summary
    stored when the session closed after inactivity."""
    return await session_service.get(pool, session_id, owner=caller.user_id)
