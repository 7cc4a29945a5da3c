"""Retention: the per-owner and per-workflow overrides of the deployment's policy, and the
batches the pruner scans and deletes (:mod:`blueprint_engine.services.retention_service` runs them).

How long a row is kept: a finished run for its workflow's, else its owner's, else the
deployment's days for its status (``succeeded``; ``failed`` and ``cancelled`` share one
policy), counted from ``finished_at``; a closed conversation for its owner's (else the
deployment's) ``conversations_days`` after ``closed_at``; an event and a webhook delivery for
the longer of its owner's two run policies; a stored copy of an unsaved blueprint (origin
``adhoc`` or ``channel``) or an archived workflow, once none of its runs is left, for its
succeeded-run policy after its last change. Unfinished runs (queued, running, waiting) are
never candidates, nor are active workflows or any workflow a run still refers to.

Each family of rows is walked oldest first in batches (:class:`Family`): a batch *scans* up
to ``limit`` rows past a keyset cursor on an index (``(finished_at, id)`` for runs…), marks
which are due under their policy, then *deletes* the due ones it can lock at once
(``FOR UPDATE SKIP LOCKED``: rows another process is pruning, or a request is changing, are
left for later), each with its dependent rows. Rows kept by a long policy are passed over by
the cursor, not rescanned by every batch. Every function takes the caller's ``now``, so tests
and ``wf prune --as-of`` choose the clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from blueprint_engine.store.db import Conn

#: The override columns of ``retention_policies``; a workflow's has no conversations.
OWNER_FIELDS = ("succeeded_runs_days", "failed_runs_days", "conversations_days")
WORKFLOW_FIELDS = ("succeeded_runs_days", "failed_runs_days")
TERMINAL = ("succeeded", "failed", "cancelled")
#: Rows deleted, by table name.
Counts = Counter[str]


@dataclass(frozen=True)
class Defaults:
    """The deployment's policy, in days (settings ``RETENTION_*_DAYS``)."""

    succeeded_runs_days: int
    failed_runs_days: int
    conversations_days: int

    def params(self) -> dict[str, int]:
        """As SQL parameters ``%(succeeded)s``, ``%(failed)s``, ``%(conversations)s``."""
        return {
            "succeeded": self.succeeded_runs_days,
            "failed": self.failed_runs_days,
            "conversations": self.conversations_days,
        }


# -- overrides -----------------------------------------------------------------------------


async def owner_policy(conn: Conn, owner: UUID) -> dict[str, int | None]:
    """The owner's overrides, each field's days or None (inherit the deployment's)."""
    cur = await conn.execute(
        "select succeeded_runs_days, failed_runs_days, conversations_days"
        " from retention_policies where owner_id = %s and workflow_id is null",
        (owner,),
    )
    row = await cur.fetchone()
    return {field: None if row is None else row[field] for field in OWNER_FIELDS}


async def workflow_policy(conn: Conn, workflow_id: UUID) -> dict[str, int | None]:
    """A workflow's overrides, each field's days or None (inherit the owner's)."""
    cur = await conn.execute(
        "select succeeded_runs_days, failed_runs_days from retention_policies"
        " where workflow_id = %s",
        (workflow_id,),
    )
    row = await cur.fetchone()
    return {field: None if row is None else row[field] for field in WORKFLOW_FIELDS}


async def set_owner_policy(conn: Conn, owner: UUID, values: dict[str, int | None]) -> None:
    """Replace the owner's overrides (all None: none left, the row goes)."""
    if all(values.get(f) is None for f in OWNER_FIELDS):
        await conn.execute(
            "delete from retention_policies where owner_id = %s and workflow_id is null", (owner,)
        )
        return
    await conn.execute(
        "insert into retention_policies"
        " (owner_id, succeeded_runs_days, failed_runs_days, conversations_days)"
        " values (%(owner)s, %(succeeded_runs_days)s, %(failed_runs_days)s,"
        " %(conversations_days)s)"
        " on conflict (owner_id) where workflow_id is null do update set"
        " succeeded_runs_days = excluded.succeeded_runs_days,"
        " failed_runs_days = excluded.failed_runs_days,"
        " conversations_days = excluded.conversations_days, updated_at = now()",
        {"owner": owner, **{f: values.get(f) for f in OWNER_FIELDS}},
    )


async def set_workflow_policy(
    conn: Conn, owner: UUID, workflow_id: UUID, values: dict[str, int | None]
) -> None:
    """Replace a workflow's overrides (all None: the row goes). The caller checked that the
    workflow is the owner's."""
    if all(values.get(f) is None for f in WORKFLOW_FIELDS):
        await conn.execute("delete from retention_policies where workflow_id = %s", (workflow_id,))
        return
    await conn.execute(
        "insert into retention_policies (owner_id, workflow_id, succeeded_runs_days,"
        " failed_runs_days) values (%(owner)s, %(workflow)s, %(succeeded_runs_days)s,"
        " %(failed_runs_days)s)"
        " on conflict (workflow_id) where workflow_id is not null do update set"
        " succeeded_runs_days = excluded.succeeded_runs_days,"
        " failed_runs_days = excluded.failed_runs_days, updated_at = now()",
        {"owner": owner, "workflow": workflow_id, **{f: values.get(f) for f in WORKFLOW_FIELDS}},
    )


# -- scanning ------------------------------------------------------------------------------


def _run_policies(r: str) -> str:
    """Joins of run ``r``'s workflow override (``wp``) and owner override (``op``)."""
    return (
        f" left join retention_policies wp on wp.workflow_id = {r}.workflow_id"
        f" left join retention_policies op on op.owner_id = {r}.owner_id"
        " and op.workflow_id is null"
    )


def _run_due(r: str) -> str:
    """Run ``r`` is finished and older than its workflow's, else its owner's, else the
    deployment's days for its status (with :func:`_run_policies` joined)."""
    days = (
        f"case when {r}.status = 'succeeded'"
        " then coalesce(wp.succeeded_runs_days, op.succeeded_runs_days, %(succeeded)s)"
        " else coalesce(wp.failed_runs_days, op.failed_runs_days, %(failed)s) end"
    )
    return f"{r}.status in {TERMINAL} and {r}.finished_at < %(now)s - make_interval(days => {days})"


#: Events and webhook deliveries: the longer of the owner's two run policies.
_EVENT_DAYS = (
    "greatest(coalesce(op.succeeded_runs_days, %(succeeded)s),"
    " coalesce(op.failed_runs_days, %(failed)s))"
)
_OWNER_POLICY = (
    " left join retention_policies op on op.owner_id = s.owner_id and op.workflow_id is null"
)


@dataclass(frozen=True)
class Scanned:
    """One batch's scan: how many rows it looked at, the cursor after the last of them, and
    the due ones as ``(id, stamp)`` (the stamp, e.g. ``finished_at``, is checked again when
    the row is locked: a run retried meanwhile is no longer the run that was due)."""

    seen: int
    after: tuple[datetime, Any] | None
    due: list[tuple[Any, datetime]]


@dataclass(frozen=True)
class Family:
    """A kind of row the pruner removes: ``table`` (its primary rows); ``scan_sql``, which
    reads up to ``%(limit)s`` candidates past the cursor along an index and says which are
    ``due`` (``{dry}``: whether a dry run asks); ``start``, the cursor before the oldest row;
    ``lock_sql``, which locks those still as scanned; and what deleting (or, in a dry run,
    counting) a batch of locked ids takes with it."""

    table: str
    scan_sql: str
    start: tuple[datetime, Any]
    delete: Callable[[Conn, list[Any]], Awaitable[Counts]]
    count: Callable[[Conn, list[Any]], Awaitable[Counts]]
    lock_sql: str

    async def scan(
        self,
        conn: Conn,
        *,
        now: datetime,
        defaults: Defaults,
        horizon: datetime,
        after: tuple[datetime, Any] | None,
        limit: int,
        dry_run: bool = False,
    ) -> Scanned:
        """Look at up to ``limit`` candidates older than ``horizon`` past ``after`` (None: from
        the oldest), and say which are due at ``now``."""
        at, ident = after or self.start
        cur = await conn.execute(
            self.scan_sql.format(dry=dry_run).encode(),
            {
                **defaults.params(),
                "now": now,
                "horizon": horizon,
                "after_at": at,
                "after_id": ident,
                "limit": limit,
            },
        )
        rows = await cur.fetchall()
        last = (rows[-1]["at"], rows[-1]["id"]) if rows else None
        return Scanned(len(rows), last, [(r["id"], r["at"]) for r in rows if r["due"]])

    async def lock(self, conn: Conn, due: Sequence[tuple[Any, datetime]]) -> list[Any]:
        """Lock those of ``due`` that are still as scanned and not locked by anyone else;
        returns their ids (inside a transaction)."""
        if not due:
            return []
        cur = await conn.execute(
            self.lock_sql.encode(), ([ident for ident, _ in due], [stamp for _, stamp in due])
        )
        return [row["id"] for row in await cur.fetchall()]


#: What goes with a run, child tables first: (table, column naming the run).
RUN_CHILDREN = (
    ("workflow_logs", "run_id"),
    ("step_checkpoints", "run_id"),
    ("step_attempts", "run_id"),
    ("run_waits", "run_id"),
)


_NEVER = datetime.fromisoformat("0001-01-01T00:00:00+00:00")
_NO_UUID = UUID(int=0)

RUNS = Family(
    table="workflow_runs",
    scan_sql=(
        f"select r.id, r.finished_at as at, {_run_due('r')} as due"
        " from (select id, finished_at, status, owner_id, workflow_id from workflow_runs"
        f"  where status in {TERMINAL} and finished_at < %(horizon)s"
        "    and (finished_at, id) > (%(after_at)s, %(after_id)s)"
        "  order by finished_at, id limit %(limit)s) r"
        f"{_run_policies('r')} order by r.finished_at, r.id"
    ),
    start=(_NEVER, _NO_UUID),
    delete=lambda conn, ids: delete_runs(conn, ids),
    count=lambda conn, ids: count_runs(conn, ids),
    lock_sql=(
        "select r.id from workflow_runs r"
        " join unnest(%s::uuid[], %s::timestamptz[]) as d (id, at)"
        f" on r.id = d.id and r.finished_at = d.at where r.status in {TERMINAL}"
        " order by r.id for update of r skip locked"
    ),
)

SESSIONS = Family(
    table="sessions",
    scan_sql=(
        "select s.id, s.closed_at as at, s.closed_at < %(now)s -"
        " make_interval(days => coalesce(op.conversations_days, %(conversations)s)) as due"
        " from (select id, closed_at, owner_id from sessions"
        "  where status = 'closed' and closed_at < %(horizon)s"
        "    and (closed_at, id) > (%(after_at)s, %(after_id)s)"
        f"  order by closed_at, id limit %(limit)s) s{_OWNER_POLICY}"
        " order by s.closed_at, s.id"
    ),
    start=(_NEVER, _NO_UUID),
    delete=lambda conn, ids: delete_sessions(conn, ids),
    count=lambda conn, ids: count_sessions(conn, ids),
    lock_sql=(
        "select s.id from sessions s join unnest(%s::uuid[], %s::timestamptz[]) as d (id, at)"
        " on s.id = d.id and s.closed_at = d.at where s.status = 'closed'"
        " order by s.id for update of s skip locked"
    ),
)

DELIVERIES = Family(
    table="webhook_deliveries",
    scan_sql=(
        "select s.id, s.received_at as at,"
        f" s.received_at < %(now)s - make_interval(days => {_EVENT_DAYS}) as due"
        " from (select id, received_at, owner_id from webhook_deliveries"
        "  where received_at < %(horizon)s and (received_at, id) > (%(after_at)s, %(after_id)s)"
        f"  order by received_at, id limit %(limit)s) s{_OWNER_POLICY}"
        " order by s.received_at, s.id"
    ),
    start=(_NEVER, 0),
    delete=lambda conn, ids: delete_rows(conn, ids, [("webhook_deliveries", "id")]),
    count=lambda conn, ids: count_rows(conn, ids, [("webhook_deliveries", "id")]),
    lock_sql=(
        "select w.id from webhook_deliveries w"
        " join unnest(%s::bigint[], %s::timestamptz[]) as d (id, at)"
        " on w.id = d.id and w.received_at = d.at order by w.id for update of w skip locked"
    ),
)

EVENTS = Family(
    table="events",
    scan_sql=(
        "select s.id, s.created_at as at,"
        f" s.created_at < %(now)s - make_interval(days => {_EVENT_DAYS}) as due"
        " from (select id, created_at, owner_id from events"
        "  where created_at < %(horizon)s and (created_at, id) > (%(after_at)s, %(after_id)s)"
        f"  order by created_at, id limit %(limit)s) s{_OWNER_POLICY}"
        " order by s.created_at, s.id"
    ),
    start=(_NEVER, _NO_UUID),
    delete=lambda conn, ids: delete_events(conn, ids),
    count=lambda conn, ids: count_events(conn, ids),
    lock_sql=(
        "select e.id from events e join unnest(%s::uuid[], %s::timestamptz[]) as d (id, at)"
        " on e.id = d.id and e.created_at = d.at order by e.id for update of e skip locked"
    ),
)

#: A workflow the pruner may remove: a stored copy of an unsaved blueprint, or archived; never
#: the system's own (found again by name), never an active one. (Index:
#: ``workflows_disposable_idx``.)
_DISPOSABLE = (
    "(w.origin in ('adhoc', 'channel') or w.archived_at is not null)"
    " and w.active_version is null and w.origin <> 'system'"
)

WORKFLOWS = Family(
    table="workflows",
    scan_sql=(
        "select w.id, w.updated_at as at,"
        " w.updated_at < %(now)s - make_interval(days =>"
        " coalesce(wp.succeeded_runs_days, op.succeeded_runs_days, %(succeeded)s))"
        # no run of it is left (a dry run, which deletes no runs: every run of it is due)
        " and not exists (select 1 from workflow_runs r"
        f"{_run_policies('r')} where r.workflow_id = w.id"
        f" and ({{dry}} is false or not coalesce({_run_due('r')}, false))) as due"
        " from (select w.* from workflows w"
        f"  where {_DISPOSABLE} and w.updated_at < %(horizon)s"
        "    and (w.updated_at, w.id) > (%(after_at)s, %(after_id)s)"
        "  order by w.updated_at, w.id limit %(limit)s) w"
        " left join retention_policies wp on wp.workflow_id = w.id"
        " left join retention_policies op on op.owner_id = w.owner_id and op.workflow_id is null"
        " order by w.updated_at, w.id"
    ),
    start=(_NEVER, _NO_UUID),
    delete=lambda conn, ids: delete_workflows(conn, ids),
    count=lambda conn, ids: count_rows(
        conn, ids, [("workflow_versions", "workflow_id"), ("workflows", "id")]
    ),
    lock_sql=(
        "select w.id from workflows w join unnest(%s::uuid[], %s::timestamptz[]) as d (id, at)"
        f" on w.id = d.id and w.updated_at = d.at where {_DISPOSABLE}"
        " order by w.id for update of w skip locked"
    ),
)

#: In the order a pass prunes them: a workflow goes once its runs went; an event once its
#: deliveries went.
FAMILIES = (RUNS, SESSIONS, DELIVERIES, EVENTS, WORKFLOWS)
#: Every table a pass deletes from, in that order.
PRUNED_TABLES = (
    "workflow_runs",
    *(table for table, _ in RUN_CHILDREN),
    "sessions",
    "session_messages",
    "webhook_deliveries",
    "events",
    "workflows",
    "workflow_versions",
)


async def horizons(conn: Conn, defaults: Defaults, now: datetime) -> dict[str, datetime]:
    """Per family (by table), the time before which a row may be due at ``now`` under some
    policy: scans start at the oldest row and stop there."""
    cur = await conn.execute(
        "select least(%(succeeded)s, %(failed)s, min(succeeded_runs_days),"
        " min(failed_runs_days)) as runs,"
        " least(%(conversations)s, min(conversations_days)) as sessions,"
        " least(greatest(%(succeeded)s, %(failed)s),"
        f"  min({_EVENT_DAYS}) filter (where op.workflow_id is null)) as events"
        " from retention_policies op",
        defaults.params(),
    )
    row = await cur.fetchone()
    assert row is not None
    days = {
        "workflow_runs": row["runs"],
        "sessions": row["sessions"],
        "webhook_deliveries": row["events"],
        "events": row["events"],
        "workflows": row["runs"],
    }
    return {table: now - timedelta(days=n) for table, n in days.items()}


# -- deleting (shared with erasure) --------------------------------------------------------


async def delete_rows(conn: Conn, ids: list[Any], tables: Sequence[tuple[str, str]]) -> Counts:
    """``delete from <table> where <column> = any(ids)`` for each, in order; rows per table."""
    counts = Counts()
    if not ids:
        return counts
    for table, column in tables:
        cur = await conn.execute(f"delete from {table} where {column} = any(%s)".encode(), (ids,))
        counts[table] += cur.rowcount
    return counts


async def count_rows(conn: Conn, ids: list[Any], tables: Sequence[tuple[str, str]]) -> Counts:
    """What :func:`delete_rows` would delete."""
    counts = Counts()
    if not ids:
        return counts
    for table, column in tables:
        cur = await conn.execute(
            f"select count(*) as n from {table} where {column} = any(%s)".encode(), (ids,)
        )
        row = await cur.fetchone()
        counts[table] += 0 if row is None else int(row["n"])
    return counts


async def delete_runs(conn: Conn, run_ids: list[UUID]) -> Counts:
    """Delete runs with their log rows, checkpoints, attempt counts and waits (the caller has
    locked them, inside a transaction)."""
    return await delete_rows(conn, run_ids, [*RUN_CHILDREN, ("workflow_runs", "id")])


async def count_runs(conn: Conn, run_ids: list[UUID]) -> Counts:
    """What :func:`delete_runs` would delete."""
    return await count_rows(conn, run_ids, [*RUN_CHILDREN, ("workflow_runs", "id")])


async def audio_keys(conn: Conn, session_ids: list[UUID]) -> list[str]:
    """The keys of the audio kept for these sessions' messages (``media.audio.key``)."""
    if not session_ids:
        return []
    cur = await conn.execute(
        "select media->'audio'->>'key' as key from session_messages"
        " where session_id = any(%s) and media->'audio'->>'key' is not null",
        (session_ids,),
    )
    return [row["key"] for row in await cur.fetchall()]


async def delete_sessions(conn: Conn, session_ids: list[UUID]) -> Counts:
    """Delete conversations with their messages (transcripts and media references)."""
    return await delete_rows(
        conn, session_ids, [("session_messages", "session_id"), ("sessions", "id")]
    )


async def count_sessions(conn: Conn, session_ids: list[UUID]) -> Counts:
    """What :func:`delete_sessions` would delete."""
    return await count_rows(
        conn, session_ids, [("session_messages", "session_id"), ("sessions", "id")]
    )


async def delete_events(conn: Conn, event_ids: list[UUID]) -> Counts:
    """Delete events with the webhook deliveries that produced them."""
    return await delete_rows(
        conn, event_ids, [("webhook_deliveries", "event_id"), ("events", "id")]
    )


async def count_events(conn: Conn, event_ids: list[UUID]) -> Counts:
    """What :func:`delete_events` would delete."""
    return await count_rows(conn, event_ids, [("webhook_deliveries", "event_id"), ("events", "id")])


async def delete_workflows(conn: Conn, workflow_ids: list[UUID]) -> Counts:
    """Delete locked workflows that no run refers to, with their versions (and schedules and
    overrides, by cascade). Checked again here, in a statement after the lock: a run started
    before it committed is seen now, and one started later waits for the lock and then finds
    the workflow gone."""
    if not workflow_ids:
        return Counts()
    cur = await conn.execute(
        "select w.id from unnest(%s::uuid[]) as w (id)"
        " where not exists (select 1 from workflow_runs r where r.workflow_id = w.id)",
        (workflow_ids,),
    )
    runless = [row["id"] for row in await cur.fetchall()]
    return await delete_rows(
        conn, runless, [("workflow_versions", "workflow_id"), ("workflows", "id")]
    )


async def bound(conn: Conn, statement_seconds: float, lock_seconds: float = 1.0) -> None:
    """Bound this transaction's statements and lock waits (``SET LOCAL``): a batch that would
    wait on someone's lock or run long gives up instead of holding others up."""
    await conn.execute(f"set local statement_timeout = {int(statement_seconds * 1000)}".encode())
    await conn.execute(f"set local lock_timeout = {int(lock_seconds * 1000)}".encode())
