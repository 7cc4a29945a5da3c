"""Saved workflows: create, version, activate, list runs."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

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
from blueprint_engine.routers.schemas import HookUrlOut, RunPageOut, WorkflowOut, WorkflowPageOut
from blueprint_engine.services import hook_service, run_service, stream_service, workflow_service
from blueprint_engine.services.auth_service import owner_for

router = APIRouter(route_class=CheckedRoute, tags=["workflows"], dependencies=[Authenticated])
WorkflowID = Annotated[UUID, Path(description="Workflow id")]


class WorkflowIn(BaseModel):
    """Body of POST /workflows and PUT /workflows/{id}."""

    blueprint: dict[str, Any] = Field(description="The blueprint (see GET /blueprint/schema).")
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    user_id: str | None = Field(
        default=None, max_length=64, description="Service keys only: the user to act for."
    )


class ActivateIn(BaseModel):
    """Body of POST /workflows/{id}/activate."""

    version: int | None = Field(default=None, ge=1, description="Default: the latest version.")


@router.post("/workflows", status_code=201, response_model=WorkflowOut)
async def create_workflow(body: WorkflowIn, pool: PoolDep, caller: CallerDep) -> dict[str, Any]:
    """Validate and save a blueprint as a new workflow of yours (version 1, inactive). 422
    names node and field of every problem."""
    return await workflow_service.create(
        pool,
        body.blueprint,
        name=body.name,
        description=body.description,
        owner=await owner_for(pool, caller, body.user_id, ["body", "user_id"]),
    )


@router.get("/workflows", response_model=WorkflowPageOut)
async def list_workflows(
    pool: PoolDep,
    caller: CallerDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Part of the name or description")
    ] = None,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Your saved workflows, most recently changed first, each with its latest run:
    ``{"workflows": [...], "next_cursor"}``. Ad-hoc runs' blueprints, the system's own and
    archived workflows are not listed."""
    return await workflow_service.page(
        pool, owner=caller.user_id, limit=limit, cursor=cursor, search=q, active=active
    )


@router.delete("/workflows/{workflow_id}", status_code=204)
async def archive_workflow(workflow_id: WorkflowID, pool: PoolDep, caller: CallerDep) -> None:
    """Archive the workflow: deactivated, its schedule stopped, gone from the list, and no new
    runs or versions (409 ``workflow_archived``). It and its runs stay readable by id. 409
    ``workflow_busy`` (with ``details.run_ids``) while runs are queued, running or waiting:
    cancel them first, so nothing is left half-done."""
    await workflow_service.archive(pool, workflow_id, owner=caller.user_id)


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut)
async def get_workflow(
    workflow_id: WorkflowID,
    pool: PoolDep,
    caller: CallerDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """The workflow with a version's blueprint (default latest) and its version list."""
    return await workflow_service.get(pool, workflow_id, version, owner=caller.user_id)


@router.put("/workflows/{workflow_id}", response_model=WorkflowOut)
async def update_workflow(
    workflow_id: WorkflowID, body: WorkflowIn, pool: PoolDep, caller: CallerDep
) -> dict[str, Any]:
    """Save the blueprint as a new immutable version."""
    return await workflow_service.update(
        pool,
        workflow_id,
        body.blueprint,
        name=body.name,
        description=body.description,
        owner=await owner_for(pool, caller, body.user_id, ["body", "user_id"]),
    )


@router.post("/workflows/{workflow_id}/activate", response_model=WorkflowOut)
async def activate_workflow(
    workflow_id: WorkflowID,
    pool: PoolDep,
    caller: CallerDep,
    body: Annotated[ActivateIn | None, Body()] = None,
) -> dict[str, Any]:
    """Make a version live: its event/webhook trigger now starts runs."""
    version = body.version if body else None
    return await workflow_service.activate(pool, workflow_id, version, owner=caller.user_id)


@router.post("/workflows/{workflow_id}/deactivate", response_model=WorkflowOut)
async def deactivate_workflow(
    workflow_id: WorkflowID, pool: PoolDep, caller: CallerDep
) -> dict[str, Any]:
    """Stop starting runs from events (runs in progress continue)."""
    return await workflow_service.deactivate(pool, workflow_id, owner=caller.user_id)


@router.get("/workflows/{workflow_id}/hook", response_model=HookUrlOut)
async def get_hook(
    workflow_id: WorkflowID, pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """The workflow's hook (``POST /hooks/{workflow_id}/{token}``): ``url_hint``, ``live``
    (it answers now), ``signed``, times. The token is never shown again: rotate for a new one.
    404 ``hook_not_found`` when the workflow never had a webhook trigger."""
    return await hook_service.describe(pool, settings, workflow_id, owner=caller.user_id)


@router.post("/workflows/{workflow_id}/hook/rotate", response_model=HookUrlOut)
async def rotate_hook(
    workflow_id: WorkflowID, pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """Issue a new token: the answer's ``url`` is the new hook URL, shown this once; the old
    one stops working at once. Makes the hook if the latest or active version has a webhook
    trigger and it has none; else 404 ``hook_not_found``."""
    return await hook_service.rotate(pool, settings, workflow_id, owner=caller.user_id)


@router.get("/workflows/{workflow_id}/runs", response_model=RunPageOut)
async def list_workflow_runs(
    workflow_id: WorkflowID,
    pool: PoolDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Runs newest first: ``{"runs": [...], "next_cursor"}`` (as ``GET /runs?workflow_id=``)."""
    return await run_service.page(
        pool, owner=caller.user_id, limit=limit, cursor=cursor, workflow_id=workflow_id
    )


@router.get("/workflows/{workflow_id}/stream", response_class=EventSourceResponse)
async def stream_workflow(
    workflow_id: WorkflowID, pool: PoolDep, hub: HubDep, caller: CallerDep, cursor: CursorDep
) -> EventSourceResponse:
    """Server-sent events: ``run`` whenever one of the workflow's runs is queued or changes
    status (``id``, ``version``, ``status``, ``error``, ``trace_id``, ``wake_at``, times,
    ``change_seq``); the SSE id is its ``change_seq``. Live only, unless resumed with
    ``Last-Event-ID`` or ``?last_id=`` (0: from the beginning): every run that changed since is
    sent first, once, as it is now. To see every run without a gap, open the stream, then list
    ``GET /workflows/{id}/runs``. A keep-alive comment every 15 s."""
    frames = await stream_service.workflow(
        pool, hub, workflow_id, after_seq=cursor, owner=caller.user_id
    )
    return sse(frames, "workflow")
