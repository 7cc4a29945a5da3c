"""Your data as a whole: take it with you (``GET /me/export``), bring workflows into an
account (``POST /me/import``), and erase it (``DELETE /me/data``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from blueprint_engine.http import CallerDep, CheckedRoute, DispatcherDep, PoolDep, SettingsDep
from blueprint_engine.services import account_data_service

router = APIRouter(route_class=CheckedRoute, tags=["account"])


class ImportedVersionIn(BaseModel):
    """A version of an exported workflow (other fields of the export are ignored)."""

    model_config = ConfigDict(extra="ignore")

    version: int = Field(ge=1, le=1_000_000)
    blueprint: dict[str, Any] = Field(description="The blueprint (see GET /blueprint/schema).")


class ImportedWorkflowIn(BaseModel):
    """A workflow of an export (``GET /me/export``'s ``workflows``; other fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: UUID | None = Field(default=None, description="Its id in the exporting account.")
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    origin: str = Field(default="api", max_length=20)
    archived_at: datetime | None = None
    versions: list[ImportedVersionIn] = Field(min_length=1, max_length=500)


class ImportIn(BaseModel):
    """Body of POST /me/import: an export's ``workflows`` (the whole export may be sent when
    it fits in the body limit; runs and conversations are not imported)."""

    model_config = ConfigDict(extra="ignore")

    workflows: list[ImportedWorkflowIn] = Field(max_length=200)


class ImportedOut(BaseModel):
    """A workflow recreated from an export."""

    source_id: UUID | None = None
    id: UUID
    name: str
    versions: int


class SkippedOut(BaseModel):
    """A workflow of the export that was not imported, and why."""

    source_id: UUID | None = None
    reason: str


class ImportOut(BaseModel):
    """What an import made (inactive: activate them when you are ready) and skipped."""

    imported: list[ImportedOut]
    skipped: list[SkippedOut]


class ErasureOut(BaseModel):
    """What an erasure deleted, per table (zeros when there was nothing left: erasing twice
    is safe), how many unfinished runs it cancelled and how many workflows it deactivated."""

    user_id: UUID
    deleted: dict[str, int]
    cancelled_runs: int
    deactivated_workflows: int


_EXPORT_SCHEMA = {
    "type": "object",
    "description": "format, version, exported_at, user, api_keys (names and prefixes), "
    "channels, credentials (names, types, hints; never secrets), retention, workflows (with "
    "versions), runs (with logs), sessions (with messages), events.",
}


@router.get(
    "/me/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {"schema": _EXPORT_SCHEMA}}}},
)
async def export_data(pool: PoolDep, caller: CallerDep) -> StreamingResponse:
    """Everything of yours as one JSON document, streamed: profile, API keys (names only),
    linked numbers, connections (names, types and masked hints, never secrets), retention
    policy, workflows with every version, runs with their log rows, conversations with every
    message and transcript, and events. Export before ``DELETE /me/data``; ``POST
    /me/import`` brings its workflows into an account."""
    chunks = await account_data_service.export(pool, caller.user_id)
    return StreamingResponse(
        chunks,
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="blueprint-export-{caller.user_id}.json"'
        },
    )


@router.post("/me/import", status_code=201, response_model=ImportOut)
async def import_data(body: ImportIn, pool: PoolDep, caller: CallerDep) -> dict[str, Any]:
    """Recreate an export's workflows in your account, every version in order, inactive;
    archived ones and the system's are skipped (and listed). Connections are named, not
    copied: add them with ``POST /credentials`` (``GET /workflows/{id}`` lists what is
    missing). All or nothing: 422 names the workflow, version, node and field of each
    problem."""
    workflows = [w.model_dump(mode="json") for w in body.workflows]
    return await account_data_service.import_workflows(pool, caller.user_id, workflows)


@router.delete("/me/data", response_model=ErasureOut)
async def erase_data(
    pool: PoolDep, dispatcher: DispatcherDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """Erase everything you own, for good: first your API keys, linked numbers, connections
    and schedules go, your workflows are deactivated and your unfinished runs cancelled; then
    your workflows and versions, runs with their logs, conversations with their messages and
    transcripts and kept voice notes, events and webhook deliveries, and your profile. Answers
    with the rows deleted per table; calling again is safe (and finishes an erasure a failure
    cut short).
    Export first (``GET /me/export``): this cannot be undone. 403 with a personal API key."""
    caller.require_not_personal_key("erase your data")
    return await account_data_service.erase(pool, dispatcher, settings, caller.user_id)
