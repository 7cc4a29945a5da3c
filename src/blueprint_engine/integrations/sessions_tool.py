"""Internal tasks of conversation sessions, used by the session-timeout system blueprint."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from blueprint_engine.integrations.base import BaseTool, TaskParams, TaskResult, ToolContext, task
from blueprint_engine.store import sessions as store


class CloseIfIdle(TaskParams):
    """Params of ``sessions.close_if_idle``."""

    session_id: UUID
    idle_seconds: float = Field(gt=0)


class Transcript(TaskParams):
    """Params of ``sessions.transcript``."""

    session_id: UUID


class StoreSummary(TaskParams):
    """Params of ``sessions.store_summary``."""

    session_id: UUID
    summary: str | None
    source: str = Field(default="llm", max_length=40)


def render_transcript(messages: list[dict[str, Any]]) -> str:
    """A plain-text transcript: one ``user:``/``assistant:`` line per message."""
    lines = []
    for message in messages:
        who = "user" if message["direction"] == "in" else "assistant"
        text = message["text"] or message["transcript"] or ""
        lines.append(f"{who}: {text}")
    return "\n".join(lines)


class Closed(TaskResult):
    """Result of ``sessions.close_if_idle``."""

    closed: bool = Field(description="True when this call closed the session.")
    transcript: str = Field(description="Its transcript when it closed it, else empty.")


class SessionTranscript(TaskResult):
    """Result of ``sessions.transcript``."""

    transcript: str = Field(description="One user:/assistant: line per message.")


class Stored(TaskResult):
    """Result of ``sessions.store_summary``."""

    stored: bool


class SessionsTool(BaseTool):
    """Closes idle sessions and stores their summaries, in the app's database
    (``context.db``)."""

    service = "sessions"
    description = "Conversation session bookkeeping (internal)."
    internal = True

    @task(
        params=CloseIfIdle,
        result=Closed,
        description="Close the session if it saw no message for idle_seconds.",
    )
    async def close_if_idle(self, params: CloseIfIdle, context: ToolContext) -> Closed:
        """Close it if idle, and say what was said."""
        async with context.db() as conn:
            closed = await store.close_if_idle(conn, params.session_id, params.idle_seconds)
            text = (
                render_transcript(await store.messages(conn, params.session_id)) if closed else ""
            )
        return Closed(closed=closed, transcript=text)

    @close_if_idle.sandbox
    def close_if_idle_sandbox(self, params: CloseIfIdle, context: ToolContext) -> Closed:
        """Nothing is closed."""
        return Closed(closed=False, transcript="")

    @task(
        params=Transcript,
        result=SessionTranscript,
        description="The session's transcript (to summarise a session the user ended).",
    )
    async def transcript(self, params: Transcript, context: ToolContext) -> SessionTranscript:
        """Read the session's messages."""
        async with context.db() as conn:
            messages = await store.messages(conn, params.session_id)
        return SessionTranscript(transcript=render_transcript(messages))

    @transcript.sandbox
    def transcript_sandbox(self, params: Transcript, context: ToolContext) -> SessionTranscript:
        """An empty transcript."""
        return SessionTranscript(transcript="")

    @task(params=StoreSummary, result=Stored, description="Store the closed session's summary.")
    async def store_summary(self, params: StoreSummary, context: ToolContext) -> Stored:
        """Store it (without a summary, say why there is none)."""
        source = params.source if params.summary else "unavailable (no language model)"
        async with context.db() as conn:
            await store.store_summary(conn, params.session_id, params.summary, source)
        return Stored(stored=True)

    @store_summary.sandbox
    def store_summary_sandbox(self, params: StoreSummary, context: ToolContext) -> Stored:
        """Nothing is stored."""
        return Stored(stored=False)
