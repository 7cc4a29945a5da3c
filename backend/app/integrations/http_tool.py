"""Generic HTTP requests with httpx, guarded against server-side request forgery.

Destinations that resolve to private, loopback, link-local, multicast or reserved addresses are
refused unless their host, IP or CIDR range is listed in ``HTTP_ALLOW_HOSTS``. Redirects are not
followed (a redirect could point inside the network); a 3xx is returned as the result.
Every request carries ``Idempotency-Key: <run_id>:<node_id>`` (IETF httpapi draft) unless the
params set that header.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, Literal

import httpx
from pydantic import Field, HttpUrl

from backend.app.config import Settings
from backend.app.integrations.base import BaseTool, Task, TaskParams, ToolContext, ToolError

_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class Request(TaskParams):
    """Params of ``http.request``."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json", description="JSON body (any value).")
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)


def _blocked(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _allowed(host: str, addresses: list[str], allow: list[str]) -> bool:
    if host in allow:
        return True
    networks = []
    for entry in allow:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return all(any(ipaddress.ip_address(a) in net for net in networks) for a in addresses)


async def check_destination(host: str, port: int, settings: Settings) -> None:
    """Refuse hosts that resolve to internal addresses unless allow-listed.

    Raises:
        ToolError: ``destination_blocked`` (not retryable) or ``dns_error`` (retryable).
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError as exc:
        raise ToolError(f"cannot resolve {host}: {exc}", code="dns_error", retryable=True) from None
    addresses = sorted({str(info[4][0]) for info in infos})
    internal = [a for a in addresses if _blocked(ipaddress.ip_address(a))]
    if internal and not _allowed(host, internal, settings.http_allow_hosts):
        raise ToolError(
            f"{host} resolves to a private/loopback/link-local address ({', '.join(internal)}); "
            "add it to HTTP_ALLOW_HOSTS to allow it",
            code="destination_blocked",
            retryable=False,
        )


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
        """Send the request after the destination check.

        Raises:
            ToolError: blocked destination, network failure, or a non-2xx/3xx status.
        """
        settings = context.settings
        url: HttpUrl = params.url
        host = url.host or ""
        await check_destination(host, url.port or 443, settings)
        timeout = params.timeout_seconds or settings.http_timeout_seconds
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                response = await client.request(
                    params.method,
                    str(url),
                    params=params.query or None,
                    headers=self._headers(params, context),
                    json=params.json_body,
                )
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
        body = _decode(response)
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


def _decode(response: httpx.Response) -> Any:
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:  # not JSON, or numbers Python will not parse (over 4300 digits)
            pass
    return response.text
