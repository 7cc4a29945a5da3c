"""Internal: deliver a command's answer to the user when it was not answered inline.

A WhatsApp command's run ends with ``channel.reply``. The webhook waits a few seconds for the
action; if it finished, the webhook claims the outbound message and answers in TwiML. Otherwise
it acknowledges at once, and this step claims the message and sends the answer with the
whatsapp tool. Whoever claims the row first delivers; the other does nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from blueprint_engine.integrations.base import BaseTool, TaskParams, TaskResult, ToolContext, task
from blueprint_engine.integrations.whatsapp import SendMessage, TwilioCredential, WhatsAppTool
from blueprint_engine.store import sessions as store


class Reply(TaskParams):
    """Params of ``channel.reply``."""

    message_id: int = Field(description="The outbound session_messages row to deliver.")
    to: str
    text: str = Field(min_length=1, max_length=1600)


class Delivery(TaskResult):
    """Result of ``channel.reply``."""

    sent: bool = Field(description="True when this step sent the answer.")
    reason: str = Field(description="late answer, answered inline, or sandbox.")
    message: dict[str, Any] | None = Field(
        default=None, description="The whatsapp tool's result when sent (or in sandbox mode)."
    )


_WHATSAPP = WhatsAppTool()


class ChannelTool(BaseTool):
    """Sends late answers on WhatsApp (through the whatsapp tool, so its sandbox rules apply),
    claiming them in the app's database (``context.db``)."""

    service = "channel"
    description = "Deliver a command's answer to the user (internal)."
    internal = True
    credential_types = (TwilioCredential,)  # the user's own number, when the message came in on it

    @task(
        params=Reply,
        result=Delivery,
        description="Send the answer unless it was already given inline.",
    )
    async def reply(self, params: Reply, context: ToolContext) -> Delivery:
        """Claim the outbound message; if ours, send it."""
        async with context.db() as conn:
            claimed = await store.claim_delivery(
                conn, params.message_id, "whatsapp_api", params.text
            )
        if not claimed:
            return Delivery(sent=False, reason="answered inline")
        message = await _WHATSAPP.execute(
            "send_message", SendMessage(to=params.to, body=params.text), context
        )
        return Delivery(sent=True, reason="late answer", message=message)

    @reply.sandbox
    def reply_sandbox(self, params: Reply, context: ToolContext) -> Delivery:
        """Nothing is claimed; ``message`` is what the whatsapp tool would return sandboxed."""
        message = _WHATSAPP.sandbox_output(
            "send_message", SendMessage(to=params.to, body=params.text), context
        )
        return Delivery(sent=False, reason="sandbox", message=message)
