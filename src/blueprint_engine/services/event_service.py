"""Events: resume matching waits and start active workflows triggered by them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from blueprint_engine.services import run_service
from blueprint_engine.store import events as store
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Conn, Pool
from blueprint_engine.workflows import expressions
from blueprint_engine.workflows.runners import Dispatcher, QueuedRun

log = logging.getLogger(__name__)


@dataclass
class EmitResult:
    """What an event did: the runs it resumed and the runs it started."""

    event_id: UUID
    started: list[QueuedRun] = field(default_factory=list)
    resolved: list[tuple[UUID, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def started_run_ids(self) -> list[UUID]:
        """Ids of the runs this event started."""
        return [run.run_id for run in self.started]

    @property
    def resumed_run_ids(self) -> list[UUID]:
        """Ids of the runs whose wait this event resolved."""
        return [run_id for run_id, _, _ in self.resolved]


async def emit(
    pool: Pool, dispatcher: Dispatcher, name: str, data: Any, *, owner: UUID
) -> EmitResult:
    """Record and deliver the owner's event in one transaction (see :func:`emit_in`), then
    hand the started and resumed runs to the engine (:func:`dispatch`).

    Raises:
        EngineUnavailable: 503; started runs were marked failed.
    """
    async with pool.connection() as conn, conn.transaction():
        result = await emit_in(
            conn, name, data, source="api", engine=dispatcher.engine, owner=owner
        )
    await dispatch(pool, dispatcher, result)
    return result


async def dispatch(pool: Pool, dispatcher: Dispatcher, result: EmitResult) -> None:
    """After commit: start the event's runs and deliver its resolved waits to the engine.

    Raises:
        EngineUnavailable: 503; started runs were marked failed.
    """
    for run_id, step_id, event in result.resolved:
        await dispatcher.wait_resolved(run_id, step_id, event)
    await run_service.dispatch(pool, dispatcher, result.started)


async def emit_in(
    conn: Conn, name: str, data: Any, *, source: str, engine: str, owner: UUID
) -> EmitResult:
    """Deliver the owner's event inside the caller's transaction; other users' waits and
    workflows never see it.

    Every open wait of the owner for ``name`` whose ``match`` holds (evaluated with ``event`` =
    ``{name, data, id}`` plus the trigger data and step outputs captured when the wait began) is
    resolved and its run queued. Every active workflow of the owner whose trigger is ``name``
    gets a run with ``data`` as trigger data, keyed ``event:<event_id>:<workflow_id>`` so the
    event starts it exactly once.
    """
    event_id = await store.insert(conn, name, data, source, owner)
    event = {"id": str(event_id), "name": name, "data": data}
    result = EmitResult(event_id)
    for wait in await store.open_waits_for(conn, name, owner):
        if wait["match"] and not _matches(wait["match"], event, wait["context"] or {}):
            continue
        await store.resolve_wait(conn, wait["run_id"], wait["step_id"], event)
        result.resolved.append((wait["run_id"], wait["step_id"], event))
    for wf in await workflows_store.active_for_event(conn, name, owner):
        run_id, _ = await runs_store.create(
            conn,
            owner=owner,
            workflow_id=wf["workflow_id"],
            version=wf["version"],
            trigger_data=data,
            idempotency_key=f"event:{event_id}:{wf['workflow_id']}",
            engine=engine,
        )
        result.started.append(QueuedRun(run_id, wf["workflow_id"], wf["version"], owner))
    return result


def _matches(match: str, event: dict[str, Any], context: dict[str, Any]) -> bool:
    try:
        return bool(expressions.evaluate(match, {**context, "event": event}))
    except expressions.ExpressionError as exc:
        log.info("wait match %r does not apply to event %s: %s", match, event["id"], exc)
        return False
