"""Generic HTTP requests with httpx, guarded against server-side request forgery.

Requests go on the process's one client (``context.http``, connections reused across steps),
through :mod:`blueprint_engine.integrations.outbound`: the host is resolved once and the
connection made to that vetted address; a destination that is not a public address (private,
loopback, link-local, shared 100.64.0.0/10, IPv4-mapped, NAT64 to such an address, ...) is refused
unless its host, IP or CIDR range is listed in ``HTTP_ALLOW_HOSTS``. Redirects are not followed;
a 3xx is returned as the result.
Every request carries ``Idempotency-Key: <run_id>:<node_id>`` (IETF httpapi draft) unless the
params set that header.

Authentication comes from the node's credential (``"credential": "<name>"``): a bearer token,
basic auth (RFC 7617), a custom header or a query-string key, added when the request is sent —
never written into the blueprint's params, where it would be stored and logged.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Literal

import httpx
from pydantic import Field, HttpUrl, SecretStr, field_validator

from blueprint_engine.integrations import outbound
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
from blueprint_engine.store import storable

_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_REDACTED = "[redacted]"
#: RFC 9110 field-name token characters.
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$"
#: A header value we send: visible ASCII with inner spaces (no CR/LF, no control characters,
#: which would split the header or fail at send time, quoting the value in the error).
_HEADER_VALUE = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"
#: A token: visible ASCII, no spaces (RFC 6750's b64token and the usual API keys fit).
_VISIBLE_ASCII = r"^[\x21-\x7e]+$"


def _matching(value: SecretStr, pattern: str, what: str) -> SecretStr:
    """``value`` if its secret fully matches ``pattern``.

    Raises:
        ValueError: it does not; the message says what is allowed, never the value.
    """
    if re.fullmatch(pattern, value.get_secret_value()) is None:
        raise ValueError(f"only {what}: no line breaks or control characters")
    return value


class HttpCredential(CredentialData):
    """What every HTTP credential has: the hosts it may be sent to, and how it goes on a
    request (:meth:`apply`)."""

    allowed_hosts: list[str] = Field(
        default_factory=list,
        max_length=50,
        title="Allowed hosts",
        description="Send this credential only to these hosts ('api.example.com', or "
        "'.example.com' for it and its subdomains); empty: any host. A step with another host "
        "fails with credential_host_not_allowed.",
    )

    def permits(self, host: str) -> bool:
        """True when this credential may go to ``host``."""
        if not self.allowed_hosts:
            return True
        host = host.lower().rstrip(".")
        for allowed in (entry.strip().lower().rstrip(".") for entry in self.allowed_hosts):
            if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
                return True
        return False

    def apply(self, headers: dict[str, str], query: dict[str, Any], *, reveal: bool) -> None:
        """Put the credential on the request's ``headers`` or ``query`` (its secret shown as
        ``[redacted]`` unless ``reveal``)."""
        raise NotImplementedError


class BearerCredential(HttpCredential):
    """``Authorization: Bearer <token>`` (RFC 6750; type ``http_bearer``)."""

    kind = "http_bearer"
    label = "HTTP bearer token"

    token: SecretStr = Field(title="Token", min_length=1, max_length=8192)

    @field_validator("token")
    @classmethod
    def _sendable(cls, value: SecretStr) -> SecretStr:
        return _matching(value, _VISIBLE_ASCII, "visible ASCII characters, no spaces")

    def apply(self, headers: dict[str, str], query: dict[str, Any], *, reveal: bool) -> None:
        """Add the ``Authorization`` header (``[redacted]`` unless ``reveal``)."""
        headers["Authorization"] = "Bearer " + (
            self.token.get_secret_value() if reveal else _REDACTED
        )


class BasicCredential(HttpCredential):
    """``Authorization: Basic base64(user:password)`` (RFC 7617; type ``http_basic``)."""

    kind = "http_basic"
    label = "HTTP basic auth"
    identity = ("username",)

    username: str = Field(min_length=1, max_length=200, pattern=r"^[^:]*$")
    password: SecretStr = Field(min_length=1, max_length=1000)

    def _encoded(self) -> str:
        pair = f"{self.username}:{self.password.get_secret_value()}".encode()
        return base64.b64encode(pair).decode()

    def secrets(self) -> list[str]:
        """The password and the encoded pair that carries it (as a redactor must find it)."""
        return [*super().secrets(), self._encoded()]

    def apply(self, headers: dict[str, str], query: dict[str, Any], *, reveal: bool) -> None:
        """Add the ``Authorization`` header (``[redacted]`` unless ``reveal``)."""
        headers["Authorization"] = "Basic " + (self._encoded() if reveal else _REDACTED)


class HeaderCredential(HttpCredential):
    """A secret in a header of your choice, e.g. ``X-API-Key`` (type ``http_header``)."""

    kind = "http_header"
    label = "HTTP header"
    identity = ("header",)

    header: str = Field(title="Header name", pattern=_HEADER_NAME, examples=["X-API-Key"])
    value: SecretStr = Field(min_length=1, max_length=8192)

    @field_validator("value")
    @classmethod
    def _sendable(cls, value: SecretStr) -> SecretStr:
        return _matching(value, _HEADER_VALUE, "visible ASCII characters and inner spaces")

    def apply(self, headers: dict[str, str], query: dict[str, Any], *, reveal: bool) -> None:
        """Set the header (replacing one of the same name in the params)."""
        for name in [n for n in headers if n.lower() == self.header.lower()]:
            del headers[name]
        headers[self.header] = self.value.get_secret_value() if reveal else _REDACTED


class QueryCredential(HttpCredential):
    """A secret query-string parameter, e.g. ``?api_key=…`` (type ``http_query``)."""

    kind = "http_query"
    label = "HTTP query key"
    identity = ("parameter",)

    parameter: str = Field(
        title="Query parameter", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.~-]+$"
    )
    value: SecretStr = Field(min_length=1, max_length=2000)

    def apply(self, headers: dict[str, str], query: dict[str, Any], *, reveal: bool) -> None:
        """Set the query parameter."""
        query[self.parameter] = self.value.get_secret_value() if reveal else _REDACTED


class Request(TaskParams):
    """Params of ``http.request``."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json", description="JSON body (any value).")
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)


class HttpResponse(TaskResult):
    """Result of ``http.request``."""

    status_code: int | None = Field(description="The HTTP status (null in sandbox mode).")
    headers: dict[str, str] = Field(description="The response headers.")
    body: Any = Field(description="The body: JSON when it says so and parses, else text.")


class HttpTool(BaseTool):
    """Call any HTTP endpoint (webhooks, internal APIs on the allow-list), on the process's
    shared client (``context.http``)."""

    service = "http"
    description = "Send an HTTP request to a URL and return the status, headers and body."
    credential_types = (BearerCredential, BasicCredential, HeaderCredential, QueryCredential)

    def _prepare(
        self, params: Request, context: ToolContext, *, reveal: bool
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Headers and query to send: the params', the idempotency key, and the credential's
        (its secret ``[redacted]`` unless ``reveal``)."""
        headers = dict(params.headers)
        query: dict[str, Any] = dict(params.query)
        if not any(name.lower() == "idempotency-key" for name in headers):
            headers["Idempotency-Key"] = context.idempotency_key
        credential = context.credential
        if credential is not None and isinstance(credential.data, HttpCredential):
            credential.data.apply(headers, query, reveal=reveal)
        return headers, query

    @task(
        params=Request,
        result=HttpResponse,
        description="Send an HTTP request; non-2xx responses fail the step (5xx/429 retried).",
    )
    async def request(self, params: Request, context: ToolContext) -> HttpResponse:
        """Send the request on the shared client, through the outbound guard, within the
        step's ``timeout_seconds`` (else ``HTTP_TIMEOUT_SECONDS``).

        Raises:
            ToolError: ``destination_blocked`` (not retryable), ``dns_error``, ``timeout``,
                ``network_error`` (retryable), or ``http_status`` for a 4xx/5xx (with the
                ``Retry-After`` of a 429 or 503).
        """
        url: HttpUrl = params.url
        credential = context.credential
        if (
            credential is not None
            and isinstance(credential.data, HttpCredential)
            and not credential.data.permits(url.host or "")
        ):
            raise ToolError(
                f"credential '{credential.name}' may not be sent to {url.host} (its allowed_hosts)",
                code="credential_host_not_allowed",
                retryable=False,
            )
        timeout = params.timeout_seconds or context.settings.http_timeout_seconds
        headers, query = self._prepare(params, context, reveal=True)
        try:
            async with context.http.stream(
                params.method,
                str(url),
                params=query or None,
                headers=headers,
                json=params.json_body,
                timeout=timeout,
            ) as response:
                content = await _read_at_most(response, storable.MAX_BYTES)
        except outbound.DestinationBlocked as exc:
            raise ToolError(str(exc), code="destination_blocked", retryable=False) from None
        except outbound.ResolutionFailed as exc:
            raise ToolError(str(exc), code="dns_error", retryable=True) from None
        except httpx.TimeoutException as exc:
            raise ToolError(
                f"{params.method} {url} timed out",
                code="timeout",
                retryable=True,
                details={"error": str(exc)},
            ) from None
        except httpx.HTTPError as exc:
            raise ToolError(
                f"{params.method} {url} failed: {exc}", code="network_error", retryable=True
            ) from None
        if content is None:
            raise ToolError(
                f"{params.method} {url} answered with more than "
                f"{storable.MAX_BYTES // (1024 * 1024)} MB",
                code="response_too_large",
                retryable=False,
                details={"status_code": response.status_code},
            )
        body = _decode(response, content)
        if response.status_code >= 400:
            raise ToolError(
                f"{params.method} {url} returned HTTP {response.status_code}",
                code="http_status",
                retryable=response.status_code in _RETRYABLE_STATUS,
                details={"status_code": response.status_code, "body": body},
                retry_after=retry_after_seconds(response.status_code, response.headers),
            )
        return HttpResponse(
            status_code=response.status_code, headers=dict(response.headers), body=body
        )

    @request.request
    def request_request(self, params: Request, context: ToolContext) -> dict[str, Any]:
        """Method, URL, query, headers and JSON body as they would be sent (credentials shown
        as ``[redacted]``)."""
        headers, query = self._prepare(params, context, reveal=False)
        request: dict[str, Any] = {
            "method": params.method,
            "url": str(params.url),
            "headers": headers,
        }
        if query:
            request["query"] = query
        if params.json_body is not None:
            request["body"] = params.json_body
        return request

    @request.sandbox
    def request_sandbox(self, params: Request, context: ToolContext) -> HttpResponse:
        """The result's fields, empty, so later steps that read them still resolve."""
        return HttpResponse(status_code=None, headers={}, body=None)


async def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit`` bytes (the rest is not read)."""
    declared = response.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(response: httpx.Response, content: bytes) -> Any:
    """The body as JSON when it says so and parses, else as text. Whatever the server sends
    decodes to something: it is the server's answer, not a crash of the tool (which would be
    retried, sending the request again for the same answer)."""
    if "json" in response.headers.get("content-type", ""):
        try:
            return json.loads(content)
        except (ValueError, RecursionError):  # not JSON, ints over 4300 digits, too deep
            pass
    try:
        return content.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset naming a codec that is not a text encoding ("hex")
        return content.decode("utf-8", errors="replace")
