"""Conversation sessions."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path

from backend.app.http import Authenticated, CallerDep, CheckedRoute, PoolDep
from backend.app.routers.schemas import SessionOut
from backend.app.services import session_service

router = APIRouter(route_class=CheckedRoute, tags=["sessions"], dependencies=[Authenticated])


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(
    session_id: Annotated[UUID, Path(description="Session id")], pool: PoolDep, caller: CallerDep
) -> dict[str, Any]:
    """State (open/closed), pending intent and slots, every message in and out, and the summary
    stored when the session closed after inactivity."""
    return await session_service.get(pool, session_id, owner=caller.user_id)
