"""Which workflows a blueprint runs as child runs, checked when it is saved or activated.

Every ``workflow`` node (and ``foreach`` over a saved workflow) must name one of the owner's
own workflows, at a version that exists; and following those calls through the called
workflows' own blueprints (their pinned version, else the active one) must never lead back
to the workflow being saved: a cycle would start runs forever. At run time a chain deeper
than ``SUBWORKFLOW_MAX_DEPTH`` fails as well, for cycles made by activating older versions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from blueprint_engine.errors import InvalidBlueprint
from blueprint_engine.store.db import Conn
from blueprint_engine.workflows.nodes import Node
from blueprint_engine.workflows.schema import Blueprint

#: Most workflows one check follows (a bound on the walk, not a product limit).
MAX_FOLLOWED = 500


def _calls(nodes: list[Node]) -> list[tuple[int, UUID, int | None]]:
    return [(i, wid, version) for i, node in enumerate(nodes) for wid, version in node.calls()]


def _call_sites(
    nodes: list[Node], loc: list[str | int]
) -> Iterator[tuple[list[str | int], Node, UUID, int | None]]:
    """Each call with the path of the field that makes it and the node it is on: a loop
    body's calls at their own node (``nodes.<i>.body.nodes.<j>.workflow_id``), not at the
    loop's."""
    for i, node in enumerate(nodes):
        body = getattr(node, "body", None)
        if body is not None:
            yield from _call_sites(body.nodes, [*loc, i, "body", "nodes"])
            continue
        field = "workflow_id" if node.type == "workflow" else "workflow"
        for wid, version in node.calls():
            yield [*loc, i, field], node, wid, version


async def _blueprint_of(conn: Conn, owner: UUID, wid: UUID, version: int | None) -> Any:
    """The called version's blueprint JSON; None when it is not the owner's (or archived, or
    that version does not exist); ``{}`` when it has no active version yet."""
    cur = await conn.execute(
        "select w.active_version, v.blueprint from workflows w"
        " left join workflow_versions v on v.workflow_id = w.id"
        "  and v.version = coalesce(%s, w.active_version)"
        " where w.id = %s and w.owner_id = %s and w.archived_at is null",
        (version, wid, owner),
    )
    row = await cur.fetchone()
    if row is None or (version is not None and row["blueprint"] is None):
        return None
    return row["blueprint"] or {}


async def check_calls(
    conn: Conn, blueprint: Blueprint, owner: UUID, workflow_id: UUID | None = None
) -> None:
    """Refuse calls to workflows that are not ``owner``'s and calls that lead back to
    ``workflow_id`` (the workflow being saved; None for a new or ad-hoc one).

    Raises:
        InvalidBlueprint: 422 at ``nodes.<i>.workflow_id`` (or ``.workflow``; in a loop body
            ``nodes.<i>.body.nodes.<j>...``) naming the node that makes the call.
    """
    issues: list[dict[str, Any]] = []
    for loc, node, wid, version in _call_sites(blueprint.nodes, ["nodes"]):
        called = await _blueprint_of(conn, owner, wid, version)
        if called is None:
            what = f"workflow {wid}" + (f" version {version}" if version else "")
            issues.append(
                {"loc": loc, "node_id": node.id, "message": f"{what} is not one of yours"}
            )
            continue
        path = await _path_back(conn, owner, wid, called, workflow_id)
        if path is not None:
            chain = " -> ".join(str(step) for step in [workflow_id, *path])
            issues.append(
                {
                    "loc": loc,
                    "node_id": node.id,
                    "message": f"workflows would call each other in a cycle ({chain})",
                }
            )
    if issues:
        raise InvalidBlueprint(issues)


async def _path_back(
    conn: Conn, owner: UUID, start: UUID, blueprint: Any, target: UUID | None
) -> list[UUID] | None:
    """The chain of calls from ``start`` back to ``target``, if any (breadth first)."""
    if target is None:
        return None
    if start == target:
        return [start]
    queue: deque[tuple[list[UUID], Any]] = deque([([start], blueprint)])
    seen = {start}
    while queue and len(seen) <= MAX_FOLLOWED:
        path, data = queue.popleft()
        try:
            nodes = Blueprint.model_validate(data).nodes if data else []
        except ValueError:
            continue  # saved under older rules; its own save checked it
        for _, wid, version in _calls(nodes):
            if wid == target:
                return [*path, wid]
            if wid in seen:
                continue
            seen.add(wid)
            called = await _blueprint_of(conn, owner, wid, version)
            if called:
                queue.append(([*path, wid], called))
    return None
