"""Retention policy: how long your finished runs and closed conversations are kept, for all
your data and per workflow (the deployment's defaults otherwise)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from blueprint_engine.http import CallerDep, CheckedRoute, PoolDep, SettingsDep
from blueprint_engine.services import retention_service

router = APIRouter(route_class=CheckedRoute, tags=["retention"])
WorkflowID = Annotated[UUID, Path(description="Workflow id")]

#: Days to keep something; the deployment may allow less (``max_days``).
Days = Annotated[int | None, Field(ge=1, le=36500)]


class RunDaysIn(BaseModel):
    """Days to keep finished runs; null (or left out) inherits."""

    model_config = ConfigDict(extra="forbid")

    succeeded_runs_days: Days = Field(
        default=None, description="Days a succeeded run is kept after it ended."
    )
    failed_runs_days: Days = Field(
        default=None, description="Days a failed or cancelled run is kept after it ended."
    )


class OwnerRetentionIn(RunDaysIn):
    """Body of PUT /me/retention: your overrides of the deployment's policy (null or left out:
    the deployment's), at most ``max_days``."""

    conversations_days: Days = Field(
        default=None,
        description="Days a conversation (its messages and transcripts) is kept after it closed.",
    )


class WorkflowRetentionIn(RunDaysIn):
    """Body of PUT /workflows/{id}/retention: this workflow's overrides of your policy (null
    or left out: yours)."""


class RunDaysOut(BaseModel):
    """Days per kind of run (null: inherited)."""

    succeeded_runs_days: int | None = None
    failed_runs_days: int | None = None


class DaysOut(RunDaysOut):
    """Days per kind of data (null: inherited)."""

    conversations_days: int | None = None


class OwnerRetentionOut(BaseModel):
    """Your retention policy: your ``override``, what the pruner applies (``effective``), the
    ``deployment`` defaults and the longest you may ask for (``max_days``)."""

    override: DaysOut
    effective: DaysOut
    deployment: DaysOut
    max_days: int


class WorkflowRetentionOut(BaseModel):
    """A workflow's retention: its ``override``, what the pruner applies to its runs
    (``effective``: workflow, else yours, else the deployment's) and yours (``owner``)."""

    workflow_id: UUID
    override: RunDaysOut
    effective: RunDaysOut
    owner: RunDaysOut


@router.get("/me/retention", response_model=OwnerRetentionOut)
async def get_retention(pool: PoolDep, settings: SettingsDep, caller: CallerDep) -> dict[str, Any]:
    """How long your data is kept: succeeded runs, failed and cancelled runs (days after they
    ended) and conversations (days after they closed). Runs that are queued, running or
    waiting are never pruned."""
    return await retention_service.owner_retention(pool, settings, caller.user_id)


@router.put("/me/retention", response_model=OwnerRetentionOut)
async def put_retention(
    body: OwnerRetentionIn, pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """Replace your overrides (null or left out: the deployment's). A shorter period lets
    the next pruning pass delete what is now past it. 422 naming the field for days over
    ``max_days``; 403 with a personal API key (a leaked key must not shorten your history)."""
    caller.require_not_personal_key("change the retention policy")
    return await retention_service.set_owner_retention(
        pool, settings, caller.user_id, body.model_dump()
    )


@router.get("/workflows/{workflow_id}/retention", response_model=WorkflowRetentionOut)
async def get_workflow_retention(
    workflow_id: WorkflowID, pool: PoolDep, settings: SettingsDep, caller: CallerDep
) -> dict[str, Any]:
    """How long this workflow's finished runs are kept."""
    return await retention_service.workflow_retention(pool, settings, workflow_id, caller.user_id)


@router.put("/workflows/{workflow_id}/retention", response_model=WorkflowRetentionOut)
async def put_workflow_retention(
    workflow_id: WorkflowID,
    body: WorkflowRetentionIn,
    pool: PoolDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> dict[str, Any]:
    """Replace this workflow's overrides (null or left out: yours), e.g. keep a payment
    workflow's runs for a year. 403 with a personal API key."""
    caller.require_not_personal_key("change the retention policy")
    return await retention_service.set_workflow_retention(
        pool, settings, workflow_id, caller.user_id, body.model_dump()
    )
