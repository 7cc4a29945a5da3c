"""Events: resume matching waits and start active workflows triggered by them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from backend.app.store import events as store
from backend.app.store import runs as runs_store
from backend.app.store import workflows as workflows_store
from backend.app.store.db import Conn, Pool
from backend.app.workflows import expressions

log = logging.getLogger(__name__)


@dataclass
class EmitResult:
    """What an event did: the runs it resumed and the runs it started."""

    event_id: UUID
    resumed_run_ids: list[UUID] = field(default_factory=list)
    started_run_ids: list[UUID] = field(default_factory=list)


async def emit(pool: Pool, name: str, data: Any, *, source: str = "api") -> EmitResult:
    """Record and deliver an event in one transaction (see :func:`emit_in`)."""
    async with pool.connection() as conn, conn.transaction():
        return await emit_in(conn, name, data, source=source)


async def emit_in(conn: Conn, name: str, data: Any, *, source: str) -> EmitResult:
    """Deliver an event inside the caller's transaction.

    Every open wait for ``name`` whose ``match`` holds (evaluated with ``event`` = ``{name, data,
    id}`` plus the trigger data and step outputs captured when the wait began) is resolved and its
    run queued. Every active workflow whose trigger is ``name`` gets a run with ``data`` as trigger
    data, keyed ``event:<event_id>:<workflow_id>`` so the event starts it exactly once.
    """
    event_id = await store.insert(conn, name, data, source)
    event = {"id": str(event_id), "name": name, "data": data}
    result = EmitResult(event_id)
    for wait in await store.open_waits_for(conn, name):
        if wait["match"] and not _matches(wait["match"], event, wait["context"] or {}):
            continue
        await store.resolve_wait(conn, wait["run_id"], wait["step_id"], event)
        result.resumed_run_ids.append(wait["run_id"])
    for wf in await workflows_store.active_for_event(conn, name):
        run_id, _ = await runs_store.create(
            conn,
            workflow_id=wf["workflow_id"],
            version=wf["version"],
            trigger_data=data,
            idempotency_key=f"event:{event_id}:{wf['workflow_id']}",
        )
        result.started_run_ids.append(run_id)
    return result


def _matches(match: str, event: dict[str, Any], context: dict[str, Any]) -> bool:
    try:
        return bool(expressions.evaluate(match, {**context, "event": event}))
    except expressions.ExpressionError as exc:
        log.info("wait match %r does not apply to event %s: %s", match, event["id"], exc)
        return False
