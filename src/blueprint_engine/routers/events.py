"""Inbound events: resume waits, start event-triggered workflows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from blueprint_engine.http import Authenticated, CallerDep, CheckedRoute, DispatcherDep, PoolDep
from blueprint_engine.routers.schemas import EventOut
from blueprint_engine.services import event_service

router = APIRouter(route_class=CheckedRoute, tags=["events"], dependencies=[Authenticated])


class EventIn(BaseModel):
    """Body of POST /events."""

    name: str = Field(min_length=1, max_length=200, examples=["razorpay/payment_link.paid"])
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="A JSON object (as Inngest events have): matched as event.data.<path> by"
        " waits, and the trigger data of the runs it starts. null is refused (422).",
    )


@router.post("/events", status_code=202, response_model=EventOut)
async def post_event(
    body: EventIn, pool: PoolDep, dispatcher: DispatcherDep, caller: CallerDep
) -> dict[str, Any]:
    """Deliver an event to your waits and your active workflows: ``{"event_id",
    "resumed_run_ids", "started_run_ids"}``."""
    result = await event_service.emit(pool, dispatcher, body.name, body.data, owner=caller.user_id)
    return {
        "event_id": result.event_id,
        "resumed_run_ids": result.resumed_run_ids,
        "started_run_ids": result.started_run_ids,
    }
