"""Saving, versioning and activating workflows."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from blueprint_engine.errors import Conflict, NotFound
from blueprint_engine.services import call_graph, credential_service, hook_service, paging
from blueprint_engine.store import schedules as schedules_store
from blueprint_engine.store import workflows as store
from blueprint_engine.store.db import Conn, Pool
from blueprint_engine.workflows.nodes import ScheduleTrigger
from blueprint_engine.workflows.schedule import next_fire_time
from blueprint_engine.workflows.schema import Blueprint, validate_blueprint_async


def stored_form(blueprint: Blueprint) -> dict[str, Any]:
    """The JSON a blueprint is stored and served as."""
    return blueprint.model_dump(mode="json", exclude_none=True)


def refuse_archived(workflow: Any) -> None:
    """Raises:
    Conflict: 409 ``workflow_archived`` when the workflow row is archived (it starts no runs
    and takes no new versions or activation)."""
    if workflow["archived_at"] is not None:
        raise Conflict(f"workflow {workflow['id']} is archived", code="workflow_archived")


async def create_in(
    conn: Conn,
    blueprint: Blueprint,
    *,
    name: str | None,
    description: str | None,
    owner: UUID,
    origin: str,
) -> dict[str, Any]:
    """Insert the owner's workflow + version 1 for an already validated blueprint (inside a
    transaction)."""
    trigger = blueprint.trigger
    row = await store.create(
        conn,
        owner=owner,
        name=name or blueprint.name or "Untitled workflow",
        description=description or blueprint.description,
        origin=origin,
        blueprint=stored_form(blueprint),
        trigger_kind=trigger.trigger,
        trigger_event=trigger.event_name(),
    )
    return dict(row)


def content_sha256(stored: dict[str, Any]) -> str:
    """Hex SHA-256 of a stored blueprint as canonical JSON (sorted keys, no spaces): equal
    blueprints hash alike whatever their key order."""
    canonical = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def store_once_in(
    conn: Conn, blueprint: Blueprint, *, owner: UUID, origin: Literal["adhoc", "channel"]
) -> dict[str, Any]:
    """The owner's workflow of ``origin`` for this validated, unsaved blueprint: stored (version
    1) on first use, then found by content (inside the transaction that starts its run, so a
    failed start leaves nothing behind).

    Raises:
        Conflict: 409 ``workflow_archived``: the stored copy kept being archived meanwhile.
    """
    trigger = blueprint.trigger
    stored = stored_form(blueprint)
    row = await store.create_once(
        conn,
        owner=owner,
        name=blueprint.name or "Untitled workflow",
        description=blueprint.description,
        origin=origin,
        blueprint=stored,
        content_sha256=content_sha256(stored),
        trigger_kind=trigger.trigger,
        trigger_event=trigger.event_name(),
    )
    if row is None:
        raise Conflict("the stored blueprint was archived meanwhile", code="workflow_archived")
    return dict(row)


async def create(
    pool: Pool, data: Any, *, name: str | None, description: str | None, owner: UUID
) -> dict[str, Any]:
    """Validate and save a blueprint as a new workflow of ``owner`` (version 1, inactive). A
    webhook trigger gets the workflow its hook; this response's ``hook.path`` shows its token,
    once.

    Raises:
        InvalidBlueprint: 422 with every problem, naming node and field.
    """
    blueprint = await validate_blueprint_async(data)
    async with pool.connection() as conn, conn.transaction():
        await credential_service.check_references(conn, blueprint, owner)
        await call_graph.check_calls(conn, blueprint, owner)
        row = await create_in(
            conn, blueprint, name=name, description=description, owner=owner, origin="api"
        )
        token = await hook_service.ensure_in(conn, row["id"], blueprint.trigger)
    return _showing(await get(pool, row["id"], owner=owner), token)


def _showing(workflow: dict[str, Any], token: str | None) -> dict[str, Any]:
    """``workflow`` whose ``hook.path`` shows the token its hook was just made with, if any."""
    if token is not None and workflow["hook"] is not None:
        workflow["hook"]["path"] = hook_service.path(workflow["id"], token)
    return workflow


async def update(
    pool: Pool,
    workflow_id: UUID,
    data: Any,
    *,
    name: str | None,
    description: str | None,
    owner: UUID,
    check_credentials: bool = True,
) -> dict[str, Any]:
    """Save a new version. The active version stays pinned until activated again.
    ``check_credentials`` False: a credential the owner lacks is saved as named (a revised
    draft warns of it instead; :func:`get` lists it as not present). A webhook trigger makes
    the workflow's hook if it has none (shown once, as in :func:`create`).

    Raises:
        InvalidBlueprint: 422 (also a named credential that is missing, not the owner's or of
            a type the tool does not take). NotFound: 404. Conflict: 409 ``workflow_archived``.
    """
    blueprint = await validate_blueprint_async(data)
    trigger = blueprint.trigger
    async with pool.connection() as conn, conn.transaction():
        current = await store.get(conn, workflow_id, owner)
        if current is None:
            raise NotFound("workflow", workflow_id)
        refuse_archived(current)
        if check_credentials:
            await credential_service.check_references(conn, blueprint, owner)
        await call_graph.check_calls(conn, blueprint, owner, workflow_id)
        row = await store.add_version(
            conn,
            workflow_id,
            owner=owner,
            blueprint=stored_form(blueprint),
            trigger_kind=trigger.trigger,
            trigger_event=trigger.event_name(),
            name=name,
            description=description,
        )
        if row is None:
            raise NotFound("workflow", workflow_id)
        token = await hook_service.ensure_in(conn, workflow_id, trigger)
    return _showing(await get(pool, workflow_id, owner=owner), token)


async def get(
    pool: Pool, workflow_id: UUID, version: int | None = None, *, owner: UUID
) -> dict[str, Any]:
    """The owner's workflow with one version's blueprint (default: latest), the version list,
    the credentials it needs and its ``hook`` (None unless it has one; see
    :func:`hook_service.public`).

    Raises:
        NotFound: unknown workflow or version, or another user's.
    """
    async with pool.connection() as conn:
        row = await store.get(conn, workflow_id, owner)
        if row is None:
            raise NotFound("workflow", workflow_id)
        wanted = version or row["latest_version"]
        version_row = await store.get_version(conn, workflow_id, wanted)
        if version_row is None:
            raise NotFound("workflow version", f"{workflow_id}@{wanted}")
        versions = await store.list_versions(conn, workflow_id)
        needs = await credential_service.requirements(
            conn, Blueprint.model_validate(version_row["blueprint"]), owner
        )
        hook = await hook_service.of(conn, workflow_id, owner)
    return {
        **row,
        "active": row["active_version"] is not None,
        "version": wanted,
        "blueprint": version_row["blueprint"],
        "versions": versions,
        "credentials": needs,
        "hook": hook,
    }


async def activate(
    pool: Pool, workflow_id: UUID, version: int | None, *, owner: UUID
) -> dict[str, Any]:
    """Make ``version`` (default: latest) the live version: events and intents start it, a
    schedule trigger starts firing (next time after now), and a webhook trigger's hook answers
    (made now if the workflow has none: this response's ``hook.path`` shows its token, once).

    Raises:
        NotFound: unknown workflow or version. Conflict: 409 ``workflow_archived``.
        InvalidBlueprint: 422, a credential it names is missing (deleted, or a draft's that
            was never made) or of a type its tool does not take.
    """
    current = await get(pool, workflow_id, version, owner=owner)
    refuse_archived(current)
    blueprint = Blueprint.model_validate(current["blueprint"])
    trigger = blueprint.trigger
    async with pool.connection() as conn, conn.transaction():
        await credential_service.check_references(conn, blueprint, owner)
        await call_graph.check_calls(conn, blueprint, owner, workflow_id)
        await store.set_active_version(conn, workflow_id, current["version"], owner)
        if isinstance(trigger, ScheduleTrigger) and trigger.cron:
            first = next_fire_time(trigger.cron, trigger.timezone, datetime.now(UTC))
            await schedules_store.upsert(
                conn, workflow_id, current["version"], trigger.cron, trigger.timezone, first
            )
        else:
            await schedules_store.delete(conn, workflow_id)
        token = await hook_service.ensure_in(conn, workflow_id, trigger)
    return _showing(await get(pool, workflow_id, owner=owner), token)


async def deactivate(pool: Pool, workflow_id: UUID, *, owner: UUID) -> dict[str, Any]:
    """Stop starting runs from events, intents and schedules; running runs continue.

    Raises:
        NotFound: unknown workflow.
    """
    async with pool.connection() as conn, conn.transaction():
        if await store.set_active_version(conn, workflow_id, None, owner) is None:
            raise NotFound("workflow", workflow_id)
        await schedules_store.delete(conn, workflow_id)
    return await get(pool, workflow_id, owner=owner)


async def page(
    pool: Pool,
    *,
    owner: UUID,
    limit: int,
    cursor: str | None,
    search: str | None,
    active: bool | None,
) -> dict[str, Any]:
    """A page of the owner's saved workflows, most recently changed first, each with its last
    run: ``{"workflows": [...], "next_cursor": str | None}``.

    Raises:
        ValidationFailed: a cursor this API did not return.
    """
    before = paging.decode_cursor(cursor) if cursor else None
    async with pool.connection() as conn:
        rows = await store.page(
            conn, owner, limit=limit + 1, before=before, search=search, active=active
        )
    return paging.page_of(rows, limit, "updated_at", "workflows")


async def archive(pool: Pool, workflow_id: UUID, *, owner: UUID) -> None:
    """Archive the owner's workflow: deactivated, its schedule removed, out of the lists, no
    new runs; it and its runs stay readable. Archiving twice is a no-op.

    Raises:
        NotFound: unknown workflow, or another user's. Conflict: 409 ``workflow_busy`` while
            it has queued, running or waiting runs (``details.run_ids``; cancel them first).
    """
    async with pool.connection() as conn, conn.transaction():
        # The update locks the row first: a run being started waits for us, then sees it archived.
        if await store.archive(conn, workflow_id, owner) is None:
            raise NotFound("workflow", workflow_id)
        busy = await store.unfinished_runs(conn, workflow_id)
        if busy:  # raising rolls the archiving back
            raise Conflict(
                f"workflow {workflow_id} has {len(busy)} unfinished run(s); cancel them first",
                code="workflow_busy",
                details={"run_ids": [str(run_id) for run_id in busy]},
            )
        await schedules_store.delete(conn, workflow_id)
