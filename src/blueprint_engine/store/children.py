"""Child runs: the run a ``workflow`` node starts, and the wait its parent parks on.

A child is a row of ``workflow_runs`` with ``parent_run_id``/``parent_step_id`` (unique, so a
replayed start finds the same child) and ``depth`` (the parent's plus one). When it ends, a
trigger (migration ``child_runs``) resolves the parent's ``run_waits`` row of kind ``child``
with ``{run_id, status, output, error}`` and makes an embedded parent claimable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from blueprint_engine import metrics
from blueprint_engine.store import runs
from blueprint_engine.store.db import Conn, jsonb


@dataclass(frozen=True)
class ChildRun:
    """A child run to start: the owner's saved workflow ``workflow_id`` at ``version`` (None:
    the active version when the child starts), with ``input`` as its trigger data (None, a
    ``workflow`` node without ``input`` or a null loop item, is ``{}``, as an omitted payload
    is); the step that starts it waits at most ``timeout_seconds`` for its end. A child deeper
    than ``max_depth`` in a chain of child runs is refused."""

    workflow_id: UUID
    version: int | None
    input: Any
    timeout_seconds: float
    max_depth: int


class ChildRefused(Exception):
    """The child cannot start; ``code`` says why (``workflow_not_found``,
    ``workflow_not_active``, ``workflow_depth_exceeded``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_error(self) -> dict[str, str]:
        """The starting step's error: ``{code, message}``."""
        return {"code": self.code, "message": self.message}


async def start(conn: Conn, parent_run_id: UUID, step_id: str, child: ChildRun) -> dict[str, Any]:
    """Queue the child of step ``step_id`` (or find the one queued before), on the parent's
    engine, owned by the parent's owner, with the parent's owner profile.

    Returns:
        ``{"run_id", "workflow_id", "version", "owner_id", "engine", "created"}``.

    Raises:
        ChildRefused: the workflow is not the owner's (or archived), the pinned version does
            not exist, it has no active version, or the chain would be deeper than
            ``max_depth``.
    """
    workflow_id, version, max_depth = child.workflow_id, child.version, child.max_depth
    cur = await conn.execute(
        "select id, workflow_id, version, owner_id, engine from workflow_runs"
        " where parent_run_id = %s and parent_step_id = %s",
        (parent_run_id, step_id),
    )
    existing = await cur.fetchone()
    if existing is not None:
        return {**_described(existing), "created": False}
    cur = await conn.execute(
        "select r.owner_id, r.depth, r.engine, r.owner_profile, r.trace_id, r.sandbox,"
        " w.active_version, w.archived_at is null as live,"
        " exists (select 1 from workflow_versions v where v.workflow_id = w.id"
        "         and v.version = %(version)s) as has_version"
        " from workflow_runs r left join workflows w"
        "   on w.id = %(workflow_id)s and w.owner_id = r.owner_id"
        " where r.id = %(parent)s",
        {"parent": parent_run_id, "workflow_id": workflow_id, "version": version},
    )
    parent = await cur.fetchone()
    if parent is None:
        raise ChildRefused("run_not_found", f"run {parent_run_id} is gone")
    if parent["live"] is not True:
        raise ChildRefused(
            "workflow_not_found", f"workflow {workflow_id} is not one of the owner's workflows"
        )
    if version is None:
        version = parent["active_version"]
        if version is None:
            raise ChildRefused(
                "workflow_not_active",
                f"workflow {workflow_id} has no active version; activate it or pin a version",
            )
    elif not parent["has_version"]:
        raise ChildRefused("workflow_not_found", f"workflow {workflow_id} has no version {version}")
    if parent["depth"] + 1 > max_depth:
        raise ChildRefused(
            "workflow_depth_exceeded",
            f"workflows call each other more than {max_depth} deep (SUBWORKFLOW_MAX_DEPTH)",
        )
    cur = await conn.execute(
        "insert into workflow_runs (owner_id, workflow_id, version, trigger_data, engine,"
        " trace_id, owner_profile, parent_run_id, parent_step_id, depth, sandbox)"
        " values (%(owner)s, %(workflow_id)s, %(version)s, %(data)s, %(engine)s, %(trace)s,"
        " %(profile)s, %(parent)s, %(step)s, %(depth)s, %(sandbox)s)"
        " on conflict (parent_run_id, parent_step_id) where parent_run_id is not null"
        " do nothing returning id, workflow_id, version, owner_id, engine",
        {
            "owner": parent["owner_id"],
            "workflow_id": workflow_id,
            "version": version,
            "data": jsonb({} if child.input is None else child.input),
            "engine": parent["engine"],
            "trace": parent["trace_id"],
            "profile": jsonb(parent["owner_profile"]),
            "parent": parent_run_id,
            "step": step_id,
            "depth": parent["depth"] + 1,
            "sandbox": parent["sandbox"],
        },
    )
    row = await cur.fetchone()
    if row is not None:
        metrics.runs_started(row["engine"], [0])
    if row is None:  # a concurrent start of the same step won
        return await start(conn, parent_run_id, step_id, child)
    return {**_described(row), "created": True}


def _described(row: Any) -> dict[str, Any]:
    return {
        "run_id": row["id"],
        "workflow_id": row["workflow_id"],
        "version": row["version"],
        "owner_id": row["owner_id"],
        "engine": row["engine"],
    }


async def ended(conn: Conn, child_id: UUID) -> dict[str, Any] | None:
    """The child's end as its parent's wait records it, or None while it runs."""
    cur = await conn.execute(
        "select id as run_id, status, output, error from workflow_runs"
        " where id = %s and status in ('succeeded', 'failed', 'cancelled')",
        (child_id,),
    )
    row = await cur.fetchone()
    return None if row is None else dict(row)


async def cancel(conn: Conn, parent_run_id: UUID, step_id: str) -> list[UUID]:
    """Cancel the child of step ``step_id`` and its own children, unless they ended (the step
    stopped waiting for it: it timed out). Returns the ids cancelled."""
    cur = await conn.execute(
        "select id from workflow_runs where parent_run_id = %s and parent_step_id = %s",
        (parent_run_id, step_id),
    )
    return await runs.cancel_trees(conn, [row["id"] for row in await cur.fetchall()])
