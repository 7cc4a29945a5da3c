"""Slack messages through the official ``slack_sdk`` (``AsyncWebClient.chat_postMessage``).

A bot token (``xoxb-…``) posts as the app's bot user, in channels it has been added to.
Slack's ``chat.postMessage`` takes no idempotency key, so a step retried after an answer that
was lost can post twice: delivery is at-least-once. The SDK's own retries are turned off; the
engine retries (bounded, counted) what :func:`slack_error` calls retryable.
Sources: https://api.slack.com/methods/chat.postMessage (at most 50 blocks),
https://api.slack.com/changelog/2018-04-truncating-really-long-messages (text past 40,000
characters is truncated) and https://api.slack.com/docs/rate-limits (HTTP 429 with
``Retry-After`` in seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import aiohttp
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from blueprint_engine.config import Settings, ToolSettings
from blueprint_engine.integrations.base import (
    BaseTool,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    retry_after_seconds,
    task,
)
from blueprint_engine.integrations.credentials import CredentialData

#: Slack's limits for one message.
MAX_TEXT_CHARS = 40_000
MAX_BLOCKS = 50

#: Errors after which trying again later can succeed (besides HTTP 5xx).
_TEMPORARY = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                        "request_timeout"})  # fmt: skip
#: The token is wrong, revoked or lacks a scope: a person must fix the connection.
_AUTH = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked",
                   "token_expired", "missing_scope", "not_allowed_token_type"})  # fmt: skip
#: The bot cannot post there: the channel is unknown, archived, or the bot is not in it.
_CHANNEL = frozenset({"channel_not_found", "not_in_channel", "is_archived",
                      "restricted_action"})  # fmt: skip


class SlackCredential(CredentialData):
    """A Slack app's bot token (type ``slack``), from the app's OAuth & Permissions page; it
    needs the ``chat:write`` scope. Source: https://api.slack.com/authentication/token-types."""

    kind = "slack"
    label = "Slack (bot token)"

    bot_token: SecretStr = Field(title="Bot token", min_length=10, max_length=500)

    @field_validator("bot_token")
    @classmethod
    def _is_bot_token(cls, value: SecretStr) -> SecretStr:
        if re.fullmatch(r"xoxb-[A-Za-z0-9-]+", value.get_secret_value()) is None:
            raise ValueError("must be a bot token: xoxb- followed by letters, digits and dashes")
        return value


class PostMessage(TaskParams):
    """Params of ``slack.post_message``."""

    channel: str = Field(
        pattern=r"^[#@]?[A-Za-z0-9._-]{1,80}$",
        description="Channel id (C0123ABCD) or name (#general); the bot must be in it.",
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The message (mrkdwn); with blocks, the notification and fallback text.",
    )
    blocks: list[dict[str, Any]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BLOCKS,
        description="Block Kit layout blocks, each an object with a type.",
    )
    thread_ts: str | None = Field(
        default=None,
        pattern=r"^\d{1,12}\.\d{1,8}$",
        description="Reply in the thread of this message (its ts).",
    )

    @field_validator("blocks")
    @classmethod
    def _blocks_have_types(cls, value: list[dict[str, Any]] | None) -> Any:
        for index, block in enumerate(value or []):
            if not isinstance(block.get("type"), str):
                raise ValueError(f"block {index} has no type")
        return value


def _sandbox_ts(key: str) -> str:
    """A message timestamp at the epoch: shaped like Slack's (so ``thread_ts`` accepts it) and
    obviously not a real message's."""
    return f"0000000000.{int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10**6:06d}"


class SlackSettings(ToolSettings):
    """``SLACK_*``: the bot token when a node names no ``slack`` connection (else sandbox
    mode), and the Web API's base URL."""

    model_config = SettingsConfigDict(env_prefix="SLACK_")

    bot_token: SecretStr | None = None
    api_url: str = Field(default="https://slack.com/api/", description="The Web API's base URL.")

    def ready(self) -> bool:
        """A bot token is set."""
        return self.bot_token is not None


class Posted(TaskResult):
    """Result of ``slack.post_message``."""

    channel: str = Field(description="The channel's id.")
    ts: str = Field(description="The message's timestamp: its id, and thread_ts for replies.")
    thread_ts: str | None = Field(default=None, description="The thread it replied in, if any.")


def slack_error(exc: SlackApiError) -> ToolError:
    """Map Slack's refusal to a ToolError: ``slack_rate_limited`` (429, retryable after its
    ``Retry-After``: https://api.slack.com/apis/rate-limits), ``slack_unavailable`` (5xx and
    Slack's temporary errors, retryable), ``slack_auth_failed``, ``slack_channel_unavailable``,
    ``slack_error`` (not retryable)."""
    response = exc.response
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error") or f"http_{response.status_code}")
    details: dict[str, Any] = {"status": response.status_code, "error": error}
    if response.status_code == 429 or error == "ratelimited":
        headers = {str(k): str(v) for k, v in (response.headers or {}).items()}
        return ToolError(
            "Slack rate limit reached",
            code="slack_rate_limited",
            retryable=True,
            details=details,
            retry_after=retry_after_seconds(429, headers),
        )
    if response.status_code >= 500 or error in _TEMPORARY:
        return ToolError(
            f"Slack unavailable: {error}", code="slack_unavailable", retryable=True, details=details
        )
    if error in _AUTH:
        return ToolError(
            f"Slack refused the bot token: {error}",
            code="slack_auth_failed",
            retryable=False,
            details=details,
        )
    if error in _CHANNEL:
        return ToolError(
            f"Slack refused the channel: {error}",
            code="slack_channel_unavailable",
            retryable=False,
            details=details,
        )
    return ToolError(
        f"Slack refused the message: {error}", code="slack_error", retryable=False, details=details
    )


async def chat_post_message(settings: Settings, token: str, params: PostMessage) -> Posted:
    """Call ``chat.postMessage`` at ``SLACK_API_URL`` within ``HTTP_TIMEOUT_SECONDS`` (the
    SDK's own aiohttp client: it cannot use the shared httpx one).

    Raises:
        ToolError: :func:`slack_error`'s codes; ``timeout`` and ``network_error`` (retryable).
    """
    seconds = settings.http_timeout_seconds
    client = AsyncWebClient(
        token=token,
        base_url=settings.tool(SlackSettings).api_url,
        timeout=max(1, round(seconds)),
        retry_handlers=[],
    )
    kwargs: dict[str, Any] = {"channel": params.channel, "text": params.text}
    if params.blocks is not None:
        kwargs["blocks"] = params.blocks
    if params.thread_ts is not None:
        kwargs["thread_ts"] = params.thread_ts
    try:
        async with asyncio.timeout(seconds):
            response = await client.chat_postMessage(**kwargs)
    except SlackApiError as exc:
        raise slack_error(exc) from None
    except TimeoutError:
        raise ToolError(
            f"Slack did not answer within {seconds:g} s", code="timeout", retryable=True
        ) from None
    except aiohttp.ClientError as exc:
        raise ToolError(f"Slack unreachable: {exc}", code="network_error", retryable=True) from None
    return Posted(
        channel=response.get("channel"), ts=response.get("ts"), thread_ts=params.thread_ts
    )


class SlackTool(BaseTool):
    """Post Slack messages: the node's ``slack`` connection, else ``SLACK_BOT_TOKEN``."""

    service = "slack"
    description = "Post messages to Slack channels as a bot."
    credential_types = (SlackCredential,)
    settings_type = SlackSettings

    def _token(self, context: ToolContext) -> str:
        """The node's bot token, else the deployment's."""
        data = context.credential.data if context.credential is not None else None
        if isinstance(data, SlackCredential):
            return data.bot_token.get_secret_value()
        token = context.settings.tool(SlackSettings).bot_token
        assert token is not None  # else the call was sandboxed
        return token.get_secret_value()

    @task(
        params=PostMessage,
        result=Posted,
        description="Post a message (text, optionally Block Kit blocks) to a channel or thread.",
    )
    async def post_message(self, params: PostMessage, context: ToolContext) -> Posted:
        """Post the message.

        Raises:
            ToolError: see :func:`chat_post_message`.
        """
        return await chat_post_message(context.settings, self._token(context), params)

    @post_message.request
    def post_message_request(self, params: PostMessage, context: ToolContext) -> dict[str, Any]:
        """The Web API call (the token shown as ``[redacted]``)."""
        return {
            "method": "POST",
            "url": context.settings.tool(SlackSettings).api_url.rstrip("/") + "/chat.postMessage",
            "headers": {"Authorization": "Bearer [redacted]"},
            "body": params.model_dump(exclude_none=True),
        }

    @post_message.sandbox
    def post_message_sandbox(self, params: PostMessage, context: ToolContext) -> Posted:
        """The channel as given and an epoch timestamp, so later steps can thread replies."""
        return Posted(
            channel=params.channel,
            ts=_sandbox_ts(context.idempotency_key),
            thread_ts=params.thread_ts,
        )
