"""Sessions: listing and reading them, closing them after inactivity with a durable engine
timer, and ending them when the user says goodbye.

A session's timer is one run of the system blueprint "session timeout": delay
``SESSION_TIMEOUT_SECONDS`` -> ``sessions.close_if_idle`` -> (closed?) ``llm.summarize`` ->
``sessions.store_summary``, kept in ``sessions.timer_run_id``. Each inbound message moves that
run's delay to end ``SESSION_TIMEOUT_SECONDS`` after the session's last activity; a new run
starts only when there is none it can move (the first message, a timer already due or done, a
changed timeout, or the Inngest engine, whose sleeps cannot be moved: there each message starts
its own run, and only the one after the last message acts). The timer is a run on the engine,
so it survives restarts.

A user who says goodbye ends the session at once (:func:`end`): it closes in the turn, and a
run of the system blueprint "session summary" (``sessions.transcript`` -> ``llm.summarize`` ->
``sessions.store_summary``) stores its summary straight away; the timer is moved to now, so it
finds the session closed and ends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from blueprint_engine.config import Settings
from blueprint_engine.errors import NotFound
from blueprint_engine.integrations import TOOL_REGISTRY
from blueprint_engine.services import paging, run_service, workflow_service
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import sessions as store
from blueprint_engine.store import steps as steps_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.runners import Dispatcher, QueuedRun
from blueprint_engine.workflows.schema import validate_blueprint


def _summarize_and_save(transcript: str) -> list[dict[str, Any]]:
    """The ``summarize`` and ``save`` nodes that end both session blueprints: summarise the
    transcript at ``transcript`` (an expression) and store it on the session; a model that
    fails leaves the summary empty, not the session open."""
    return [
        {
            "id": "summarize",
            "type": "action",
            "service": "llm",
            "task": "summarize",
            "on_error": "continue",
            "params": {"text": f"{{{{ {transcript} }}}}"},
        },
        {
            "id": "save",
            "type": "action",
            "service": "sessions",
            "task": "store_summary",
            "params": {
                "session_id": "{{ trigger_data.session_id }}",
                "summary": "{{ steps.summarize.output.summary | default(none) }}",
            },
        },
    ]


def timeout_blueprint(seconds: float) -> dict[str, Any]:
    """The system blueprint that closes an idle session and stores its summary."""
    return {
        "name": f"system: session timeout ({seconds:g}s)",
        "description": "Close a conversation after inactivity and summarise it.",
        "nodes": [
            {"id": "message", "type": "trigger", "trigger": "manual"},
            {"id": "idle", "type": "delay", "duration": seconds},
            {
                "id": "close",
                "type": "action",
                "service": "sessions",
                "task": "close_if_idle",
                "params": {"session_id": "{{ trigger_data.session_id }}", "idle_seconds": seconds},
            },
            {
                "id": "closed",
                "type": "router",
                "default": "still_open",
                "conditions": [{"branch": "closed", "when": "steps.close.output.closed"}],
            },
            *_summarize_and_save("steps.close.output.transcript"),
        ],
        "edges": [
            {"source": "message", "target": "idle"},
            {"source": "idle", "target": "close"},
            {"source": "close", "target": "closed"},
            {"source": "closed", "target": "summarize", "branch": "closed"},
            {"source": "summarize", "target": "save"},
        ],
    }


def summary_blueprint() -> dict[str, Any]:
    """The system blueprint that summarises a session the user ended."""
    return {
        "name": "system: session summary",
        "description": "Summarise a conversation the user ended.",
        "nodes": [
            {"id": "ended", "type": "trigger", "trigger": "manual"},
            {
                "id": "transcript",
                "type": "action",
                "service": "sessions",
                "task": "transcript",
                "params": {"session_id": "{{ trigger_data.session_id }}"},
            },
            *_summarize_and_save("steps.transcript.output.transcript"),
        ],
        "edges": [
            {"source": "ended", "target": "transcript"},
            {"source": "transcript", "target": "summarize"},
            {"source": "summarize", "target": "save"},
        ],
    }


async def _timeout_workflow(pool: Pool, seconds: float, owner: UUID) -> tuple[UUID, int]:
    """The owner's copy of the timeout blueprint: ``(workflow_id, version)``."""
    return await _system_workflow(pool, timeout_blueprint(seconds), owner)


async def _system_workflow(pool: Pool, blueprint: dict[str, Any], owner: UUID) -> tuple[UUID, int]:
    """The owner's copy of a system blueprint (its runs are the owner's, like the session):
    ``(workflow_id, version)``."""
    async with pool.connection() as conn:
        row = await workflows_store.find_system(conn, blueprint["name"], owner)
    if row is None:
        parsed = validate_blueprint(blueprint, TOOL_REGISTRY)
        async with pool.connection() as conn, conn.transaction():
            row = await workflow_service.create_in(
                conn, parsed, name=None, description=None, owner=owner, origin="system"
            )
    return row["id"], row["latest_version"]


async def schedule_timeout(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    session_id: UUID,
    message_id: int,
    *,
    owner: UUID,
) -> UUID | None:
    """(Re)arm the owner's open session's inactivity timer after the message ``message_id``:
    move the session's timer run to wake ``SESSION_TIMEOUT_SECONDS`` after its last activity,
    or start one (idempotent per message). Returns the timer's run id; None when the session
    is closed or unknown.

    Raises:
        EngineUnavailable: 503, a new timer run was refused (it is marked failed; the next
            message starts another).
    """
    seconds = settings.session_timeout_seconds
    workflow_id, version = await _timeout_workflow(pool, seconds, owner)
    async with pool.connection() as conn, conn.transaction():
        session = await store.lock(conn, session_id)  # one message's timer at a time
        if session is None or session["status"] != "open" or session["owner_id"] != owner:
            return None
        wake_at = session["last_activity_at"] + timedelta(seconds=seconds)
        timer: UUID | None = session["timer_run_id"]
        if timer is not None:
            run = await runs_store.get(conn, timer, owner=owner)
            if (
                run is not None
                and run["workflow_id"] == workflow_id  # the same timeout (settings may change)
                and await steps_store.move_sleep(conn, timer, "idle", wake_at)
            ):
                return timer
        run_id, created = await runs_store.create(
            conn,
            owner=owner,
            workflow_id=workflow_id,
            version=version,
            trigger_data={"session_id": str(session_id)},
            idempotency_key=f"session-timeout:{message_id}",
            engine=dispatcher.engine,
        )
        await store.set_timer(conn, session_id, run_id)
    if created:
        await run_service.dispatch(
            pool, dispatcher, [QueuedRun(run_id, workflow_id, version, owner)]
        )
    return run_id


async def end(pool: Pool, dispatcher: Dispatcher, session_id: UUID, *, owner: UUID) -> UUID | None:
    """Close the owner's session now and start the run that stores its summary (idempotent
    per session); its inactivity timer is moved to now, to find it closed and end. Returns
    the summary run's id; None when the session was not open.

    Raises:
        EngineUnavailable: 503, the summary run was refused (the session stays closed).
    """
    workflow_id, version = await _system_workflow(pool, summary_blueprint(), owner)
    async with pool.connection() as conn, conn.transaction():
        session = await store.lock(conn, session_id)
        if (
            session is None
            or session["owner_id"] != owner
            or not await store.close(conn, session_id)
        ):
            return None
        if session["timer_run_id"] is not None:
            await steps_store.move_sleep(conn, session["timer_run_id"], "idle", datetime.now(UTC))
        run_id, created = await runs_store.create(
            conn,
            owner=owner,
            workflow_id=workflow_id,
            version=version,
            trigger_data={"session_id": str(session_id)},
            idempotency_key=f"session-summary:{session_id}",
            engine=dispatcher.engine,
        )
    if created:
        await run_service.dispatch(
            pool, dispatcher, [QueuedRun(run_id, workflow_id, version, owner)]
        )
    return run_id


async def record_unread(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    *,
    channel: str,
    user_ref: str,
    owner: UUID,
    media: Any,
    reply: str,
    provider_message_id: str | None = None,
) -> UUID:
    """Record, in the user's open session, a message that could not be read (``media`` says
    why, e.g. a voice note that did not download) and the ``reply`` it got; restarts the
    session's inactivity timer as any message does. Returns the session id."""
    async with pool.connection() as conn, conn.transaction():
        session = await store.open_for(conn, channel, user_ref, owner)
        inbound_id = await store.add_message(
            conn, session["id"], "in", media=media, provider_message_id=provider_message_id
        )
        await store.add_message(conn, session["id"], "out", text=reply, delivery="inline")
    session_id: UUID = session["id"]
    await schedule_timeout(pool, dispatcher, settings, session_id, inbound_id, owner=owner)
    return session_id


async def get(pool: Pool, session_id: UUID, *, owner: UUID) -> dict[str, Any]:
    """The owner's session with its state, pending slots, messages and summary.

    Raises:
        NotFound: 404, unknown or another user's.
    """
    async with pool.connection() as conn:
        session = await store.get(conn, session_id, owner=owner)
        if session is None:
            raise NotFound("session", session_id)
        messages = await store.messages(conn, session_id)
    pending = (session["state"] or {}).get("pending")
    return {
        **session,
        "pending": pending,
        "slots": (pending or {}).get("slots", {}),
        "messages": messages,
    }


async def page(pool: Pool, *, owner: UUID, limit: int, cursor: str | None) -> dict[str, Any]:
    """A page of the owner's sessions, latest activity first: ``{"sessions": [{id, channel,
    user_ref, status, pending_intent, awaiting, last_message: {direction, text, created_at} |
    None, last_activity_at, closed_at, created_at}], "next_cursor": str | None}``. A session
    that gets a message while you page moves to the front (it may then appear twice or not at
    all in a later page).

    Raises:
        ValidationFailed: 422, a cursor this API did not return.
    """
    before = paging.decode_cursor(cursor) if cursor else None
    async with pool.connection() as conn:
        rows = await store.page_for(conn, owner, limit=limit + 1, before=before)
    sessions = []
    for row in rows[:limit]:
        pending = row["pending"] if isinstance(row["pending"], dict) else {}
        sessions.append(
            {
                "id": row["id"],
                "channel": row["channel"],
                "user_ref": row["user_ref"],
                "status": row["status"],
                "pending_intent": pending.get("intent"),
                "awaiting": pending.get("awaiting"),
                "last_message": None
                if row["last_at"] is None
                else {
                    "direction": row["last_direction"],
                    "text": row["last_text"],
                    "created_at": row["last_at"],
                },
                "last_activity_at": row["last_activity_at"],
                "closed_at": row["closed_at"],
                "created_at": row["created_at"],
            }
        )
    last = sessions[-1] if len(rows) > limit else None
    next_cursor = (
        None if last is None else paging.encode_cursor(last["last_activity_at"], last["id"])
    )
    return {"sessions": sessions, "next_cursor": next_cursor}
