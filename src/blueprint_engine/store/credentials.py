"""The ``credentials`` table: each user's connections, their secrets as Fernet tokens.

Listing queries never select ``secret``; only :func:`secret_by_name` and :func:`by_id` (for a
step or a webhook about to use it) and the key rotation read it.
"""

from __future__ import annotations

from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn

#: What a listing shows: never the secret.
_PUBLIC = "id, name, type, hint, created_at, updated_at, last_used_at"


async def create(
    conn: Conn, owner: UUID, *, name: str, kind: str, secret: str, hint: str
) -> DictRow | None:
    """Store a new credential. Returns its public row, or None when the owner already has one
    of that name."""
    cur = await conn.execute(
        "insert into credentials (owner_id, name, type, secret, hint) values (%s, %s, %s, %s, %s)"
        f" on conflict (owner_id, name) do nothing returning {_PUBLIC}",
        (owner, name, kind, secret, hint),
    )
    return await cur.fetchone()


async def replace_secret(
    conn: Conn, owner: UUID, name: str, *, secret: str, hint: str
) -> DictRow | None:
    """Put new data in the owner's credential ``name`` (same type). None if there is none."""
    cur = await conn.execute(
        "update credentials set secret = %s, hint = %s, updated_at = now()"
        f" where owner_id = %s and name = %s returning {_PUBLIC}",
        (secret, hint, owner, name),
    )
    return await cur.fetchone()


async def get(conn: Conn, owner: UUID, name: str) -> DictRow | None:
    """The owner's credential ``name`` without its secret, or None."""
    cur = await conn.execute(
        f"select {_PUBLIC} from credentials where owner_id = %s and name = %s", (owner, name)
    )
    return await cur.fetchone()


async def list_for(conn: Conn, owner: UUID) -> list[DictRow]:
    """The owner's credentials by name, without secrets."""
    cur = await conn.execute(
        f"select {_PUBLIC} from credentials where owner_id = %s order by name", (owner,)
    )
    return await cur.fetchall()


async def kinds(conn: Conn, owner: UUID, names: list[str]) -> dict[str, str]:
    """``{name: type}`` for those of ``names`` the owner has."""
    if not names:
        return {}
    cur = await conn.execute(
        "select name, type from credentials where owner_id = %s and name = any(%s)",
        (owner, names),
    )
    return {row["name"]: row["type"] for row in await cur.fetchall()}


async def delete(conn: Conn, owner: UUID, name: str) -> bool:
    """Delete the owner's credential ``name``; False when there is none."""
    cur = await conn.execute(
        "delete from credentials where owner_id = %s and name = %s", (owner, name)
    )
    return cur.rowcount == 1


async def secret_by_name(conn: Conn, owner: UUID, name: str) -> DictRow | None:
    """``{id, type, secret}`` of the owner's credential ``name`` for a step about to use it,
    noting the use (at most once a minute, to spare writes)."""
    cur = await conn.execute(
        "update credentials set last_used_at = now()"
        " where owner_id = %s and name = %s"
        " and (last_used_at is null or last_used_at < now() - interval '1 minute')"
        " returning id, type, secret",
        (owner, name),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "select id, type, secret from credentials where owner_id = %s and name = %s",
            (owner, name),
        )
        row = await cur.fetchone()
    return row


async def by_id(conn: Conn, credential_id: UUID) -> DictRow | None:
    """``{id, owner_id, name, type, secret}`` of any owner's credential (a webhook addressed
    to it), or None."""
    cur = await conn.execute(
        "select id, owner_id, name, type, secret from credentials where id = %s",
        (credential_id,),
    )
    return await cur.fetchone()


async def users_of(conn: Conn, owner: UUID, name: str) -> list[DictRow]:
    """The owner's active workflows whose live version names credential ``name`` (id, name)."""
    cur = await conn.execute(
        "select w.id, w.name from workflows w"
        " join workflow_versions v on v.workflow_id = w.id and v.version = w.active_version"
        " where w.owner_id = %s and w.archived_at is null"
        " and jsonb_path_exists(v.blueprint, '$.nodes[*] ? (@.credential == $name)',"
        " jsonb_build_object('name', %s::text))"
        " order by w.name, w.id",
        (owner, name),
    )
    return await cur.fetchall()


async def page_of_secrets(conn: Conn, after: UUID | None, limit: int) -> list[DictRow]:
    """Up to ``limit`` ``{id, secret}`` rows of every owner, by id after ``after`` (key
    rotation walks the table in batches), locked until the transaction ends."""
    cur = await conn.execute(
        "select id, secret from credentials where %(after)s::uuid is null or id > %(after)s"
        " order by id limit %(limit)s for update",
        {"after": after, "limit": limit},
    )
    return await cur.fetchall()


async def set_secret(conn: Conn, credential_id: UUID, secret: str) -> None:
    """Replace one credential's token (key rotation: same data, new key)."""
    await conn.execute("update credentials set secret = %s where id = %s", (secret, credential_id))
