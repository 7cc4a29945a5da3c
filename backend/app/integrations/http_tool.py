"""Generic HTTP requests with httpx, guarded against server-side request forgery.

Requests go through :mod:`backend.app.integrations.outbound`: the host is resolved once and the
connection made to that vetted address; a destination that is not a public address (private,
loopback, link-local, shared 100.64.0.0/10, IPv4-mapped, NAT64 to such an address, ...) is refused
unless its host, IP or CIDR range is listed in ``HTTP_ALLOW_HOSTS``. Redirects are not followed;
a 3xx is returned as the result.
Every request carries ``Idempotency-Key: <run_id>:<node_id>`` (IETF httpapi draft) unless the
params set that header.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
from pydantic import Field, HttpUrl

from backend.app.config import Settings
from backend.app.integrations import outbound
from backend.app.integrations.base import BaseTool, Task, TaskParams, ToolContext, ToolError
from backend.app.store import storable

_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class Request(TaskParams):
    """Params of ``http.request``."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json", description="JSON body (any value).")
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)


class HttpTool(BaseTool):
    """Call any HTTP endpoint (webhooks, internal APIs on the allow-list)."""

    service = "http"
    description = "Send an HTTP request to a URL and return the status, headers and body."
    tasks = {
        "request": Task(
            params=Request,
            description="Send an HTTP request; non-2xx responses fail the step (5xx/429 retried).",
            result={"status_code": "integer", "headers": "object", "body": "JSON value or text"},
        )
    }

    def has_credentials(self, settings: Settings) -> bool:
        """Needs none."""
        return True

    def _headers(self, params: Any, context: ToolContext) -> dict[str, str]:
        headers = dict(params.headers)
        if not any(name.lower() == "idempotency-key" for name in headers):
            headers["Idempotency-Key"] = context.idempotency_key
        return headers

    def build_request(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Method, URL, query, headers and JSON body as they would be sent."""
        request: dict[str, Any] = {
            "method": params.method,
            "url": str(params.url),
            "headers": self._headers(params, context),
        }
        if params.query:
            request["query"] = params.query
        if params.json_body is not None:
            request["body"] = params.json_body
        return request

    async def send(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Send the request through the outbound guard.

        Raises:
            ToolError: ``destination_blocked`` (not retryable), ``dns_error``, ``timeout``,
                ``network_error`` (retryable), or ``http_status`` for a 4xx/5xx.
        """
        settings = context.settings
        url: HttpUrl = params.url
        timeout = params.timeout_seconds or settings.http_timeout_seconds
        try:
            async with (
                outbound.guarded_client(settings, timeout=timeout) as client,
                client.stream(
                    params.method,
                    str(url),
                    params=params.query or None,
                    headers=self._headers(params, context),
                    json=params.json_body,
                ) as response,
            ):
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
            )
        return {
            "status_code": response.status_code,
            "headers": dict(response.headers),
            "body": body,
        }


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
