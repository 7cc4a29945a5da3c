"""Internal tasks of conversation sessions, used by the session-timeout system blueprint."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from pydantic import Field

from blueprint_engine.config import Settings
from blueprint_engine.integrations.base import BaseTool, Task, TaskParams, ToolContext
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


def transcript(messages: list[dict[str, Any]]) -> str:
    """A plain-text transcript: one ``user:``/``assistant:`` line per message."""
    lines = []
    for message in messages:
        who = "user" if message["direction"] == "in" else "assistant"
        text = message["text"] or message["transcript"] or ""
        lines.append(f"{who}: {text}")
    return "\n".join(lines)


class SessionsTool(BaseTool):
    """Closes idle sessions and stores their summaries (``DATABASE_URL``)."""

    service = "sessions"
    description = "Conversation session bookkeeping (internal)."
    internal = True
    tasks = {
        "close_if_idle": Task(
            params=CloseIfIdle,
            description="Close the session if it saw no message for idle_seconds.",
            result={"closed": "boolean", "transcript": "string"},
        ),
        "transcript": Task(
            params=Transcript,
            description="The session's transcript (to summarise a session the user ended).",
            result={"transcript": "string"},
        ),
        "store_summary": Task(
            params=StoreSummary,
            description="Store the closed session's summary.",
            result={"stored": "boolean"},
        ),
    }

    def has_credentials(self, settings: Settings) -> bool:
        """Only needs the database."""
        return True

    def build_request(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """A database update, no HTTP."""
        return {"method": "SQL", "url": f"sessions.{task}", "body": params.model_dump(mode="json")}

    async def send(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Run the task against the sessions tables."""
        async with await psycopg.AsyncConnection.connect(
            context.settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            if task == "close_if_idle":
                closed = await store.close_if_idle(conn, params.session_id, params.idle_seconds)
                text = transcript(await store.messages(conn, params.session_id)) if closed else ""
                return {"closed": closed, "transcript": text}
            if task == "transcript":
                return {"transcript": transcript(await store.messages(conn, params.session_id))}
            source = params.source if params.summary else "unavailable (no language model)"
            await store.store_summary(conn, params.session_id, params.summary, source)
            return {"stored": True}
