"""Starting runs and reading their state."""

from __future__ import annotations

import time
from typing import Any, Literal
from uuid import UUID

import psycopg

from blueprint_engine import metrics
from blueprint_engine.errors import Conflict, EngineUnavailable, NotFound, ValidationFailed
from blueprint_engine.integrations import TOOL_REGISTRY
from blueprint_engine.services import call_graph, credential_service, paging, workflow_service
from blueprint_engine.store import logs as logs_store
from blueprint_engine.store import runs as store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.runners import Dispatcher, QueuedRun
from blueprint_engine.workflows.schema import validate_blueprint_async
from blueprint_engine.workflows.steps import continued_output

#: Origins of the workflows the system saves for its own blueprints (session timers, channel
#: commands). They may use the internal tools on ids taken from their trigger data (a session
#: id), so only the system starts them: a user starting one by hand with someone else's id would
#: reach that user's session.
SYSTEM_ORIGINS = ("system", "channel")


async def dispatch(pool: Pool, dispatcher: Dispatcher, runs: list[QueuedRun]) -> None:
    """Hand committed runs to the engine; if it refuses, mark them failed (never left queued).

    Raises:
        EngineUnavailable: 503, after the runs were marked failed with that error.
    """
    metrics.runs_started(dispatcher.engine, [run.dispatch for run in runs])
    try:
        await dispatcher.run_queued(runs)
    except EngineUnavailable as exc:
        async with pool.connection() as conn:
            for run in runs:
                await store.fail(conn, run.run_id, {"code": exc.code, "message": exc.message})
        exc.details = {"run_ids": [str(run.run_id) for run in runs]}
        raise


async def start(
    pool: Pool,
    dispatcher: Dispatcher,
    *,
    workflow_id: UUID | None,
    version: int | None,
    blueprint: Any,
    payload: Any,
    idempotency_key: str | None,
    owner: UUID,
    trace_id: str | None = None,
    origin: Literal["adhoc", "channel"] = "adhoc",
    system: bool = False,
    sandbox: bool = False,
) -> tuple[UUID, bool]:
    """Queue a run, for ``owner``, of their saved workflow (``version`` default: latest) or of
    an unsaved blueprint (stored as their workflow of ``origin``, once per content: runs of
    the same blueprint share it).

    ``system``: the system starts it (a channel command, a session timer): the blueprint may
    use the internal tools, and a saved workflow may be one of :data:`SYSTEM_ORIGINS`.
    ``sandbox``: every tool call of the run (and of its child runs) is sandboxed, whichever
    worker executes it (``wf run --sandbox``).

    Returns:
        ``(run_id, created)``: a repeated ``idempotency_key`` returns the first run, created=False.

    Raises:
        ValidationFailed: neither or both of workflow_id and blueprint; a system workflow
            started by a user.
        InvalidBlueprint: 422. NotFound: unknown workflow or version. Conflict: 409
            ``workflow_archived``.
        EngineUnavailable: 503; the run exists, marked failed with code ``engine_unavailable``.
    """
    if (workflow_id is None) == (blueprint is None):
        raise ValidationFailed(
            ["body", "workflow_id"], "exactly one of workflow_id and blueprint is required"
        )
    if idempotency_key is not None:
        async with pool.connection() as conn:
            existing = await store.find_by_idempotency_key(conn, idempotency_key, owner)
        if existing is not None:
            return existing, False
    registry = TOOL_REGISTRY if system else None  # only the system's blueprints: internal tools
    parsed = None if blueprint is None else await validate_blueprint_async(blueprint, registry)
    async with pool.connection() as conn, conn.transaction() as tx:
        if parsed is not None:
            await credential_service.check_references(conn, parsed, owner, registry)
            await call_graph.check_calls(conn, parsed, owner)
            row = await workflow_service.store_once_in(conn, parsed, owner=owner, origin=origin)
            workflow_id, version = row["id"], 1
        else:
            assert workflow_id is not None
            wf = await workflows_store.get(conn, workflow_id, owner, lock=True)
            if wf is None:
                raise NotFound("workflow", workflow_id)
            workflow_service.refuse_archived(wf)
            if wf["origin"] in SYSTEM_ORIGINS and not system:
                raise ValidationFailed(
                    ["body", "workflow_id"],
                    "a system workflow (a session timer or a channel command): it runs only"
                    " when the system starts it",
                )
            version = version or wf["latest_version"]
            if await workflows_store.get_version(conn, workflow_id, version) is None:
                raise NotFound("workflow version", f"{workflow_id}@{version}")
        run_id, created = await store.create(
            conn,
            owner=owner,
            workflow_id=workflow_id,
            version=version,
            trigger_data=payload,
            idempotency_key=idempotency_key,
            engine=dispatcher.engine,
            trace_id=trace_id,
            sandbox=sandbox,
        )
        if not created:  # the key's first run stands: keep nothing this request stored
            raise psycopg.Rollback(tx)
    if created:
        await dispatch(pool, dispatcher, [QueuedRun(run_id, workflow_id, version, owner)])
    return run_id, created


async def progress(pool: Pool, run_id: UUID, *, owner: UUID) -> tuple[str, dict[str, str]]:
    """The run's status and the status of each node that has a log row: a cheap poll (no
    blueprint is loaded).

    Raises:
        NotFound: unknown run.
    """
    async with pool.connection() as conn:
        run = await store.get(conn, run_id, owner=owner)
        if run is None:
            raise NotFound("run", run_id)
        states = {
            row["node_id"]: row["status"] for row in await logs_store.latest_by_node(conn, run_id)
        }
    return run["status"], states


async def get(pool: Pool, run_id: UUID, *, owner: UUID) -> dict[str, Any]:
    """The owner's run with every node's state (``pending`` until it has a log row), in
    blueprint order. A failed action with ``on_error: "continue"`` shows, beside its
    ``error``, the ``output`` later steps received (``{"error": ...}``).

    Raises:
        NotFound: unknown run, or another user's.
    """
    async with pool.connection() as conn:
        run = await store.get(conn, run_id, owner=owner)
        if run is None:
            raise NotFound("run", run_id)
        version = await workflows_store.get_version(conn, run["workflow_id"], run["version"])
        states = {row["node_id"]: row for row in await logs_store.latest_by_node(conn, run_id)}
    nodes = []
    for node in _raw_nodes(version["blueprint"] if version else None):
        entry: dict[str, Any] = {
            "id": str(node["id"]),
            "type": str(node.get("type", "unknown")),
            "name": node.get("name"),
            "status": "pending",
        }
        state = states.get(entry["id"])
        if state is not None:
            entry.update({k: v for k, v in state.items() if k != "node_id"})
            if node.get("on_error") == "continue" and state["status"] == "failed":
                # the run went on: show the output later steps received
                entry["output"] = continued_output(state["error"] or {})
        nodes.append(entry)
    return {**run, "nodes": nodes}


def _raw_nodes(blueprint: Any) -> list[dict[str, Any]]:
    """The nodes (with an ``id``) of a stored blueprint, read leniently: a version an operator
    damaged by hand still shows its run."""
    raw = blueprint.get("nodes") if isinstance(blueprint, dict) else None
    return [n for n in raw or [] if isinstance(n, dict) and "id" in n]


async def page(
    pool: Pool,
    *,
    owner: UUID,
    limit: int,
    cursor: str | None,
    workflow_id: UUID | None = None,
    status: str | None = None,
    trace_id: str | None = None,
    parent_run_id: UUID | None = None,
) -> dict[str, Any]:
    """A page of the owner's runs, newest first: of one workflow, of one command
    (``trace_id``: message -> intent -> run), the child runs of one run (``parent_run_id``:
    what its ``workflow`` nodes and foreach items started), or of every workflow they made
    (the system's own excluded); optionally of one ``status``. ``{"runs": [...],
    "next_cursor": str | None}``.

    Raises:
        NotFound: ``workflow_id`` or ``parent_run_id`` unknown, or another user's.
        ValidationFailed: bad cursor.
    """
    before = paging.decode_cursor(cursor) if cursor else None
    async with pool.connection() as conn:
        if workflow_id is not None and await workflows_store.get(conn, workflow_id, owner) is None:
            raise NotFound("workflow", workflow_id)
        if parent_run_id is not None and await store.get(conn, parent_run_id, owner=owner) is None:
            raise NotFound("run", parent_run_id)
        rows = await store.page(
            conn,
            owner,
            limit=limit + 1,
            before=before,
            workflow_id=workflow_id,
            status=status,
            trace_id=trace_id,
            parent_run_id=parent_run_id,
        )
    return paging.page_of(rows, limit, "created_at", "runs")


async def logs(
    pool: Pool, run_id: UUID, *, after_id: int, limit: int, owner: UUID
) -> list[dict[str, Any]]:
    """The owner's run's log rows after ``after_id`` (poll with the last id you saw).

    Raises:
        NotFound: unknown run, or another user's.
    """
    async with pool.connection() as conn:
        if await store.get(conn, run_id, owner=owner) is None:
            raise NotFound("run", run_id)
        return [
            dict(r) for r in await logs_store.page(conn, run_id, after_id=after_id, limit=limit)
        ]


async def cancel(
    pool: Pool, dispatcher: Dispatcher, run_id: UUID, *, owner: UUID
) -> dict[str, Any]:
    """Cancel the owner's queued, running or waiting run, and its unfinished child runs
    (``workflow`` nodes); a step in flight finishes but nothing follows.

    Raises:
        NotFound: unknown run, or another user's. Conflict: the run already finished.
    """
    async with pool.connection() as conn, conn.transaction():
        if await store.cancel(conn, run_id, owner) is None:
            run = await store.get(conn, run_id, owner=owner)
            if run is None:
                raise NotFound("run", run_id)
            raise Conflict(f"run {run_id} already {run['status']}", code="run_finished")
        children = await store.cancel_descendants(conn, run_id)
    for cancelled in [run_id, *children]:
        await dispatcher.run_cancelled(cancelled)
    return await get(pool, run_id, owner=owner)


async def retry(pool: Pool, dispatcher: Dispatcher, run_id: UUID, *, owner: UUID) -> dict[str, Any]:
    """Resume the owner's failed run from its failed step; finished steps are not run again.

    Raises:
        NotFound: unknown run, or another user's. Conflict: the run is not failed.
    """
    async with pool.connection() as conn:
        async with conn.transaction():
            requeued = await store.requeue_failed(conn, run_id, owner)
        run = await store.get(conn, run_id, owner=owner)
        if run is None:
            raise NotFound("run", run_id)
        if not requeued:
            raise Conflict(
                f"only failed runs can be retried; run {run_id} is {run['status']}",
                code="run_not_failed",
            )
    retry_no = int(time.time() * 1000)  # unique per retry request, increasing
    queued = QueuedRun(run_id, run["workflow_id"], run["version"], owner, dispatch=retry_no)
    await dispatch(pool, dispatcher, [queued])
    return await get(pool, run_id, owner=owner)
