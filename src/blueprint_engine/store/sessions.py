"""Conversation sessions and their messages, each owned by a user. A session is one per
(owner, channel, user reference): the same reference under another owner is another session."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.store.db import Conn, jsonb


async def open_for(conn: Conn, channel: str, user_ref: str, owner: UUID) -> DictRow:
    """The owner's open session of (channel, user), created if none (``created`` says so);
    marks activity now."""
    cur = await conn.execute(
        "insert into sessions (owner_id, channel, user_ref) values (%s, %s, %s)"
        " on conflict (owner_id, channel, user_ref) where status = 'open'"
        " do update set last_activity_at = now() returning *, (xmax = 0) as created",
        (owner, channel, user_ref),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def previous(conn: Conn, channel: str, user_ref: str, owner: UUID) -> DictRow | None:
    """The owner's most recently closed session of (channel, user), or None."""
    cur = await conn.execute(
        "select * from sessions where owner_id = %s and channel = %s and user_ref = %s"
        " and status = 'closed' order by closed_at desc nulls last, id desc limit 1",
        (owner, channel, user_ref),
    )
    return await cur.fetchone()


async def language(conn: Conn, channel: str, user_ref: str, owner: UUID) -> str | None:
    """The language (BCP 47 tag) of the owner's latest session with (channel, user), if any."""
    cur = await conn.execute(
        "select state ->> 'language' as language from sessions where owner_id = %s"
        " and channel = %s and user_ref = %s order by last_activity_at desc limit 1",
        (owner, channel, user_ref),
    )
    row = await cur.fetchone()
    return None if row is None else row["language"]


async def close(conn: Conn, session_id: UUID) -> bool:
    """Close the session now (the user said goodbye). Returns True if it was open."""
    cur = await conn.execute(
        "update sessions set status = 'closed', closed_at = now()"
        " where id = %s and status = 'open' returning id",
        (session_id,),
    )
    return await cur.fetchone() is not None


async def lock(conn: Conn, session_id: UUID) -> DictRow | None:
    """Lock a session row for this transaction (one message at a time per session)."""
    cur = await conn.execute("select * from sessions where id = %s for update", (session_id,))
    return await cur.fetchone()


async def get(conn: Conn, session_id: UUID, *, owner: UUID | None) -> DictRow | None:
    """The owner's session row, or None. ``owner`` None is for the system's own blueprints
    (session timeouts, channel replies), which hold the session's id: unscoped."""
    cur = await conn.execute(
        "select * from sessions where id = %s and (%s::uuid is null or owner_id = %s)",
        (session_id, owner, owner),
    )
    return await cur.fetchone()


_PAGE = """
select s.id, s.channel, s.user_ref, s.status, s.state -> 'pending' as pending,
       s.last_activity_at, s.closed_at, s.created_at,
       m.direction as last_direction, coalesce(m.text, m.transcript) as last_text,
       m.created_at as last_at
  from sessions s
  left join lateral (
      select direction, text, transcript, created_at from session_messages
       where session_id = s.id order by id desc limit 1
  ) m on true
 where s.owner_id = %(owner)s {before}
 order by s.last_activity_at desc, s.id desc
 limit %(limit)s
"""


async def page_for(
    conn: Conn, owner: UUID, *, limit: int, before: tuple[datetime, UUID] | None
) -> list[DictRow]:
    """The owner's sessions, latest activity first, keyset-paginated on ``(last_activity_at,
    id)``, each with its pending request and its last message (``last_direction``,
    ``last_text``: text or transcript, ``last_at``)."""
    params: dict[str, Any] = {"owner": owner, "limit": limit}
    condition = ""
    if before is not None:
        condition = "and (s.last_activity_at, s.id) < (%(at)s, %(id)s)"
        params |= {"at": before[0], "id": before[1]}
    cur = await conn.execute(_PAGE.format(before=condition), params)
    return await cur.fetchall()


async def save_state(conn: Conn, session_id: UUID, state: dict[str, Any]) -> None:
    """Store the slot-filling state."""
    await conn.execute(
        "update sessions set state = %s, last_activity_at = now() where id = %s",
        (jsonb(state), session_id),
    )


async def add_message(
    conn: Conn,
    session_id: UUID,
    direction: str,
    *,
    text: str | None = None,
    transcript: str | None = None,
    media: Any = None,
    intent: str | None = None,
    entities: Any = None,
    trace_id: str | None = None,
    provider_message_id: str | None = None,
    delivery: str | None = None,
) -> int:
    """Persist one message; returns its id."""
    cur = await conn.execute(
        "insert into session_messages (owner_id, session_id, direction, text, transcript,"
        " media, intent, entities, trace_id, provider_message_id, delivery)"
        " select owner_id, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s from sessions where id = %s"
        " returning id",
        (
            session_id,
            direction,
            text,
            transcript,
            jsonb(media),
            intent,
            jsonb(entities),
            trace_id,
            provider_message_id,
            delivery,
            session_id,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    message_id: int = row["id"]
    return message_id


async def add_audio(conn: Conn, message_id: int, audio: dict[str, Any]) -> None:
    """Reference kept audio from a message: ``media.audio`` (``services/audio_store.py``)."""
    await conn.execute(
        "update session_messages set media = coalesce(media, '{}'::jsonb)"
        " || jsonb_build_object('audio', %s::jsonb) where id = %s",
        (jsonb(audio), message_id),
    )


async def claim_delivery(conn: Conn, message_id: int, delivery: str, text: str | None) -> bool:
    """Claim who delivers an outbound reply (inline TwiML or the WhatsApp API); first wins."""
    cur = await conn.execute(
        "update session_messages set delivery = %s, text = coalesce(%s, text)"
        " where id = %s and delivery is null returning id",
        (delivery, text, message_id),
    )
    return await cur.fetchone() is not None


_MESSAGE = (
    "select id, direction, text, transcript, media, intent, entities, trace_id,"
    " provider_message_id, delivery, created_at, change_seq from session_messages"
)


async def message_changes(
    conn: Conn, session_id: UUID, *, after_seq: int, limit: int
) -> list[DictRow]:
    """Messages of a session added or changed after ``after_seq`` (their ``change_seq``), in
    change order: each once, as it is now."""
    cur = await conn.execute(
        _MESSAGE + " where session_id = %s and change_seq > %s order by change_seq limit %s",
        (session_id, after_seq, limit),
    )
    return await cur.fetchall()


async def messages_by_id(conn: Conn, session_id: UUID, message_ids: list[int]) -> list[DictRow]:
    """The given messages of a session as they are now, in change order."""
    cur = await conn.execute(
        _MESSAGE + " where session_id = %s and id = any(%s) order by change_seq",
        (session_id, message_ids),
    )
    return await cur.fetchall()


async def messages(conn: Conn, session_id: UUID) -> list[DictRow]:
    """All messages of a session, oldest first."""
    cur = await conn.execute(_MESSAGE + " where session_id = %s order by id", (session_id,))
    return await cur.fetchall()


async def close_if_idle(conn: Conn, session_id: UUID, idle_seconds: float) -> bool:
    """Close the session when nothing happened for ``idle_seconds``. Returns True if closed."""
    cur = await conn.execute(
        "update sessions set status = 'closed', closed_at = now()"
        " where id = %s and status = 'open'"
        " and last_activity_at <= now() - make_interval(secs => %s) returning id",
        (session_id, idle_seconds),
    )
    return await cur.fetchone() is not None


async def store_summary(conn: Conn, session_id: UUID, summary: str | None, source: str) -> None:
    """Attach the end-of-session summary."""
    await conn.execute(
        "update sessions set summary = %s, summary_source = %s where id = %s",
        (summary, source, session_id),
    )


async def annotate_message(
    conn: Conn, message_id: int, *, intent: str | None, entities: Any, trace_id: str | None
) -> None:
    """Attach what was understood to an inbound message."""
    await conn.execute(
        "update session_messages set intent = %s, entities = %s, trace_id = %s where id = %s",
        (intent, jsonb(entities), trace_id, message_id),
    )


async def set_timer(conn: Conn, session_id: UUID, run_id: UUID) -> None:
    """Record the run that is the session's inactivity timer."""
    await conn.execute("update sessions set timer_run_id = %s where id = %s", (run_id, session_id))
