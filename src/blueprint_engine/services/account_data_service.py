"""A user's data as a whole: the export (``GET /me/export``), importing its workflows into an
account (``POST /me/import``), and erasure (``DELETE /me/data``, ``wf users erase``).

The export is one JSON document, streamed page by page (a user with 100,000 runs is not held
in memory, and no connection is held while the client reads): the profile, API keys (names and
prefixes), linked numbers, connections (names, types and masked hints: never a secret), the
retention policy, every workflow with every version's blueprint, every run with its log rows,
every conversation with its messages (text, transcripts, media references), and every event.
Audio itself is never stored: a voice note is downloaded, transcribed and dropped.

Erasure stops first (keys, numbers, connections, schedules, active workflows, unfinished
runs: :func:`blueprint_engine.store.account_data.stop`), then deletes the user's rows in batches,
each a short transaction, and the profile last. It is idempotent: a repeat, or a retry after
a failure half-way, deletes what is left and answers with what it deleted this time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any
from uuid import UUID

from psycopg import errors as pg_errors

from blueprint_engine import metrics
from blueprint_engine.config import Settings
from blueprint_engine.errors import (
    AppError,
    DatabaseUnavailable,
    InvalidBlueprint,
    StorageUnavailable,
)
from blueprint_engine.services import audio_store, workflow_service
from blueprint_engine.store import account_data as store
from blueprint_engine.store import accounts as accounts_store
from blueprint_engine.store import channel_links as channel_links_store
from blueprint_engine.store import credentials as credentials_store
from blueprint_engine.store import logs as logs_store
from blueprint_engine.store import retention as retention_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Conn, Pool
from blueprint_engine.workflows.runners import Dispatcher
from blueprint_engine.workflows.schema import validate_blueprint_async

log = logging.getLogger(__name__)

#: What an export says it is; :func:`import_workflows` reads its ``workflows``.
EXPORT_FORMAT = "blueprint-engine/export"
EXPORT_VERSION = 1
#: Rows read per page while exporting.
EXPORT_PAGE = 200


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(value: Any) -> bytes:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


# -- export --------------------------------------------------------------------------------


async def export(pool: Pool, owner: UUID) -> AsyncIterator[bytes]:
    """The user's export as chunks of one JSON document (see the module docstring). The
    profile is read before this returns, so a database that does not answer is an error the
    caller can still report (503); a failure later cuts the document short, which a reader
    sees as invalid JSON.

    Raises:
        psycopg.OperationalError: the database did not answer.
    """
    async with pool.connection() as conn:
        head = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": datetime.now(UTC),
            "user": await accounts_store.get_user(conn, owner),
            "api_keys": await accounts_store.list_keys(conn, owner),
            "channels": await channel_links_store.links_of(conn, owner),
            "credentials": await credentials_store.list_for(conn, owner),
            "retention": await retention_store.owner_policy(conn, owner),
        }
    return _document(pool, owner, head)


async def _document(pool: Pool, owner: UUID, head: dict[str, Any]) -> AsyncIterator[bytes]:
    yield _json(head)[:-1]  # the object stays open for the lists that follow
    for name, pages in (
        ("workflows", _workflows(pool, owner)),
        ("runs", _runs(pool, owner)),
        ("sessions", _sessions(pool, owner)),
        ("events", _events(pool, owner)),
    ):
        yield f',"{name}":['.encode()
        first = True
        async for item in pages:
            yield item if first else b"," + item
            first = False
        yield b"]"
    yield b"}"


async def _workflows(pool: Pool, owner: UUID) -> AsyncIterator[bytes]:
    after: UUID | None = None
    while True:  # bounded: the keyset moves past every page
        async with pool.connection() as conn:
            rows = await store.workflows_page(conn, owner, after, EXPORT_PAGE)
            ids = [row["id"] for row in rows]
            versions = await store.versions_of(conn, ids)
            policies = await store.workflow_policies(conn, ids)
        by_workflow = {k: list(g) for k, g in groupby(versions, key=lambda v: v["workflow_id"])}
        for row in rows:
            policy = policies.get(row["id"])
            yield _json(
                {
                    **row,
                    "retention": None
                    if policy is None
                    else {f: policy[f] for f in retention_store.WORKFLOW_FIELDS},
                    "versions": [
                        {k: v for k, v in version.items() if k != "workflow_id"}
                        for version in by_workflow.get(row["id"], [])
                    ],
                }
            )
        if len(rows) < EXPORT_PAGE:
            return
        after = rows[-1]["id"]


async def _runs(pool: Pool, owner: UUID) -> AsyncIterator[bytes]:
    after: tuple[datetime, UUID] | None = None
    while True:
        async with pool.connection() as conn:
            rows = await store.runs_page(conn, owner, after, EXPORT_PAGE)
            logs = await logs_store.of_runs(conn, [row["id"] for row in rows])
        by_run = {k: list(g) for k, g in groupby(logs, key=lambda r: r["run_id"])}
        for row in rows:
            entries = [
                {k: v for k, v in log_row.items() if k != "run_id"}
                for log_row in by_run.get(row["id"], [])
            ]
            yield _json({**row, "logs": entries})
        if len(rows) < EXPORT_PAGE:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])


async def _sessions(pool: Pool, owner: UUID) -> AsyncIterator[bytes]:
    after: tuple[datetime, UUID] | None = None
    while True:
        async with pool.connection() as conn:
            rows = await store.sessions_page(conn, owner, after, EXPORT_PAGE)
            messages = await store.messages_of(conn, [row["id"] for row in rows])
        by_session = {k: list(g) for k, g in groupby(messages, key=lambda m: m["session_id"])}
        for row in rows:
            entries = [
                {k: v for k, v in m.items() if k != "session_id"}
                for m in by_session.get(row["id"], [])
            ]
            yield _json({**row, "messages": entries})
        if len(rows) < EXPORT_PAGE:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])


async def _events(pool: Pool, owner: UUID) -> AsyncIterator[bytes]:
    after: tuple[datetime, UUID] | None = None
    while True:
        async with pool.connection() as conn:
            rows = await store.events_page(conn, owner, after, EXPORT_PAGE)
        for row in rows:
            yield _json(row)
        if len(rows) < EXPORT_PAGE:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])


# -- import --------------------------------------------------------------------------------

#: Workflows an import recreates: those a user made (not the system's timers, commands, or
#: stored copies of unsaved blueprints, which are made again when used).
IMPORTED_ORIGINS = ("api", "draft")


async def import_workflows(
    pool: Pool, owner: UUID, workflows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Recreate the workflows of an export (its ``workflows`` list) as the owner's: each with
    its versions in order (numbered 1, 2, … as they were when none was skipped), inactive.
    Archived workflows and those of other origins are skipped, and said so. A connection a
    blueprint names need not exist yet (as a revision: ``GET /workflows/{id}`` lists it as not
    present). All or nothing: one invalid blueprint imports none.

    Returns:
        ``{"imported": [{"source_id", "id", "name", "versions"}], "skipped": [{"source_id",
        "reason"}]}``.

    Raises:
        InvalidBlueprint: 422; each problem's ``loc`` starts ``["body", "workflows", i,
            "versions", j, "blueprint"]``.
    """
    plan: list[tuple[dict[str, Any], list[Any]]] = []
    skipped = []
    for i, workflow in enumerate(workflows):
        reason = None
        if workflow.get("origin", "api") not in IMPORTED_ORIGINS:
            reason = f"origin {workflow.get('origin')!r}: made by the system, not imported"
        elif workflow.get("archived_at") is not None:
            reason = "archived"
        if reason is not None:
            skipped.append({"source_id": workflow.get("id"), "reason": reason})
            continue
        ordered = sorted(enumerate(workflow["versions"]), key=lambda jv: jv[1]["version"])
        parsed = []
        for j, version in ordered:
            try:
                parsed.append(await validate_blueprint_async(version["blueprint"]))
            except InvalidBlueprint as exc:
                where: list[str | int] = ["body", "workflows", i, "versions", j, "blueprint"]
                raise InvalidBlueprint(
                    [{**issue, "loc": [*where, *issue["loc"]]} for issue in exc.details]
                ) from None
        plan.append((workflow, parsed))
    imported = []
    async with pool.connection() as conn, conn.transaction():
        await accounts_store.ensure_user(conn, owner)
        for workflow, parsed in plan:
            imported.append(await _recreate(conn, owner, workflow, parsed))
    return {"imported": imported, "skipped": skipped}


async def _recreate(
    conn: Conn, owner: UUID, workflow: dict[str, Any], versions: list[Any]
) -> dict[str, Any]:
    first, *later = versions
    row = await workflow_service.create_in(
        conn,
        first,
        name=workflow.get("name"),
        description=workflow.get("description"),
        owner=owner,
        origin=workflow.get("origin", "api"),
    )
    for blueprint in later:
        trigger = blueprint.trigger
        await workflows_store.add_version(
            conn,
            row["id"],
            owner=owner,
            blueprint=workflow_service.stored_form(blueprint),
            trigger_kind=trigger.trigger,
            trigger_event=trigger.event_name(),
            name=None,
            description=None,
        )
    return {
        "source_id": workflow.get("id"),
        "id": row["id"],
        "name": row["name"],
        "versions": len(versions),
    }


# -- erasure -------------------------------------------------------------------------------

#: Rows an erasure deletes per batch (one transaction each).
ERASE_BATCH = 500
#: How long an erasure waits, in all, for rows locked by others (a run's last write, a
#: request in flight) before leaving them to the final cascade from the profile row.
_LOCKED_WAITS = 25


async def erase(
    pool: Pool, dispatcher: Dispatcher, settings: Settings, owner: UUID
) -> dict[str, Any]:
    """Erase everything the user owns (see the module docstring).

    Returns:
        ``{"user_id", "deleted": {table: rows}, "cancelled_runs", "deactivated_workflows"}``:
        what this call did (a repeat answers zeros).

    Raises:
        DatabaseUnavailable: 503, the database went away or kept rows locked too long;
            calling again finishes the erasure.
        StorageUnavailable: 503, the audio store did not answer; calling again finishes it.
    """
    try:
        return await _erase(pool, dispatcher, settings, owner)
    except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
        log.warning("erasure of %s stopped half-way: %s", owner, exc)
        raise DatabaseUnavailable(
            "the erasure waited too long for rows in use; call again to finish it"
        ) from None


async def _erase(
    pool: Pool, dispatcher: Dispatcher, settings: Settings, owner: UUID
) -> dict[str, Any]:
    deleted = retention_store.Counts({table: 0 for table, _ in store.OWNED})
    deleted.update({table: 0 for table in store.RUN_OWNED})
    async with pool.connection() as conn, conn.transaction():
        await retention_store.bound(conn, 30, lock_seconds=10)
        stopped, cancelled, deactivated = await store.stop(conn, owner)
    deleted.update(stopped)
    for run in cancelled:
        if run["engine"] != dispatcher.engine:
            continue
        try:
            await dispatcher.run_cancelled(run["id"])
        except AppError as exc:  # its row goes below; the engine finds nothing to run
            log.warning(
                "erasure of %s: run %s not cancelled on the engine: %s",
                owner,
                run["id"],
                exc.message,
            )
    for table, delete in _ERASED:
        deleted.update(await _drain(pool, owner, table, delete))
    try:
        deleted["audio_files"] = await audio_store.forget_owner(settings, owner)
    except Exception as exc:  # the profile stays: a repeat finds the files again and ends it
        log.warning("erasure of %s: kept audio not deleted: %s", owner, type(exc).__name__)
        raise StorageUnavailable(
            "the audio store did not answer; call again to finish the erasure"
        ) from None
    async with pool.connection() as conn, conn.transaction():
        await retention_store.bound(conn, 60, lock_seconds=10)
        deleted["users"] += await store.forget_user(conn, owner)
    metrics.ERASURES.inc()
    log.info("erased user %s: %s", owner, {k: v for k, v in deleted.items() if v})
    return {
        "user_id": owner,
        "deleted": dict(deleted),
        "cancelled_runs": len(cancelled),
        "deactivated_workflows": deactivated,
    }


async def _delete_workflows(conn: Conn, ids: list[Any]) -> retention_store.Counts:
    # Every run is gone by now; one started meanwhile goes with its version (by cascade).
    return await retention_store.delete_rows(
        conn, ids, [("workflow_versions", "workflow_id"), ("workflows", "id")]
    )


async def _delete_deliveries(conn: Conn, ids: list[Any]) -> retention_store.Counts:
    return await retention_store.delete_rows(conn, ids, [("webhook_deliveries", "id")])


#: The user's tables an erasure drains, in order: runs before the workflows they refer to,
#: deliveries before the events they refer to.
_ERASED: tuple[tuple[str, Callable[[Conn, list[Any]], Awaitable[retention_store.Counts]]], ...] = (
    ("workflow_runs", retention_store.delete_runs),
    ("sessions", retention_store.delete_sessions),
    ("webhook_deliveries", _delete_deliveries),
    ("events", retention_store.delete_events),
    ("workflows", _delete_workflows),
)


async def _drain(
    pool: Pool,
    owner: UUID,
    table: str,
    delete: Callable[[Conn, list[Any]], Awaitable[retention_store.Counts]],
) -> retention_store.Counts:
    """Delete all the user's rows of ``table`` (with what goes with them), a batch at a time.
    Bounded: every batch deletes the rows it locked, and rows locked by others are waited for
    :data:`_LOCKED_WAITS` times at most."""
    counts = retention_store.Counts()
    waits = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            await retention_store.bound(conn, 30)
            ids = await store.batch(conn, table, owner, ERASE_BATCH)
            counts.update(await delete(conn, ids))
            left = not ids and await store.remaining(conn, table, owner)
        if ids:
            continue
        if not left or waits >= _LOCKED_WAITS:
            return counts
        waits += 1
        await asyncio.sleep(0.2)
