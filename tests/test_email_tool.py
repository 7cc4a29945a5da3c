"""The email tool against a real SMTP server (aiosmtpd on 127.0.0.1): what the server received
(envelope, headers, bodies, Message-ID), STARTTLS and implicit TLS with a certificate from a
test CA, logins, the reply codes that are retried (4xx) and those that are not (5xx), the
outbound guard, sandbox mode, and a run whose node names a stored ``smtp`` connection."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.integrations.base import ToolError
from blueprint_engine.integrations.credentials import Credential
from blueprint_engine.integrations.email_tool import EmailTool, SendEmail, SmtpCredential
from tests.conftest import ALICE, make_settings
from tests.support import as_user, call_task, wait_for_run
from tests.test_credentials import KEY_A, _create, _dump

PASSWORD = "smtp_PLANTED_password_41aa"
KEY = "3f2b6a1e-0000-4000-8000-000000000001:mail"


@dataclass
class Mailbox:
    """What the server received, and how it answers: ``replies`` maps a stage (``MAIL``,
    ``RCPT``, ``DATA``) to a function of the address (or None) giving the reply, or None to
    accept."""

    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    replies: dict[str, Callable[[str | None], str | None]] = field(default_factory=dict)

    def _reply(self, stage: str, address: str | None) -> str | None:
        answer = self.replies.get(stage)
        return answer(address) if answer else None

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        envelope.mail_from = address
        return self._reply("MAIL", address) or "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        refused = self._reply("RCPT", address)
        if refused:
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        refused = self._reply("DATA", None)
        if refused:
            return refused
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        self.tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 2.0.0 queued"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password))
        # handled=False: the server answers 535 itself
        return AuthResult(success=(login, password) == ("shop", PASSWORD), handled=False)


class _Server(Controller):
    """aiosmtpd's threaded controller on a port the OS chose (bound before it starts)."""

    def __init__(self, handler: Mailbox, **kwargs: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        super().__init__(handler, hostname="127.0.0.1", port=port, **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


@dataclass
class Tls:
    """A test CA and a server certificate for 127.0.0.1 it issued."""

    ca: trustme.CA
    server: ssl.SSLContext
    ca_file: Path


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return Tls(ca, server, tmp_path / "ca.pem")


@pytest.fixture
def smtp() -> Iterator[Callable[..., tuple[Mailbox, int]]]:
    """Start SMTP servers (``smtp(**aiosmtpd options)`` -> (mailbox, port)); all stop after."""
    started: list[_Server] = []

    def start(**options: Any) -> tuple[Mailbox, int]:
        mailbox = Mailbox()
        if options.pop("login", False):
            options.setdefault("authenticator", mailbox.authenticate)
            options.setdefault("auth_required", True)
        server = _Server(mailbox, **options)
        server.start()
        started.append(server)
        return mailbox, server.port

    yield start
    for server in started:
        server.stop()


def _settings(port: int, smtp: dict[str, Any] | None = None, **overrides: Any) -> Settings:
    """The deployment's SMTP_* settings: this port, no TLS, unless ``smtp`` says otherwise."""
    server: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "shop@example.com",
        "from_name": "Corner Shöp",
        "timeout_seconds": 5,
        **(smtp or {}),
    }
    values: dict[str, Any] = {
        "database_url": "postgresql://unused",
        "http_allow_hosts": ["127.0.0.1"],
        "tools": {"smtp": server},
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _send(
    settings: Settings,
    params: dict[str, Any],
    credential: Credential | None = None,
    key: str = KEY,
) -> dict[str, Any]:
    message = SendEmail.model_validate(params)
    return call_task(EmailTool(), "send", message, settings, key=key, credential=credential)


def _failure(settings: Settings, params: dict[str, Any]) -> ToolError:
    with pytest.raises(ToolError) as caught:
        _send(settings, params)
    return caught.value


MESSAGE = {"to": ["asha@example.com"], "subject": "Your receipt", "text": "Paid ₹500. Thanks!"}


def test_the_server_receives_the_envelope_headers_and_both_bodies(smtp: Any) -> None:
    mailbox, port = smtp()
    result = _send(
        _settings(port),
        {
            "to": ["asha@example.com", "ravi@example.com"],
            "cc": ["accounts@example.com"],
            "bcc": ["audit@example.com", "asha@example.com"],
            "reply_to": "help@example.com",
            "subject": "Rechnung № 7 — danke",
            "text": "Paid ₹500.\nThanks!",
            "html": "<p>Paid <b>₹500</b>.</p>",
        },
    )
    [(envelope, message)] = mailbox.messages
    assert envelope.mail_from == "shop@example.com"
    everyone = ["asha@example.com", "ravi@example.com", "accounts@example.com", "audit@example.com"]
    assert envelope.rcpt_tos == everyone, "each address once, bcc included"
    assert result["accepted"] == everyone and result["refused"] == {}
    assert message["From"] == "Corner Shöp <shop@example.com>"
    assert message["To"] == "asha@example.com, ravi@example.com"
    assert message["Cc"] == "accounts@example.com"
    assert message["Bcc"] is None, "bcc recipients are not in the headers"
    assert message["Reply-To"] == "help@example.com"
    assert message["Subject"] == "Rechnung № 7 — danke"
    assert message["Message-ID"] == result["message_id"]
    assert result["message_id"].startswith("<wf-") and result["message_id"].endswith(
        "@example.com>"
    )
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    # bodies as sent: lines end with CRLF on the wire
    assert text.get_content() == "Paid ₹500.\r\nThanks!\r\n"
    assert html.get_content() == "<p>Paid <b>₹500</b>.</p>\r\n"
    assert mailbox.tls == [False]


def test_every_attempt_of_a_step_sends_the_same_message_id(smtp: Any) -> None:
    """A second send of the same step (a retry after a crash) is recognisable as the same
    message; another step's message is not."""
    mailbox, port = smtp()
    settings = _settings(port)
    first = _send(settings, MESSAGE)
    again = _send(settings, MESSAGE)
    other = _send(settings, MESSAGE, key=KEY + "2")
    ids = [message["Message-ID"] for _, message in mailbox.messages]
    assert ids == [first["message_id"], first["message_id"], other["message_id"]]
    assert again["message_id"] == first["message_id"] != other["message_id"]


def test_starttls_and_login_with_a_certificate_from_a_trusted_ca(
    smtp: Any, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    mailbox, port = smtp(tls_context=tls.server, require_starttls=True, login=True)
    settings = _settings(
        port, smtp={"security": "starttls", "username": "shop", "password": PASSWORD}
    )
    result = _send(settings, MESSAGE)
    assert result["accepted"] == ["asha@example.com"]
    assert mailbox.logins == [("shop", PASSWORD)]
    assert mailbox.tls == [True], "the message went over TLS"

    smtp = {**settings.tools["smtp"], "password": SecretStr("not-it")}
    wrong_password = settings.model_copy(update={"tools": {"smtp": smtp}})
    wrong = _failure(wrong_password, MESSAGE)
    assert (wrong.code, wrong.retryable) == ("smtp_auth_failed", False)
    assert wrong.details["reply_code"] == 535
    assert len(mailbox.messages) == 1


def test_implicit_tls(smtp: Any, tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    mailbox, port = smtp(ssl_context=tls.server)
    _send(_settings(port, smtp={"security": "tls"}), MESSAGE)
    assert mailbox.tls == [True]


def test_an_untrusted_certificate_fails_without_retry(smtp: Any, tls: Tls) -> None:
    """No SSL_CERT_FILE: the test CA is unknown, so the certificate is refused (a retry would
    meet the same certificate)."""
    mailbox, port = smtp(tls_context=tls.server, require_starttls=True)
    error = _failure(_settings(port, smtp={"security": "starttls"}), MESSAGE)
    assert (error.code, error.retryable) == ("smtp_tls_error", False)
    assert "certificate" in error.message
    assert mailbox.messages == []


def test_starttls_asked_for_but_not_offered_fails_without_retry(smtp: Any) -> None:
    mailbox, port = smtp()
    error = _failure(_settings(port, smtp={"security": "starttls"}), MESSAGE)
    assert (error.code, error.retryable) == ("smtp_tls_unavailable", False)
    assert mailbox.messages == []


@pytest.mark.parametrize(
    ("stage", "reply", "code", "retryable"),
    [
        ("MAIL", "421 4.3.2 Service shutting down", "smtp_sender_refused", True),
        ("RCPT", "451 4.7.1 Greylisted, try again later", "smtp_recipients_refused", True),
        ("RCPT", "550 5.1.1 No such user", "smtp_recipients_refused", False),
        ("DATA", "451 4.3.0 Temporary local problem", "smtp_message_refused", True),
        ("DATA", "554 5.7.1 Message rejected as spam", "smtp_message_refused", False),
    ],
)
def test_temporary_replies_are_retryable_permanent_ones_are_not(
    smtp: Any, stage: str, reply: str, code: str, retryable: bool
) -> None:
    mailbox, port = smtp()
    mailbox.replies[stage] = lambda _address: reply
    error = _failure(_settings(port), MESSAGE)
    assert (error.code, error.retryable) == (code, retryable)
    if stage == "RCPT":
        assert error.details["refused"] == {"asha@example.com": reply}
    else:
        assert error.details["reply_code"] == int(reply[:3])
        assert reply[4:] in error.message
    assert mailbox.messages == []


def test_a_message_some_recipients_got_has_been_sent(smtp: Any) -> None:
    """The server took it for the others: the step succeeds (retrying would send it to them
    again) and says who was refused."""
    mailbox, port = smtp()
    mailbox.replies["RCPT"] = lambda a: "550 5.1.1 No such user" if a and "nobody" in a else None
    result = _send(_settings(port), {**MESSAGE, "cc": ["nobody@example.com"]})
    assert result["accepted"] == ["asha@example.com"]
    assert result["refused"] == {"nobody@example.com": "550 5.1.1 No such user"}
    assert mailbox.messages[0][0].rcpt_tos == ["asha@example.com"]


def test_the_smtp_host_must_pass_the_outbound_guard(smtp: Any) -> None:
    mailbox, port = smtp()
    error = _failure(_settings(port, http_allow_hosts=[]), MESSAGE)
    assert (error.code, error.retryable) == ("destination_blocked", False)
    assert "HTTP_ALLOW_HOSTS" in error.message
    assert mailbox.messages == []


def test_a_server_that_is_not_there_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    error = _failure(_settings(port), MESSAGE)
    assert (error.code, error.retryable) == ("network_error", True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "Hi\r\nBcc: everyone@example.com"}, "subject"),
        ({"subject": "Hi\nX-Spam: no"}, "subject"),
        ({"subject": "Hi\u2028X-Spam: no"}, "subject"),  # line breaks beyond CR/LF too
        ({"subject": "Hi\x85there"}, "subject"),
        ({"subject": "Hi\x0bthere"}, "subject"),
        ({"to": ["asha@example.com\r\nBcc: everyone@example.com"]}, "to"),
        ({"to": ["not an address"]}, "to"),
        ({"to": []}, "to"),
        ({"to": [f"u{i}@example.com" for i in range(51)]}, "to"),
        ({"subject": "x" * 999}, "subject"),
        ({"html": "x" * 100_001}, "html"),
        ({"reply_to": "help@example.com\nBcc: x@example.com"}, "reply_to"),
    ],
)
def test_header_injection_and_oversized_params_are_refused(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SendEmail.model_validate({**MESSAGE, **change})
    assert caught.value.errors()[0]["loc"][0] == field


def test_smtp_credentials_are_checked() -> None:
    good = {"host": "smtp.example.com", "from_address": "shop@example.com"}
    assert SmtpCredential.model_validate(good).host == "smtp.example.com"
    for bad in (
        {**good, "host": "smtp.example.com:587"},
        {**good, "host": "smtp.example.com\r\nRCPT TO:<x@example.com>"},
        {**good, "from_address": "shop"},
        {**good, "password": "pw-without-user"},
        {**good, "from_name": "Shop\r\nBcc: x@example.com"},
        {**good, "from_name": "Shop\u2029Billing"},
    ):
        with pytest.raises(ValidationError):
            SmtpCredential.model_validate(bad)


def test_sandbox_mode_shows_the_exchange_without_the_password() -> None:
    """No SMTP_HOST: nothing is sent; the request names the server and the message."""
    settings = Settings(_env_file=None, database_url="postgresql://unused")  # type: ignore[call-arg]
    result = _send(settings, {**MESSAGE, "bcc": ["audit@example.com"]})
    assert result["sandbox"] is True
    assert result["accepted"] == ["asha@example.com", "audit@example.com"]
    assert result["message_id"].startswith("<wf_sandbox_")
    assert result["message_id"].endswith("@sandbox.invalid>")
    assert result["request"]["method"] == "SMTP"
    assert result["request"]["body"]["bcc"] == ["audit@example.com"]

    forced = _settings(1025, {"username": "shop", "password": PASSWORD}, sandbox=True)
    shown = _send(forced, MESSAGE)
    assert shown["request"]["url"] == "smtp://127.0.0.1:1025"
    assert shown["request"]["body"]["from"] == "Corner Shöp <shop@example.com>"
    assert PASSWORD not in repr(shown)


# --- through a run, with a stored connection -------------------------------------------------


def test_a_run_sends_with_the_nodes_smtp_connection_and_records_no_password(
    database_url: str,
    smtp: Any,
    tls: Tls,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    mailbox, port = smtp(tls_context=tls.server, require_starttls=True, login=True)
    settings = make_settings(
        database_url,
        credentials_key=KEY_A,
        supabase_jwt_secret="test-supabase-jwt-secret-with-32-bytes-or-more",
    )
    with TestClient(create_app(settings)) as client:
        _create(
            client,
            ALICE,
            "mailer",
            "smtp",
            {
                "host": "127.0.0.1",
                "port": port,
                "security": "starttls",
                "username": "shop",
                "password": PASSWORD,
                "from_address": "shop@example.com",
            },
        )
        blueprint = {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "mail",
                    "type": "action",
                    "service": "email",
                    "task": "send",
                    "credential": "mailer",
                    "params": {
                        "to": ["{{ trigger_data.email }}"],
                        "subject": "Order {{ trigger_data.order }}",
                        "text": "Thanks for order {{ trigger_data.order }}.",
                    },
                },
            ],
            "edges": [{"source": "start", "target": "mail"}],
        }
        started = client.post(
            "/workflow/execute",
            json={"blueprint": blueprint, "payload": {"email": "asha@example.com", "order": "A-7"}},
            headers=as_user(ALICE),
        )
        assert started.status_code == 202, started.text
        run = wait_for_run(client, started.json()["run_id"], headers=as_user(ALICE))
        assert run["status"] == "succeeded", run["error"]
        seen = [
            client.get(path, headers=as_user(ALICE)).text
            for path in (f"/runs/{run['id']}", f"/runs/{run['id']}/logs", "/credentials")
        ]
    assert mailbox.logins == [("shop", PASSWORD)], "the stored password was used"
    assert mailbox.tls == [True]
    [(envelope, message)] = mailbox.messages
    assert envelope.rcpt_tos == ["asha@example.com"] and message["Subject"] == "Order A-7"
    output = next(n for n in run["nodes"] if n["id"] == "mail")["output"]
    assert output["message_id"] == message["Message-ID"] and "sandbox" not in output
    assert PASSWORD not in "\n".join(seen)
    assert PASSWORD not in _dump(database_url)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    assert PASSWORD not in "\n".join(ours)
