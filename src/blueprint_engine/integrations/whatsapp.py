"""WhatsApp messages through Twilio's Programmable Messaging API (official ``twilio`` SDK).

Twilio addresses WhatsApp numbers as ``whatsapp:+E164``; plain E.164 numbers are prefixed here.
Twilio's Messages API takes no idempotency key, so a step retried after an ambiguous failure can
send twice: delivery is at-least-once for this tool.
Source: https://www.twilio.com/docs/whatsapp/api and /docs/sms/api/message-resource.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import phonenumbers
from pydantic import Field, HttpUrl, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from blueprint_engine.config import ToolSettings
from blueprint_engine.integrations.base import (
    N_,
    BaseTool,
    Command,
    Slot,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    Wording,
    fake_id,
    task,
)
from blueprint_engine.integrations.credentials import CredentialData


def whatsapp_address(number: str) -> str:
    """Normalise ``+919876543210``, ``whatsapp:+91 98765-43210`` and the like to Twilio's
    WhatsApp form, ``whatsapp:+919876543210``.

    Raises:
        ValueError: not a valid phone number with its ``+`` country code (libphonenumber).
    """
    try:
        parsed = phonenumbers.parse(number.removeprefix("whatsapp:"), None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{number!r} is not an E.164 phone number such as +919876543210")
    return f"whatsapp:{phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)}"


class TwilioSettings(ToolSettings):
    """``TWILIO_*``: the deployment's Twilio account and WhatsApp sender (used when a node
    names no ``twilio`` credential; ``TWILIO_AUTH_TOKEN`` also checks the signature of
    ``POST /whatsapp``), and where voice notes may be fetched from."""

    model_config = SettingsConfigDict(env_prefix="TWILIO_")

    account_sid: str | None = None
    auth_token: SecretStr | None = None
    whatsapp_from: str | None = Field(
        default=None, description="The WhatsApp sender, E.164 (+14155238886)."
    )
    media_hosts: list[str] = Field(
        default_factory=lambda: [
            "api.twilio.com",
            "mms.twiliocdn.com",
            "s3-external-1.amazonaws.com",
        ],
        description="Hosts WhatsApp voice notes are fetched from; every redirect hop must be one.",
    )
    media_auth_hosts: list[str] = Field(
        default_factory=lambda: ["api.twilio.com"],
        description="Those of TWILIO_MEDIA_HOSTS that get the Twilio credentials (basic auth).",
    )
    media_timeout_seconds: float = Field(
        default=10, gt=0, description="Limit for a whole voice-note download, redirects included."
    )

    def ready(self) -> bool:
        """Account SID, auth token and sender number are all set."""
        return bool(self.account_sid and self.auth_token and self.whatsapp_from)


class TwilioCredential(CredentialData):
    """A Twilio account and its WhatsApp sender (type ``twilio``).

    Source: https://www.twilio.com/docs/iam/api/account (SIDs are ``AC`` + 32 hex digits).
    """

    kind = "twilio"
    label = "Twilio (WhatsApp)"
    identity = ("account_sid", "whatsapp_from")

    account_sid: str = Field(
        title="Account SID", pattern=r"^AC[0-9a-fA-F]{32}$", examples=["AC" + "0" * 32]
    )
    auth_token: SecretStr = Field(title="Auth token", min_length=8, max_length=200)
    whatsapp_from: str = Field(
        title="WhatsApp sender",
        max_length=40,
        description="The WhatsApp sender, E.164.",
        examples=["+14155238886"],
    )

    @field_validator("whatsapp_from")
    @classmethod
    def _normalise_from(cls, value: str) -> str:
        return whatsapp_address(value)


#: Twilio's shared WhatsApp sandbox number, shown in sandbox-mode requests.
_SANDBOX_SENDER = "+14155238886"


class SendMessage(TaskParams):
    """Params of ``whatsapp.send_message``."""

    to: str = Field(
        description="Recipient in E.164, e.g. +919876543210 (whatsapp: prefix optional)."
    )
    body: str = Field(min_length=1, max_length=1600, description="Message text (max 1600 chars).")
    media_url: list[HttpUrl] | None = Field(
        default=None, max_length=1, description="Optional public URL of one image/PDF/audio file."
    )

    @field_validator("to")
    @classmethod
    def _normalise_to(cls, value: str) -> str:
        return whatsapp_address(value)


class MessageSent(TaskResult):
    """Result of ``whatsapp.send_message``."""

    sid: str = Field(description="Twilio message SID (SM…).")
    status: str = Field(description="Twilio's status (queued, sent…); sandboxed in sandbox mode.")
    to: str = Field(description="The recipient, whatsapp:+E.164.")


class WhatsAppTool(BaseTool):
    """Send WhatsApp messages via Twilio (the node's ``twilio`` credential, else
    ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_WHATSAPP_FROM``)."""

    service = "whatsapp"
    description = "Send WhatsApp messages to customers through Twilio."
    credential_types = (TwilioCredential,)
    settings_type = TwilioSettings

    def account(self, context: ToolContext) -> tuple[str, str, str]:
        """``(account_sid, auth_token, sender)`` to call with: the node's credential, else the
        deployment's settings (placeholders in sandbox mode, where the token is never sent)."""
        credential = context.credential
        if credential is not None:
            if isinstance(credential.data, TwilioCredential):
                data = credential.data
                return data.account_sid, data.auth_token.get_secret_value(), data.whatsapp_from
            return "AC_SANDBOX", "", whatsapp_address(_SANDBOX_SENDER)
        twilio = context.settings.tool(TwilioSettings)
        token = twilio.auth_token
        return (
            twilio.account_sid or "AC_SANDBOX",
            token.get_secret_value() if token is not None else "",
            whatsapp_address(twilio.whatsapp_from or _SANDBOX_SENDER),
        )

    @task(
        params=SendMessage,
        result=MessageSent,
        description="Send a WhatsApp message (text, optionally one media attachment).",
        command=Command(
            intent="SEND_WHATSAPP",
            description="Send a WhatsApp message to a phone number.",
            slots=(
                Slot(
                    "to",
                    "phone",
                    True,
                    N_("Who should I send it to (phone number)?"),
                    param="to",
                ),
                Slot("message", "text", True, N_("What should the message say?"), param="body"),
            ),
            build_params=lambda slots: {"to": slots["to"], "body": slots["message"]},
            help=N_("Send a WhatsApp message"),
            request=Wording((N_("your message to {to}"), N_("your message"))),
            result=Wording((N_("Sent your WhatsApp message to {to}."),)),
            failure=Wording((N_("Sorry, I couldn't send your message to {to}: {reason}."),)),
        ),
    )
    async def send_message(self, params: SendMessage, context: ToolContext) -> MessageSent:
        """Create the message with the Twilio SDK's asyncio client (aiohttp), within
        ``HTTP_TIMEOUT_SECONDS`` (the SDK's async client applies no timeout of its own).

        The request goes to the SDK's fixed ``api.twilio.com`` on the SDK's own client, not
        the shared one of ``context.http`` (an httpx client that the SDK cannot use); media
        URLs are fetched by Twilio, not here.

        Raises:
            ToolError: ``twilio_error``, Twilio refused it (retryable on 5xx and 429);
                ``network_error``, unreachable or no answer in time (retryable: Twilio takes no
                idempotency key, so a retry after an answer that was lost may send twice).
        """
        sid, token, sender = self.account(context)
        kwargs: dict[str, Any] = {"to": params.to, "from_": sender, "body": params.body}
        if params.media_url:
            kwargs["media_url"] = [str(url) for url in params.media_url]
        seconds = context.settings.http_timeout_seconds
        try:
            async with AsyncTwilioHttpClient() as http, asyncio.timeout(seconds):
                client = Client(sid, token, http_client=http)
                message = await client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            retryable = exc.status >= 500 or exc.status == 429
            raise ToolError(
                f"Twilio refused the message: {exc.msg}",
                code="twilio_error",
                retryable=retryable,
                details={"status": exc.status, "twilio_code": exc.code},
            ) from None
        except TimeoutError:
            raise ToolError(
                f"Twilio did not answer within {seconds:g} s", code="network_error", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            raise ToolError(
                f"Twilio unreachable: {exc}", code="network_error", retryable=True
            ) from None
        return MessageSent(sid=message.sid, status=message.status, to=message.to)

    @send_message.request
    def send_message_request(self, params: SendMessage, context: ToolContext) -> dict[str, Any]:
        """The Messages API form post Twilio would receive."""
        sid, _, sender = self.account(context)
        body: dict[str, Any] = {"To": params.to, "From": sender, "Body": params.body}
        if params.media_url:
            body["MediaUrl"] = [str(url) for url in params.media_url]
        return {
            "method": "POST",
            "url": f"https://api.twilio.com/2010-04-01/Accounts/{sid}/Messages.json",
            "body": body,
        }

    @send_message.sandbox
    def send_message_sandbox(self, params: SendMessage, context: ToolContext) -> MessageSent:
        """A fake message SID so later steps can reference ``output.sid``."""
        return MessageSent(
            sid=fake_id("SM", context.idempotency_key), status="sandboxed", to=params.to
        )
