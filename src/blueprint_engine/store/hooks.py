"""The ``workflow_hooks`` table: each webhook-triggered workflow's hook token, as its SHA-256.

A hook belongs to its workflow (and through it to the workflow's owner); reads a caller makes
are scoped to the owner. :func:`target` is unscoped: a delivery is addressed by workflow id
and proves itself with the token.
"""

from __future__ import annotations

from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn

#: What the owner sees (never the hash): the hook, whether it answers now (``live``: the
#: workflow is active, not archived, and its active version's trigger is ``webhook``) and
#: whether that trigger checks signatures (``signed``: it names a credential).
_PUBLIC = """
select h.workflow_id, h.token_hint, h.created_at, h.rotated_at, h.last_used_at,
       coalesce(w.archived_at is null and v.trigger_kind = 'webhook', false) as live,
       coalesce(jsonb_path_exists(
           v.blueprint, '$.nodes[*] ? (@.type == "trigger" && exists(@.credential))'), false)
           as signed
  from workflow_hooks h
  join workflows w on w.id = h.workflow_id
  left join workflow_versions v on v.workflow_id = w.id and v.version = w.active_version
 where h.workflow_id = %s and w.owner_id = %s
"""


async def create(conn: Conn, workflow_id: UUID, *, token_sha256: str, hint: str) -> bool:
    """Give the workflow a hook, unless it has one. Returns whether this call made it."""
    cur = await conn.execute(
        "insert into workflow_hooks (workflow_id, token_sha256, token_hint) values (%s, %s, %s)"
        " on conflict (workflow_id) do nothing",
        (workflow_id, token_sha256, hint),
    )
    return cur.rowcount == 1


async def replace_token(conn: Conn, workflow_id: UUID, *, token_sha256: str, hint: str) -> None:
    """Give the workflow a new token (making its hook if it has none): the old one stops
    working when this commits."""
    await conn.execute(
        "insert into workflow_hooks (workflow_id, token_sha256, token_hint) values (%s, %s, %s)"
        " on conflict (workflow_id) do update set token_sha256 = excluded.token_sha256,"
        " token_hint = excluded.token_hint, rotated_at = now()",
        (workflow_id, token_sha256, hint),
    )


async def get(conn: Conn, workflow_id: UUID, owner: UUID) -> DictRow | None:
    """The owner's workflow's hook (see ``_PUBLIC``; never the hash), or None."""
    cur = await conn.execute(_PUBLIC, (workflow_id, owner))
    return await cur.fetchone()


async def target(conn: Conn, workflow_id: UUID) -> DictRow | None:
    """What a delivery to the workflow's hook needs, if it is live (the workflow is active, not
    archived, and its active version's trigger is ``webhook``): ``{token_sha256, owner_id,
    version, trigger}`` where ``trigger`` is that version's trigger node as stored. None
    otherwise."""
    cur = await conn.execute(
        "select h.token_sha256, w.owner_id, w.active_version as version,"
        " jsonb_path_query_first(v.blueprint, '$.nodes[*] ? (@.type == \"trigger\")') as trigger"
        " from workflow_hooks h"
        " join workflows w on w.id = h.workflow_id"
        " join workflow_versions v on v.workflow_id = w.id and v.version = w.active_version"
        " where h.workflow_id = %s and w.archived_at is null and v.trigger_kind = 'webhook'",
        (workflow_id,),
    )
    return await cur.fetchone()


async def note_use(conn: Conn, workflow_id: UUID) -> None:
    """Record that the hook was called (at most once a minute, to spare writes)."""
    await conn.execute(
        "update workflow_hooks set last_used_at = now() where workflow_id = %s"
        " and (last_used_at is null or last_used_at < now() - interval '1 minute')",
        (workflow_id,),
    )
