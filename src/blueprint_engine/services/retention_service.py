"""Retention: who keeps what for how long (the deployment's defaults, a user's and a
workflow's overrides), and the pruner that removes what is past it.

The pruner (:class:`Pruner`) runs in every process that runs the embedded runner or the
scheduler (the API, ``wf worker``), every ``PRUNE_INTERVAL_SECONDS``; ``wf prune`` runs one
pass by hand. A pass (:func:`prune`) walks each family of rows of
:data:`blueprint_engine.store.retention.FAMILIES` oldest first in batches of
``PRUNE_BATCH_SIZE``, each its own short transaction whose statements give up after
``PRUNE_BATCH_TIMEOUT_SECONDS`` and whose lock waits after 1 s, with
``PRUNE_BATCH_PAUSE_SECONDS`` between batches; rows another process is pruning are skipped
(``SKIP LOCKED``), so several processes share the work. The runner is never held up: only
finished runs are locked, never one it holds. A pass stops after ``PRUNE_PASS_SECONDS`` and
the next one goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors

from blueprint_engine import metrics
from blueprint_engine.config import Settings
from blueprint_engine.errors import NotFound, ValidationFailed
from blueprint_engine.services import audio_store
from blueprint_engine.store import retention as store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Pool

log = logging.getLogger(__name__)


def defaults(settings: Settings) -> store.Defaults:
    """The deployment's policy from the settings."""
    return store.Defaults(
        succeeded_runs_days=settings.retention_succeeded_runs_days,
        failed_runs_days=settings.retention_failed_runs_days,
        conversations_days=settings.retention_conversations_days,
    )


# -- policies ------------------------------------------------------------------------------


def _effective(fields: tuple[str, ...], *layers: dict[str, int | None]) -> dict[str, int | None]:
    """Each field from the first layer that sets it."""
    return {
        f: next((layer[f] for layer in layers if layer.get(f) is not None), None) for f in fields
    }


def _deployment(settings: Settings) -> dict[str, int | None]:
    d = defaults(settings)
    return {
        "succeeded_runs_days": d.succeeded_runs_days,
        "failed_runs_days": d.failed_runs_days,
        "conversations_days": d.conversations_days,
    }


def _check(settings: Settings, values: dict[str, int | None]) -> None:
    """Raises:
    ValidationFailed: 422 at ``body.<field>`` for days over ``RETENTION_MAX_DAYS``."""
    for name, days in values.items():
        if days is not None and days > settings.retention_max_days:
            raise ValidationFailed(
                ["body", name],
                f"at most {settings.retention_max_days} days on this deployment"
                " (RETENTION_MAX_DAYS)",
            )


async def owner_retention(pool: Pool, settings: Settings, owner: UUID) -> dict[str, Any]:
    """The owner's policy: ``override`` (their own values, None = the deployment's),
    ``effective`` (what the pruner applies to them) and ``deployment`` (the defaults), in
    days, and ``max_days`` (the longest they may ask for)."""
    async with pool.connection() as conn:
        override = await store.owner_policy(conn, owner)
    deployment = _deployment(settings)
    return {
        "override": override,
        "effective": _effective(store.OWNER_FIELDS, override, deployment),
        "deployment": deployment,
        "max_days": settings.retention_max_days,
    }


async def set_owner_retention(
    pool: Pool, settings: Settings, owner: UUID, values: dict[str, int | None]
) -> dict[str, Any]:
    """Replace the owner's overrides (a field left out or null: the deployment's); shortening
    one lets the next pass prune what is now past it.

    Raises:
        ValidationFailed: 422 naming the field, days over ``RETENTION_MAX_DAYS``.
    """
    _check(settings, values)
    async with pool.connection() as conn:
        await store.set_owner_policy(conn, owner, values)
    return await owner_retention(pool, settings, owner)


async def workflow_retention(
    pool: Pool, settings: Settings, workflow_id: UUID, owner: UUID
) -> dict[str, Any]:
    """The policy of the owner's workflow's runs: ``override`` (the workflow's own, None =
    the owner's), ``effective`` (workflow, else owner, else deployment) and ``owner`` (what
    the owner's policy would give).

    Raises:
        NotFound: unknown workflow, or another user's.
    """
    async with pool.connection() as conn:
        if await workflows_store.get(conn, workflow_id, owner) is None:
            raise NotFound("workflow", workflow_id)
        override = await store.workflow_policy(conn, workflow_id)
        mine = await store.owner_policy(conn, owner)
    fields = store.WORKFLOW_FIELDS
    of_owner = _effective(fields, mine, _deployment(settings))
    return {
        "workflow_id": workflow_id,
        "override": override,
        "effective": _effective(fields, override, of_owner),
        "owner": of_owner,
    }


async def set_workflow_retention(
    pool: Pool,
    settings: Settings,
    workflow_id: UUID,
    owner: UUID,
    values: dict[str, int | None],
) -> dict[str, Any]:
    """Replace the overrides of the owner's workflow (a field left out or null: the owner's).

    Raises:
        NotFound: unknown workflow, or another user's. ValidationFailed: 422 naming the field.
    """
    _check(settings, values)
    async with pool.connection() as conn, conn.transaction():
        if await workflows_store.get(conn, workflow_id, owner, lock=True) is None:
            raise NotFound("workflow", workflow_id)
        await store.set_workflow_policy(conn, owner, workflow_id, values)
    return await workflow_retention(pool, settings, workflow_id, owner)


# -- pruning -------------------------------------------------------------------------------


@dataclass
class PruneReport:
    """What one pass did (or, in a dry run, would do): rows per table, batches and their
    durations (seconds), batches given up on a lock or timeout (retried next pass), and
    whether it got through every family before its time limit."""

    rows: store.Counts = field(default_factory=store.Counts)
    batches: int = 0
    batch_seconds: list[float] = field(default_factory=list)
    given_up: int = 0
    complete: bool = True
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Rows of every table."""
        return sum(self.rows.values())


async def prune(
    pool: Pool,
    settings: Settings,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    time_limit: float | None = None,
) -> PruneReport:
    """One pruning pass at ``now`` (default: the current time): delete every row past its
    policy, family by family, in batches (see the module docstring). ``dry_run``: take and
    change nothing, count what would go.

    Raises:
        psycopg.OperationalError: the database went away (the pass stops; nothing half-done:
            each batch is one transaction).
    """
    now = now or datetime.now(UTC)
    limit = batch_size or settings.prune_batch_size
    budget = settings.prune_pass_seconds if time_limit is None else time_limit
    pause = 0.0 if dry_run else settings.prune_batch_pause_seconds
    policy = defaults(settings)
    report = PruneReport()
    started = time.monotonic()
    async with pool.connection() as conn:
        horizons = await store.horizons(conn, policy, now)
    for family in store.FAMILIES:
        after = None
        while True:  # bounded: every batch moves the cursor past the rows it scanned
            if time.monotonic() - started > budget:
                report.complete = False
                break
            t0 = time.perf_counter()
            try:
                scanned, rows, gave_up = await _batch(
                    pool, settings, family, now, policy, horizons, after, limit, dry_run
                )
            except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
                log.warning("pruning %s: a scan gave up (%s)", family.table, type(exc).__name__)
                report.given_up += 1
                break  # the next pass starts this family again
            seconds = time.perf_counter() - t0
            report.batches += 1
            report.given_up += gave_up
            report.batch_seconds.append(seconds)
            report.rows.update(rows)
            if not dry_run:
                metrics.pruned(family.table, seconds, rows)
            if scanned.seen < limit or scanned.after is None:
                break
            after = scanned.after
            await asyncio.sleep(pause)
        if not report.complete:
            break
    report.seconds = time.monotonic() - started
    if not dry_run:
        metrics.PRUNE_PASSES.labels("complete" if report.complete else "time_limit").inc()
    return report


async def _batch(
    pool: Pool,
    settings: Settings,
    family: store.Family,
    now: datetime,
    policy: store.Defaults,
    horizons: dict[str, datetime],
    after: tuple[datetime, Any] | None,
    limit: int,
    dry_run: bool,
) -> tuple[store.Scanned, store.Counts, bool]:
    """Scan one batch of ``family`` and delete (or count) its due rows, in one bounded
    transaction. Returns the scan, the rows per table, and whether the deleting gave up (a
    lock not granted within a second, or the batch's time limit: its rows stay for the next
    pass, and the pass goes on past them).

    Raises:
        psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled: the scan gave up.
    """
    async with pool.connection() as conn, conn.transaction():
        await store.bound(conn, settings.prune_batch_timeout_seconds)
        scanned = await family.scan(
            conn,
            now=now,
            defaults=policy,
            horizon=horizons[family.table],
            after=after,
            limit=limit,
            dry_run=dry_run,
        )
        due = [ident for ident, _ in scanned.due]
        if dry_run:
            counts = await family.count(conn, due)
            if family is store.SESSIONS:  # what would go from the audio store too
                counts["audio_files"] += len(await store.audio_keys(conn, due))
            return scanned, counts, False
        audio: list[str] = []
        try:
            async with conn.transaction():  # a savepoint: giving up keeps the scan's cursor
                locked = await family.lock(conn, scanned.due)
                if family is store.SESSIONS:
                    audio = await store.audio_keys(conn, locked)
                counts = await family.delete(conn, locked)
        except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
            log.info(
                "pruning %s: a batch gave up (%s); the next pass retries it",
                family.table,
                type(exc).__name__,
            )
            return scanned, store.Counts(), True
    # After the commit: a file outliving its message is harmless, a message losing its file
    # to a batch that rolled back is not.
    if audio:
        counts["audio_files"] += await audio_store.forget(settings, audio)
    return scanned, counts, False


class Pruner:
    """Runs :func:`prune` every ``PRUNE_INTERVAL_SECONDS`` in the background, the first time
    after a random part of the interval (at most a minute), so processes started together do
    not prune in step."""

    def __init__(self, pool: Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin pruning in the background."""
        self._task = asyncio.create_task(self._loop(), name="pruner")

    async def stop(self) -> None:
        """Stop (a batch in progress is cancelled; its transaction rolls back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        interval = self.settings.prune_interval_seconds
        await asyncio.sleep(random.uniform(0, min(interval, 60.0)))
        while True:
            try:
                report = await prune(self.pool, self.settings)
            except (psycopg.Error, OSError) as exc:
                metrics.PRUNE_PASSES.labels("error").inc()
                log.warning("pruning pass failed (%s); retrying in %.0f s", exc, interval)
            else:
                if report.total or not report.complete:
                    log.info(
                        "pruned %d rows in %d batches, %.1f s%s: %s",
                        report.total,
                        report.batches,
                        report.seconds,
                        "" if report.complete else " (time limit: goes on next pass)",
                        dict(report.rows),
                    )
            await asyncio.sleep(interval)
