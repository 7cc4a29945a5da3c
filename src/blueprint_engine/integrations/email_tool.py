"""Email through an SMTP server (``aiosmtplib``).

The server is reached through the outbound guard (:func:`outbound.open_socket`): its host is
resolved once, every address must be public unless allowed by ``HTTP_ALLOW_HOSTS``, and the
connection goes to that vetted address. ``security`` says how the connection is protected:
``starttls`` (port 587 by default) upgrades to TLS and fails if the server cannot,
``tls`` (465) speaks TLS from the start, ``none`` (25) sends in plain text. TLS checks the
certificate against the host name with the CA bundle of the HTTP client (certifi, or
``SSL_CERT_FILE`` / ``SSL_CERT_DIR``).

SMTP takes no idempotency key, so delivery is at-least-once: a step retried after the server
took the message but its answer was lost sends it again. Every attempt of a step sends the same
``Message-ID``, derived from the step's idempotency key (``<wf-<sha256 prefix>@<sender
domain>>``), so such a duplicate is recognisable as the same message (and mail stores that
deduplicate by Message-ID drop it).

Failures follow the reply codes of RFC 5321 (section 4.2.1): a 4xx reply is temporary and the
step is retried; a 5xx reply is permanent and it is not. A server that accepts some recipients
and refuses others has sent the message: the step succeeds and lists the refused ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal

import aiosmtplib
import httpx
from pydantic import EmailStr, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from blueprint_engine.config import Settings, ToolSettings
from blueprint_engine.integrations import outbound
from blueprint_engine.integrations.base import (
    BaseTool,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    fake_id,
    task,
)
from blueprint_engine.integrations.credentials import CredentialData

Security = Literal["starttls", "tls", "none"]

#: The port each kind of security uses unless one is given (RFC 8314 section 3.3, RFC 6409).
DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 25}
#: Largest body, text or HTML, in characters: Gmail clips a message past about 102 KB.
MAX_BODY_CHARS = 100_000
#: Recipients per field (to, cc, bcc).
MAX_RECIPIENTS = 50
#: How long the polite goodbye (QUIT) may take once the message is sent.
_QUIT_SECONDS = 2.0

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _one_line(value: str) -> str:
    """``value`` if it fits in one header line.

    Raises:
        ValueError: it holds a NUL or a line break: CR, LF, or any other that Python's
            ``str.splitlines`` (and so the ``email`` package's header folding) breaks at, such
            as U+2028 or NEL (CR/LF would start a header of the sender's choosing: header
            injection; the others make ``email`` refuse the header when the message is built).
    """
    if "\0" in value or len((value + "x").splitlines()) > 1:
        raise ValueError("must be one line: no line breaks")
    return value


def _host(value: str) -> str:
    """``value`` if it is a host name or an IP address.

    Raises:
        ValueError: anything else (a URL, a port, spaces, line breaks).
    """
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(value.removeprefix("[").removesuffix("]")))
    if _HOSTNAME.match(value) is None:
        raise ValueError("must be a host name such as smtp.example.com, or an IP address")
    return value.lower().rstrip(".")


class SmtpSettings(ToolSettings):
    """``SMTP_*``: the email tool's server when a node names no ``smtp`` connection
    (``SMTP_HOST`` and ``SMTP_FROM`` both set; else sandbox mode)."""

    model_config = SettingsConfigDict(env_prefix="SMTP_", populate_by_name=True)

    host: str | None = Field(default=None, description="The email tool's SMTP server.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 587 (starttls), 465 (tls), 25 (none)."
    )
    security: Security = Field(
        default="starttls",
        description="starttls: upgrade to TLS or fail; tls: TLS from the start; none: plain "
        "text (a relay on a trusted network only).",
    )
    username: str | None = None
    password: SecretStr | None = None
    from_address: EmailStr | None = Field(
        default=None, validation_alias="smtp_from", description="The sender address (From)."
    )
    from_name: str | None = Field(default=None, max_length=200)
    timeout_seconds: float = Field(
        default=30, gt=0, description="Limit for a whole send: connection, TLS, login, message."
    )

    def ready(self) -> bool:
        """A server and a sender address are set."""
        return bool(self.host and self.from_address)


class SmtpCredential(CredentialData):
    """An SMTP server and the sender it sends as (type ``smtp``). Without ``username`` the
    server is used without logging in (a relay that trusts the network)."""

    kind = "smtp"
    label = "SMTP (email)"
    identity = ("host", "from_address")

    host: str = Field(max_length=253, examples=["smtp.example.com"])
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 587 (starttls), 465 (tls), 25 (none)."
    )
    security: Security = Field(
        default="starttls",
        description="starttls: upgrade to TLS or fail; tls: TLS from the start; none: plain "
        "text (a relay on a trusted network only).",
    )
    username: str | None = Field(default=None, min_length=1, max_length=320)
    password: SecretStr | None = Field(default=None, min_length=1, max_length=1000)
    from_address: EmailStr = Field(title="From address", examples=["shop@example.com"])
    from_name: str | None = Field(default=None, title="From name", max_length=200)

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        return _host(value)

    @field_validator("username", "from_name")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return None if value is None else _one_line(value)

    @model_validator(mode="after")
    def _password_needs_username(self) -> SmtpCredential:
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


class SendEmail(TaskParams):
    """Params of ``email.send``."""

    to: list[EmailStr] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[EmailStr] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[EmailStr] = Field(
        default_factory=list,
        max_length=MAX_RECIPIENTS,
        description="Receive the message without appearing in its headers.",
    )
    reply_to: EmailStr | None = None
    subject: str = Field(
        min_length=1, max_length=998, description="One line (RFC 5322 line limit: 998)."
    )
    text: str = Field(min_length=1, max_length=MAX_BODY_CHARS, description="Plain-text body.")
    html: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BODY_CHARS,
        description="HTML body; mail clients show it instead of the text when they can.",
    )

    @field_validator("subject")
    @classmethod
    def _subject_is_one_line(cls, value: str) -> str:
        return _one_line(value)

    def recipients(self) -> list[str]:
        """Everyone the message goes to (to, cc, bcc), each once, in that order."""
        return list(dict.fromkeys([*self.to, *self.cc, *self.bcc]))


@dataclass(frozen=True)
class SmtpServer:
    """Where and as whom a message is sent (the password revealed: in memory only)."""

    host: str
    port: int
    security: Security
    username: str | None
    password: str | None
    from_address: str
    from_name: str | None


def message_id(idempotency_key: str, from_address: str) -> str:
    """The Message-ID of a step's message: the same for every attempt of the step."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    domain = from_address.rpartition("@")[2]
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"<wf-{digest}@{domain}>"


def build_message(params: SendEmail, server: SmtpServer, msgid: str) -> EmailMessage:
    """The message as it goes on the wire: headers (no Bcc), text and optional HTML."""
    message = EmailMessage()
    message["From"] = Address(display_name=server.from_name or "", addr_spec=server.from_address)
    message["To"] = ", ".join(params.to)
    if params.cc:
        message["Cc"] = ", ".join(params.cc)
    if params.reply_to:
        message["Reply-To"] = params.reply_to
    message["Subject"] = params.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = msgid
    message.set_content(params.text)
    if params.html is not None:
        message.add_alternative(params.html, subtype="html")
    return message


def _reply_error(exc: aiosmtplib.SMTPResponseException, code: str, what: str) -> ToolError:
    """A reply code as a ToolError: 4xx temporary (retryable), 5xx permanent."""
    return ToolError(
        f"{what}: {exc.code} {exc.message}",
        code=code,
        retryable=400 <= exc.code < 500,
        details={"reply_code": exc.code, "reply": exc.message},
    )


def smtp_error(exc: Exception, server: SmtpServer) -> ToolError:
    """Map what sending raised to a ToolError with a code; 4xx replies and network trouble
    are retryable, 5xx replies and configuration problems are not."""
    where = f"{server.host}:{server.port}"
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, outbound.DestinationBlocked):
        return ToolError(str(exc), code="destination_blocked", retryable=False)
    if isinstance(exc, outbound.ResolutionFailed):
        return ToolError(str(exc), code="dns_error", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = {e.recipient: f"{e.code} {e.message}" for e in exc.recipients}
        return ToolError(
            f"{where} refused every recipient",
            code="smtp_recipients_refused",
            retryable=all(400 <= e.code < 500 for e in exc.recipients),
            details={"refused": refused},
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _reply_error(exc, "smtp_auth_failed", f"{where} refused the login")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _reply_error(exc, "smtp_sender_refused", f"{where} refused the sender {exc.sender}")
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _reply_error(exc, "smtp_message_refused", f"{where} refused the message")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply_error(exc, "smtp_unavailable", f"{where} answered")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return ToolError(f"{where}: {exc}", code="smtp_not_supported", retryable=False)
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return ToolError(
            f"{where}'s TLS certificate is not trusted: {cause.verify_message}",
            code="smtp_tls_error",
            retryable=False,
        )
    if isinstance(exc, TimeoutError):  # aiosmtplib's SMTPTimeoutError is one too
        return ToolError(f"{where} did not answer in time", code="timeout", retryable=True)
    if isinstance(exc, OSError | aiosmtplib.SMTPException):  # connect errors, disconnects
        return ToolError(f"{where} unreachable: {exc}", code="network_error", retryable=True)
    raise exc


async def _login(smtp: aiosmtplib.SMTP, server: SmtpServer) -> None:
    """Log in with the first method both sides know.

    Raises:
        ToolError: ``smtp_auth_unavailable``, no method in common (not retryable).
        aiosmtplib.SMTPAuthenticationError: the server refused the login.
    """
    assert server.username is not None
    try:
        await smtp.login(server.username, server.password or "")
    except aiosmtplib.SMTPException as exc:
        if type(exc) is not aiosmtplib.SMTPException:  # a reply, a timeout, a disconnect
            raise
        raise ToolError(
            f"{server.host}:{server.port}: {exc}", code="smtp_auth_unavailable", retryable=False
        ) from None


async def send_email(
    settings: Settings, server: SmtpServer, message: EmailMessage, recipients: list[str]
) -> dict[str, Any]:
    """Connect (through the outbound guard, ``HTTP_ALLOW_HOSTS``), secure the connection, log
    in, send.

    Returns ``{"accepted": [...], "refused": {address: "code reply"}}``; the whole exchange
    takes at most ``SMTP_TIMEOUT_SECONDS``.

    Raises:
        ToolError: see :func:`smtp_error`; also ``smtp_tls_unavailable`` (STARTTLS asked for,
            not offered) and ``smtp_auth_unavailable`` (a username, but no AUTH offered).
    """
    seconds = settings.tool(SmtpSettings).timeout_seconds
    tls = httpx.create_ssl_context() if server.security != "none" else None
    sock = None
    smtp: aiosmtplib.SMTP | None = None
    try:
        async with asyncio.timeout(seconds):
            sock = await outbound.open_socket(settings, server.host, server.port, seconds=seconds)
            smtp = aiosmtplib.SMTP(
                hostname=server.host,
                sock=sock,
                use_tls=server.security == "tls",
                start_tls=False,
                tls_context=tls,
                timeout=seconds,
            )
            await smtp.connect()
            if server.security == "starttls":
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise ToolError(
                        f"{server.host}:{server.port} does not offer STARTTLS; use security "
                        "'tls' (port 465) or, on a trusted network only, 'none'",
                        code="smtp_tls_unavailable",
                        retryable=False,
                    )
                await smtp.starttls()
            if server.username is not None:
                await smtp.ehlo()
                if not smtp.supports_extension("auth"):
                    raise ToolError(
                        f"{server.host}:{server.port} offers no login (AUTH)"
                        + ("; it may need TLS first" if server.security == "none" else ""),
                        code="smtp_auth_unavailable",
                        retryable=False,
                    )
                await _login(smtp, server)
            refused, _ = await smtp.send_message(
                message, sender=server.from_address, recipients=recipients
            )
    except BaseException as exc:
        if smtp is not None:
            smtp.close()
        if sock is not None:
            sock.close()
        if isinstance(exc, Exception):
            raise smtp_error(exc, server) from None
        raise
    # Sent: a goodbye that fails changes nothing (and must not make the step retry).
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_QUIT_SECONDS):
            await smtp.quit()
    smtp.close()
    return {
        "accepted": [r for r in recipients if r not in refused],
        "refused": {r: f"{reply.code} {reply.message}" for r, reply in refused.items()},
    }


class EmailSent(TaskResult):
    """Result of ``email.send``."""

    message_id: str = Field(description="<…@…>, the same for every attempt of the step.")
    accepted: list[str] = Field(description="The addresses the server took.")
    refused: dict[str, str] = Field(
        description="Address -> SMTP reply, for addresses refused while others were accepted."
    )


class EmailTool(BaseTool):
    """Send email through SMTP: the node's ``smtp`` connection, else ``SMTP_HOST`` and
    ``SMTP_FROM`` (with ``SMTP_PORT``, ``SMTP_SECURITY``, ``SMTP_USERNAME``,
    ``SMTP_PASSWORD``, ``SMTP_FROM_NAME``)."""

    service = "email"
    description = "Send email through an SMTP server."
    credential_types = (SmtpCredential,)
    settings_type = SmtpSettings

    def server(self, context: ToolContext) -> SmtpServer:
        """The server to send through: the node's credential, else the deployment's settings
        (placeholders in sandbox mode, where nothing is sent)."""
        data = context.credential.data if context.credential is not None else None
        if isinstance(data, SmtpCredential):
            return SmtpServer(
                host=data.host,
                port=data.port or DEFAULT_PORTS[data.security],
                security=data.security,
                username=data.username,
                password=data.password.get_secret_value() if data.password else None,
                from_address=data.from_address,
                from_name=data.from_name,
            )
        smtp = context.settings.tool(SmtpSettings)
        if context.credential is not None or smtp.host is None or smtp.from_address is None:
            return SmtpServer(
                "smtp.sandbox.invalid", 587, "starttls", None, None, "sandbox@example.com", None
            )
        password = smtp.password
        return SmtpServer(
            host=smtp.host.strip(),
            port=smtp.port or DEFAULT_PORTS[smtp.security],
            security=smtp.security,
            username=smtp.username,
            password=password.get_secret_value() if password is not None else None,
            from_address=smtp.from_address,
            from_name=smtp.from_name,
        )

    @task(
        params=SendEmail,
        result=EmailSent,
        description="Send an email (text, optionally HTML) to up to 50 addresses per field.",
    )
    async def send(self, params: SendEmail, context: ToolContext) -> EmailSent:
        """Send the message.

        Raises:
            ToolError: see :func:`send_email`.
        """
        server = self.server(context)
        msgid = message_id(context.idempotency_key, server.from_address)
        message = build_message(params, server, msgid)
        sent = await send_email(context.settings, server, message, params.recipients())
        return EmailSent(message_id=msgid, **sent)

    @send.request
    def send_request(self, params: SendEmail, context: ToolContext) -> dict[str, Any]:
        """The SMTP exchange: server, envelope and the message's headers and bodies (never the
        password)."""
        server = self.server(context)
        sender = Address(display_name=server.from_name or "", addr_spec=server.from_address)
        body: dict[str, Any] = {
            "from": str(sender),
            "to": params.to,
            "subject": params.subject,
            "message_id": message_id(context.idempotency_key, server.from_address),
            "text": params.text,
        }
        for name in ("cc", "bcc", "reply_to", "html"):
            if getattr(params, name):
                body[name] = getattr(params, name)
        return {
            "method": "SMTP",
            "url": f"smtp://{server.host}:{server.port}",
            "security": server.security,
            "body": body,
        }

    @send.sandbox
    def send_sandbox(self, params: SendEmail, context: ToolContext) -> EmailSent:
        """The result's fields as if every recipient were accepted (the Message-ID is a
        sandbox one, so it is never mistaken for a real message's)."""
        return EmailSent(
            message_id=f"<{fake_id('wf', context.idempotency_key)}@sandbox.invalid>",
            accepted=params.recipients(),
            refused={},
        )
