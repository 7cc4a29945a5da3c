"""Fires schedule triggers: a small loop in the API (and ``wf worker``) process.

Each tick locks due schedules with ``FOR UPDATE SKIP LOCKED`` (so several processes can run it),
creates one run per firing (idempotency key ``schedule:<workflow>:<time>``, trigger data
``{"scheduled_for", "cron", "timezone"}``) and moves the schedule to its next time after now:
firings missed while no process ran are collapsed into one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import psycopg

from blueprint_engine.errors import EngineUnavailable
from blueprint_engine.services import run_service
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import schedules as store
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.runners import Dispatcher, QueuedRun
from blueprint_engine.workflows.schedule import next_fire_time

log = logging.getLogger(__name__)


async def tick(pool: Pool, dispatcher: Dispatcher, *, limit: int = 50) -> int:
    """Fire every due schedule once. Returns how many runs were started."""
    queued: list[QueuedRun] = []
    async with pool.connection() as conn, conn.transaction():
        now = datetime.now(UTC)
        for row in await store.due(conn, limit):
            fire_at: datetime = row["next_fire_at"]
            run_id, created = await runs_store.create(
                conn,
                owner=row["owner_id"],
                workflow_id=row["workflow_id"],
                version=row["version"],
                trigger_data={
                    "scheduled_for": fire_at.isoformat(),
                    "cron": row["cron"],
                    "timezone": row["timezone"],
                },
                idempotency_key=f"schedule:{row['workflow_id']}:{fire_at.isoformat()}",
                engine=dispatcher.engine,
            )
            if created:
                queued.append(
                    QueuedRun(run_id, row["workflow_id"], row["version"], row["owner_id"])
                )
            following = next_fire_time(row["cron"], row["timezone"], max(now, fire_at))
            await store.advance(conn, row["workflow_id"], fire_at, following)
    if queued:
        try:
            await run_service.dispatch(pool, dispatcher, queued)
        except EngineUnavailable as exc:
            log.error("scheduled runs could not start: %s", exc.message)
    return len(queued)


class Scheduler:
    """Runs :func:`tick` every ``interval`` seconds until stopped."""

    def __init__(self, pool: Pool, dispatcher: Dispatcher, interval: float) -> None:
        self.pool = pool
        self.dispatcher = dispatcher
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin ticking in the background."""
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        """Stop ticking (a tick in progress is cancelled; its transaction rolls back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await tick(self.pool, self.dispatcher)
            except (psycopg.Error, OSError) as exc:
                log.warning("scheduler tick failed (%s); retrying", exc)
            await asyncio.sleep(self.interval)
