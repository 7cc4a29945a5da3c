"""Executing blueprints and watching runs."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from blueprint_engine.http import (
    Authenticated,
    CallerDep,
    CheckedRoute,
    CursorDep,
    DispatcherDep,
    HubDep,
    PoolDep,
    sse,
)
from blueprint_engine.routers.schemas import ExecuteOut, LogsOut, RunOut, RunPageOut, RunStatus
from blueprint_engine.services import run_service, stream_service

router = APIRouter(route_class=CheckedRoute, tags=["runs"], dependencies=[Authenticated])
RunID = Annotated[UUID, Path(description="Run id")]


class ExecuteIn(BaseModel):
    """Body of POST /workflow/execute: exactly one of ``workflow_id`` and ``blueprint``."""

    workflow_id: UUID | None = None
    version: int | None = Field(default=None, ge=1, description="Default: latest version.")
    blueprint: dict[str, Any] | None = Field(default=None, description="Run an unsaved blueprint.")
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Trigger data, a JSON object ({{trigger_data...}})."
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)


@router.post(
    "/workflow/execute",
    status_code=202,
    response_model=ExecuteOut,
    responses={200: {"model": ExecuteOut, "description": "Idempotency key matched a run"}},
)
async def execute(
    body: ExecuteIn, pool: PoolDep, dispatcher: DispatcherDep, caller: CallerDep
) -> JSONResponse:
    """Queue a run. 202 ``{"run_id", "created"}``; a repeated idempotency key returns the first
    run with ``created: false`` (200)."""
    run_id, created = await run_service.start(
        pool,
        dispatcher,
        workflow_id=body.workflow_id,
        version=body.version,
        blueprint=body.blueprint,
        payload=body.payload,
        idempotency_key=body.idempotency_key,
        owner=caller.user_id,
    )
    return JSONResponse(
        {"run_id": str(run_id), "created": created, "status_url": f"/runs/{run_id}"},
        status_code=202 if created else 200,
    )


@router.get("/runs", response_model=RunPageOut)
async def list_runs(
    pool: PoolDep,
    caller: CallerDep,
    workflow_id: Annotated[UUID | None, Query(description="Runs of this workflow")] = None,
    status: Annotated[RunStatus | None, Query(description="Runs in this status")] = None,
    trace_id: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Runs one command started"),
    ] = None,
    parent_run_id: Annotated[
        UUID | None, Query(description="Child runs this run's steps started")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Your runs, newest first: ``{"runs": [...], "next_cursor"}``. Across the workflows you
    made (the system's session timers and channel commands left out), or of one workflow, or
    of one command (``trace_id`` links message -> intent -> run), or the child runs of one run
    (``parent_run_id``; each names the step that started it, ``parent_step_id``); optionally
    of one status."""
    return await run_service.page(
        pool,
        owner=caller.user_id,
        limit=limit,
        cursor=cursor,
        workflow_id=workflow_id,
        status=status,
        trace_id=trace_id,
        parent_run_id=parent_run_id,
    )


@router.get("/runs/stream", response_class=EventSourceResponse)
async def stream_runs(
    pool: PoolDep, hub: HubDep, caller: CallerDep, cursor: CursorDep
) -> EventSourceResponse:
    """Server-sent events: ``run`` whenever one of your runs (of the workflows you made) is
    queued or changes status, as it is then (the shape of ``GET /runs`` items plus
    ``change_seq``, the SSE id). Live only, unless resumed with ``Last-Event-ID`` or
    ``?last_id=`` (0: from the beginning). A keep-alive comment every 15 s."""
    frames = await stream_service.owner_runs(hub, owner=caller.user_id, after_seq=cursor)
    return sse(frames, "runs")


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(run_id: RunID, pool: PoolDep, caller: CallerDep) -> dict[str, Any]:
    """Run status, trigger data, output/error and every node's state in blueprint order (404
    for another user's run)."""
    return await run_service.get(pool, run_id, owner=caller.user_id)


@router.get("/runs/{run_id}/logs", response_model=LogsOut)
async def get_run_logs(
    run_id: RunID,
    pool: PoolDep,
    caller: CallerDep,
    after_id: Annotated[int, Query(ge=0, description="Return rows with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """``workflow_logs`` rows of the run in write order (poll with ``after_id``)."""
    logs = await run_service.logs(
        pool, run_id, after_id=after_id, limit=limit, owner=caller.user_id
    )
    return {"logs": logs}


@router.get("/runs/{run_id}/stream", response_class=EventSourceResponse)
async def stream_run(
    run_id: RunID, pool: PoolDep, hub: HubDep, caller: CallerDep, cursor: CursorDep
) -> EventSourceResponse:
    """Server-sent events: ``log`` (a ``workflow_logs`` row; the SSE id is the row id) as each
    step is written, and ``run`` (``status``, ``output``, ``error``, ``wake_at``) now and on
    every status change. Rows after ``Last-Event-ID`` (or ``?last_id=``) are replayed first,
    then the stream is live, with no gap and no duplicate. A keep-alive comment every 15 s;
    the stream ends after the run has finished. A client that falls far behind gets a
    ``retry:`` hint and the stream ends: reconnect with ``Last-Event-ID``."""
    frames = await stream_service.run(pool, hub, run_id, after_id=cursor or 0, owner=caller.user_id)
    return sse(frames, "run")


@router.post("/runs/{run_id}/cancel", response_model=RunOut)
async def cancel_run(
    run_id: RunID, pool: PoolDep, dispatcher: DispatcherDep, caller: CallerDep
) -> dict[str, Any]:
    """Cancel a run that has not finished (409 if it has)."""
    return await run_service.cancel(pool, dispatcher, run_id, owner=caller.user_id)


@router.post("/runs/{run_id}/retry", response_model=RunOut)
async def retry_run(
    run_id: RunID, pool: PoolDep, dispatcher: DispatcherDep, caller: CallerDep
) -> dict[str, Any]:
    """Resume a failed run from the step that failed (409 unless failed)."""
    return await run_service.retry(pool, dispatcher, run_id, owner=caller.user_id)
