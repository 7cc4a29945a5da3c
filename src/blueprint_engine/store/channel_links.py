"""Channel links: which user a WhatsApp number acts for, the one-time codes that link it, and
the senders already told how to link. Numbers are E.164 (``+919876543210``)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn


async def owner_of(conn: Conn, channel: str, number: str) -> UUID | None:
    """The user the number is linked to, or None."""
    cur = await conn.execute(
        "select owner_id from channel_links where channel = %s and number = %s",
        (channel, number),
    )
    row = await cur.fetchone()
    return None if row is None else UUID(str(row["owner_id"]))


async def links_of(conn: Conn, owner: UUID) -> list[DictRow]:
    """The user's linked numbers, oldest first: ``{id, channel, number, linked_at}``."""
    cur = await conn.execute(
        "select id, channel, number, linked_at from channel_links"
        " where owner_id = %s order by linked_at, id",
        (owner,),
    )
    return await cur.fetchall()


async def link(conn: Conn, owner: UUID, channel: str, number: str) -> bool:
    """Link the number to the user. False when it is linked already (to anyone)."""
    cur = await conn.execute(
        "insert into channel_links (owner_id, channel, number) values (%s, %s, %s)"
        " on conflict (channel, number) do nothing returning id",
        (owner, channel, number),
    )
    return await cur.fetchone() is not None


async def unlink(conn: Conn, owner: UUID, channel: str, number: str) -> bool:
    """Unlink the user's number and drop their codes for it. False when it was not theirs."""
    await conn.execute(
        "delete from channel_link_codes where owner_id = %s and channel = %s and number = %s",
        (owner, channel, number),
    )
    cur = await conn.execute(
        "delete from channel_links where owner_id = %s and channel = %s and number = %s",
        (owner, channel, number),
    )
    return cur.rowcount == 1


async def put_code(
    conn: Conn,
    code_id: UUID,
    owner: UUID,
    channel: str,
    number: str,
    code_sha256: str,
    ttl_seconds: float,
) -> datetime:
    """Store the user's code for the number, replacing their previous one (and its count of
    wrong attempts) and their expired codes. Returns when it expires."""
    await conn.execute(
        "delete from channel_link_codes where owner_id = %s and expires_at <= now()", (owner,)
    )
    cur = await conn.execute(
        "insert into channel_link_codes (id, owner_id, channel, number, code_sha256, expires_at)"
        " values (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
        " on conflict (owner_id, channel, number) do update set id = excluded.id,"
        " code_sha256 = excluded.code_sha256, attempts = 0, expires_at = excluded.expires_at,"
        " created_at = now()"
        " returning expires_at",
        (code_id, owner, channel, number, code_sha256, ttl_seconds),
    )
    row = await cur.fetchone()
    assert row is not None
    expires_at: datetime = row["expires_at"]
    return expires_at


async def count_codes(conn: Conn, owner: UUID, *, besides: str) -> int:
    """How many live codes the user has for numbers other than ``besides``."""
    cur = await conn.execute(
        "select count(*) as n from channel_link_codes"
        " where owner_id = %s and expires_at > now() and number <> %s",
        (owner, besides),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def live_codes(conn: Conn, channel: str, number: str, max_attempts: int) -> list[DictRow]:
    """The number's codes that still work (not expired, fewer than ``max_attempts`` wrong
    tries), newest first, locked for this transaction: ``{id, owner_id, code_sha256,
    attempts}``."""
    cur = await conn.execute(
        "select id, owner_id, code_sha256, attempts from channel_link_codes"
        " where channel = %s and number = %s and expires_at > now() and attempts < %s"
        " order by created_at desc for update",
        (channel, number, max_attempts),
    )
    return await cur.fetchall()


async def count_wrong(conn: Conn, code_ids: list[UUID]) -> int:
    """Count one wrong attempt against each code; returns the fewest attempts now on any."""
    cur = await conn.execute(
        "update channel_link_codes set attempts = attempts + 1 where id = any(%s)"
        " returning attempts",
        (code_ids,),
    )
    return min(int(row["attempts"]) for row in await cur.fetchall())


async def drop_code(conn: Conn, code_id: UUID) -> None:
    """Delete a used code."""
    await conn.execute("delete from channel_link_codes where id = %s", (code_id,))


async def claim_hint(conn: Conn, channel: str, number: str, interval_seconds: float) -> bool:
    """Whether the sender may be told how to link now: True at most once per
    ``interval_seconds`` per number (concurrent messages: one wins). Forgets senders hinted
    longer ago than that."""
    await conn.execute(
        "delete from channel_hints where hinted_at <= now() - make_interval(secs => %s)",
        (interval_seconds,),
    )
    cur = await conn.execute(
        "insert into channel_hints (channel, number) values (%s, %s)"
        " on conflict (channel, number) do nothing returning hinted_at",
        (channel, number),
    )
    return await cur.fetchone() is not None
