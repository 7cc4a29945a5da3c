"""Internal: deliver a command's answer to the user when it was not answered inline.

A WhatsApp command's run ends with ``channel.reply``. The webhook waits a few seconds for the
action; if it finished, the webhook claims the outbound message and answers in TwiML. Otherwise
it acknowledges at once, and this step claims the message and sends the answer with the
whatsapp tool. Whoever claims the row first delivers; the other does nothing.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import Field

from blueprint_engine.config import Settings
from blueprint_engine.integrations.base import BaseTool, Task, TaskParams, ToolContext
from blueprint_engine.integrations.whatsapp import SendMessage, TwilioCredential, WhatsAppTool
from blueprint_engine.store import sessions as store


class Reply(TaskParams):
    """Params of ``channel.reply``."""

    message_id: int = Field(description="The outbound session_messages row to deliver.")
    to: str
    text: str = Field(min_length=1, max_length=1600)


class ChannelTool(BaseTool):
    """Sends late answers on WhatsApp (through the whatsapp tool, so sandbox rules apply)."""

    service = "channel"
    description = "Deliver a command's answer to the user (internal)."
    internal = True
    credential_types = (TwilioCredential,)  # the user's own number, when the message came in on it
    tasks = {
        "reply": Task(
            params=Reply,
            description="Send the answer unless it was already given inline.",
            result={"sent": "boolean", "reason": "string", "message": "whatsapp result"},
        )
    }

    def has_credentials(self, settings: Settings) -> bool:
        """Only needs the database (sending follows the whatsapp tool's own mode)."""
        return True

    def build_request(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """The WhatsApp message it would send."""
        return WhatsAppTool().build_request(
            "send_message", SendMessage(to=params.to, body=params.text), context
        )

    async def send(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Claim the outbound message; if ours, send it."""
        async with await psycopg.AsyncConnection.connect(
            context.settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            claimed = await store.claim_delivery(
                conn, params.message_id, "whatsapp_api", params.text
            )
        if not claimed:
            return {"sent": False, "reason": "answered inline"}
        message = await WhatsAppTool().execute(
            "send_message", SendMessage(to=params.to, body=params.text), context
        )
        return {"sent": True, "reason": "late answer", "message": message}
