"""Drafting from plain language (WorkflowArchitect), revising, and dry runs."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from blueprint_engine.http import (
    ArchitectDep,
    Authenticated,
    CallerDep,
    CheckedRoute,
    PoolDep,
    SettingsDep,
    ToolsDep,
)
from blueprint_engine.routers.schemas import DraftOut, DryRunOut
from blueprint_engine.services import drafting_service
from blueprint_engine.services.auth_service import owner_for

router = APIRouter(route_class=CheckedRoute, tags=["drafting"], dependencies=[Authenticated])
WorkflowID = Annotated[UUID, Path(description="Workflow id")]


class DraftIn(BaseModel):
    """Body of POST /workflow/draft."""

    prompt: str = Field(
        examples=["When a Razorpay payment succeeds, WhatsApp the customer a receipt"]
    )
    user_id: str | None = Field(
        default=None, max_length=64, description="Service keys only: the user to draft for."
    )


class ReviseIn(BaseModel):
    """Body of POST /workflows/{id}/revise."""

    instruction: str = Field(examples=["add a reminder two days later"])


class DryRunIn(BaseModel):
    """Body of POST /workflows/{id}/dry-run."""

    payload: dict[str, Any] = Field(default_factory=dict, description="Trigger data to try.")
    version: int | None = Field(default=None, ge=1, description="Default: latest.")
    events: dict[str, Any] = Field(
        default_factory=dict,
        description="Sample event data per wait_for_event node id; waits without one time out.",
    )


@router.post("/workflow/draft", status_code=201, response_model=DraftOut)
async def draft_workflow(
    body: DraftIn,
    pool: PoolDep,
    architect: ArchitectDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> dict[str, Any]:
    """Draft a blueprint from a sentence; saved as an inactive draft of yours. 422
    ``draft_invalid`` if the model never produced a valid one (details: errors and last
    draft)."""
    owner = await owner_for(pool, caller, body.user_id, ["body", "user_id"])
    return await drafting_service.draft(pool, architect, settings, prompt=body.prompt, owner=owner)


@router.post("/workflows/{workflow_id}/revise", status_code=201, response_model=DraftOut)
async def revise_workflow(
    workflow_id: WorkflowID,
    body: ReviseIn,
    pool: PoolDep,
    architect: ArchitectDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> dict[str, Any]:
    """Apply an edit instruction; the result is a new version (unchanged nodes keep their ids)."""
    return await drafting_service.revise(
        pool,
        architect,
        settings,
        workflow_id=workflow_id,
        instruction=body.instruction,
        owner=caller.user_id,
    )


@router.post("/workflows/{workflow_id}/dry-run", response_model=DryRunOut)
async def dry_run_workflow(
    workflow_id: WorkflowID,
    body: DryRunIn,
    pool: PoolDep,
    settings: SettingsDep,
    tools: ToolsDep,
    caller: CallerDep,
) -> dict[str, Any]:
    """Run a version with every tool sandboxed and delays/waits short-circuited; nothing is
    stored. Shows each node's resolved input and output."""
    return await drafting_service.dry_run(
        pool,
        settings,
        tools,
        workflow_id=workflow_id,
        version=body.version,
        payload=body.payload,
        events=body.events,
        owner=caller.user_id,
    )
