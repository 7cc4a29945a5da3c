"""Users and their personal API keys."""

from __future__ import annotations

from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn

#: Owns everything when no identity is configured, and everything older than accounts.
LOCAL_USER_ID = UUID("00000000-0000-0000-0000-000000000001")


async def ensure_user(
    conn: Conn, user_id: UUID, *, email: str | None = None, phone: str | None = None
) -> None:
    """Create the user on first sight (a Supabase Auth user's first request); an existing
    profile is left as it is."""
    await conn.execute(
        "insert into users (id, email, phone) values (%s, %s, %s) on conflict (id) do nothing",
        (user_id, email, phone),
    )


async def get_user(conn: Conn, user_id: UUID) -> DictRow | None:
    """The user's profile row, or None."""
    cur = await conn.execute(
        "select id, display_name, email, phone, created_at, updated_at from users where id = %s",
        (user_id,),
    )
    return await cur.fetchone()


async def update_profile(
    conn: Conn, user_id: UUID, changes: dict[str, str | None]
) -> DictRow | None:
    """Set some of ``display_name``, ``email``, ``phone``; returns the new profile."""
    columns = [c for c in ("display_name", "email", "phone") if c in changes]
    if not columns:
        return await get_user(conn, user_id)
    assignments = ", ".join(f"{c} = %({c})s" for c in columns)
    params: dict[str, object] = {c: changes[c] for c in columns}
    params["id"] = user_id
    cur = await conn.execute(
        f"update users set {assignments}, updated_at = now() where id = %(id)s"
        " returning id, display_name, email, phone, created_at, updated_at",
        params,
    )
    return await cur.fetchone()


async def create_key(
    conn: Conn, user_id: UUID, *, name: str, prefix: str, key_sha256: str
) -> DictRow:
    """Store a new API key (its hash). Returns the row without the hash."""
    cur = await conn.execute(
        "insert into api_keys (user_id, name, prefix, key_sha256) values (%s, %s, %s, %s)"
        " returning id, name, prefix, created_at, last_used_at",
        (user_id, name, prefix, key_sha256),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def list_keys(conn: Conn, user_id: UUID) -> list[DictRow]:
    """The user's keys that are not revoked, newest first (names and prefixes only)."""
    cur = await conn.execute(
        "select id, name, prefix, created_at, last_used_at from api_keys"
        " where user_id = %s and revoked_at is null order by created_at desc",
        (user_id,),
    )
    return await cur.fetchall()


async def revoke_key(conn: Conn, user_id: UUID, key_id: UUID) -> bool:
    """Revoke one of the user's keys. Returns False when it is not theirs or already revoked."""
    cur = await conn.execute(
        "update api_keys set revoked_at = now()"
        " where id = %s and user_id = %s and revoked_at is null",
        (key_id, user_id),
    )
    return cur.rowcount == 1


async def user_for_key(conn: Conn, key_sha256: str) -> UUID | None:
    """The owner of a live key, noting its use (at most once a minute, to spare writes)."""
    cur = await conn.execute(
        "update api_keys set last_used_at = now()"
        " where key_sha256 = %s and revoked_at is null"
        " and (last_used_at is null or last_used_at < now() - interval '1 minute')"
        " returning user_id",
        (key_sha256,),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "select user_id from api_keys where key_sha256 = %s and revoked_at is null",
            (key_sha256,),
        )
        row = await cur.fetchone()
    return None if row is None else UUID(str(row["user_id"]))
