"""Outbound HTTP to URLs that a user, a model or a webhook chose, guarded against SSRF.

:func:`guarded_client` returns an ``httpx.AsyncClient`` whose every connection is opened by
:class:`GuardedBackend`, an httpcore network backend (the documented extension point,
https://www.encode.io/httpcore/network-backends/). For each new connection it resolves the host
**once**, refuses the connection if any address is not public (:func:`is_public`) and not allowed
by ``HTTP_ALLOW_HOSTS``, and connects to one of exactly those vetted addresses: there is no
second lookup for a rebinding DNS server to answer differently. Only the socket address is
pinned: httpcore negotiates TLS on that socket with the URL's host as ``server_hostname``, so
SNI and the certificate check use the name, and the Host header is the URL's.

:func:`open_socket` applies the same policy to a plain TCP socket, for clients that are not
httpx (the email tool's SMTP connection).

The client never follows redirects (a caller that wants them re-checks each hop) and ignores
``HTTP(S)_PROXY`` (a proxy would resolve the name itself). ``SSL_CERT_FILE``/``SSL_CERT_DIR``
replace the certifi CA bundle, as in httpx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import httpcore
import httpx

from blueprint_engine.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215 local use: never public
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 2.5.5.1 (deprecated)


class DestinationBlocked(httpx.TransportError):
    """The host is, or resolves to, an address that is not public and not allow-listed."""


class ResolutionFailed(httpx.ConnectError):
    """The host name does not resolve (DNS failure; worth retrying later)."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that traffic to ``address`` ends up at, if it embeds one: IPv4-mapped
    (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), NAT64 well-known prefix
    (``64:ff9b::a.b.c.d``) or 6to4 (``2002:AABB:CCDD::/48``)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True for a globally reachable unicast address.

    Python's ``is_global`` (the IANA special-purpose registries: private, loopback, link-local,
    shared 100.64.0.0/10, 0.0.0.0/8, documentation, ...) minus multicast, reserved and site-local
    ranges; an IPv6 address that embeds an IPv4 address (:func:`embedded_ipv4`) is judged by that
    IPv4 address, and the NAT64 local-use prefix is never public.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL or address.is_site_local:
            return False
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not (address.is_multicast or address.is_reserved)


@dataclass(frozen=True)
class AllowList:
    """``HTTP_ALLOW_HOSTS``: host names, IP addresses and CIDR ranges that may be reached even
    though they are not public. A listed name allows whatever it resolves to."""

    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Split entries into networks (``10.0.0.0/8``, ``::1``, ``[::1]``) and host names."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            value = entry.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                if value:
                    names.add(value)
        return cls(frozenset(names), tuple(networks))

    def permits(self, host: str, address: IPAddress) -> bool:
        """Whether ``host`` may be reached at ``address``."""
        if is_public(address) or host.lower().rstrip(".") in self.names:
            return True
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and (v4 := embedded_ipv4(address)):
            candidates.append(v4)
        return any(a in network for a in candidates for network in self.networks)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` in resolver order, without duplicates; an IP literal is itself.

    Raises:
        ResolutionFailed: the name does not resolve.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ResolutionFailed(f"cannot resolve {host}: {exc}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ResolutionFailed(f"cannot resolve {host}: no addresses")
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves once, vets every address, and connects to a
    vetted one (the first that answers, in resolver order).

    ``timeout`` (httpx's connect timeout) bounds the lookup and all connection attempts
    together; each address gets an equal share of what is left. Unix sockets are refused.
    """

    def __init__(self, allow: AllowList, backend: httpcore.AsyncNetworkBackend | None = None):
        self._allow = allow
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Open a TCP stream to a vetted address of ``host``.

        Raises:
            DestinationBlocked: an address is not public and not allowed (nothing is opened).
            ResolutionFailed: DNS failure. httpcore.ConnectError / ConnectTimeout.
        """
        try:
            with anyio.fail_after(timeout):
                addresses = await resolve(host, port)
                blocked = [str(a) for a in addresses if not self._allow.permits(host, a)]
                if blocked:
                    detail = "" if blocked == [host] else f" (resolves to {', '.join(blocked)})"
                    raise DestinationBlocked(
                        f"{host}{detail} is not a public address; add it to HTTP_ALLOW_HOSTS "
                        "to allow it"
                    )
                return await self._connect_first(
                    host, addresses, port, local_address, socket_options
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from None

    async def _connect_first(
        self,
        host: str,
        addresses: list[IPAddress],
        port: int,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        failures = []
        for left, address in zip(range(len(addresses), 0, -1), addresses, strict=True):
            # Each address gets an equal share of the time that is left, so one that never
            # answers does not starve the others.
            share = (anyio.current_effective_deadline() - anyio.current_time()) / left
            try:
                with anyio.move_on_after(share):
                    return await self._backend.connect_tcp(
                        str(address),
                        port,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                failures.append(f"{address}: no answer within {share:.1f} s")
            except httpcore.ConnectError as exc:
                failures.append(f"{address}: {exc}")
        raise httpcore.ConnectError(f"cannot connect to {host}:{port} ({'; '.join(failures)})")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: guarded requests only go over TCP.

        Raises:
            DestinationBlocked: always.
        """
        raise DestinationBlocked("unix sockets are not reachable through the outbound guard")

    async def sleep(self, seconds: float) -> None:
        """Sleep on the wrapped backend (httpcore's retry backoff)."""
        await self._backend.sleep(seconds)


# httpcore's exceptions and their httpx equivalents, most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError:
        raise
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore connection pool that connects through
    :class:`GuardedBackend`; httpcore errors surface as the usual httpx exceptions."""

    def __init__(self, allow: AllowList) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=GuardedBackend(allow),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the pool (the httpx transport API)."""
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._pool.aclose()


def _vetted(settings: Settings, host: str, addresses: list[IPAddress]) -> None:
    """Raise DestinationBlocked unless every address of ``host`` is permitted."""
    allow = AllowList.parse(settings.http_allow_hosts)
    blocked = [str(a) for a in addresses if not allow.permits(host, a)]
    if blocked:
        detail = "" if blocked == [host] else f" (resolves to {', '.join(blocked)})"
        raise DestinationBlocked(
            f"{host}{detail} is not a public address; add it to HTTP_ALLOW_HOSTS to allow it"
        )


async def vet(settings: Settings, url: str) -> None:
    """Check before a call that ``url``'s host resolves only to addresses the policy permits,
    for clients this module cannot carry (the openai SDK's ``httpx2``). Weaker than
    :func:`guarded_client`: the client resolves again, so a name whose answer changes in
    between (DNS rebinding) is not caught.

    Raises:
        DestinationBlocked: a non-public, non-allowed address. ResolutionFailed: DNS failure.
    """
    parts = httpx.URL(url)
    host = parts.host
    addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    _vetted(settings, host, addresses)


async def open_socket(settings: Settings, host: str, port: int, *, seconds: float) -> socket.socket:
    """A non-blocking TCP socket connected to a vetted address of ``host``: resolved once,
    every address checked as :class:`GuardedBackend` does, then the first that answers, in
    resolver order, each given an equal share of the time left. For clients that take a
    connected socket and are not httpx (aiosmtplib's ``sock=``); the caller owns the socket.

    ``seconds`` bounds the lookup and every connection attempt together.

    Raises:
        DestinationBlocked: an address is not public and not allowed (nothing is opened).
        ResolutionFailed: DNS failure. TimeoutError: no answer in time. OSError: every
            address refused the connection.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with asyncio.timeout_at(deadline):
        addresses = await resolve(host, port)
    _vetted(settings, host, addresses)
    failures: list[str] = []
    refused = False
    for left, address in zip(range(len(addresses), 0, -1), addresses, strict=True):
        share = max(0.0, deadline - loop.time()) / left
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(share):
                await loop.sock_connect(sock, (str(address), port))
        except TimeoutError:
            sock.close()
            failures.append(f"{address}: no answer within {share:.1f} s")
        except OSError as exc:
            sock.close()
            refused = True
            failures.append(f"{address}: {exc.strerror or exc}")
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    reasons = "; ".join(failures)
    if not refused:
        raise TimeoutError(f"connecting to {host}:{port} timed out ({reasons})")
    raise ConnectionError(f"cannot connect to {host}:{port} ({reasons})")


def guarded_client(settings: Settings, *, timeout: float) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for URLs a user, model or webhook chose (see the module
    docstring); ``timeout`` in seconds per httpx operation; redirects are not followed.

    Its requests raise DestinationBlocked (refused by policy, do not retry), ResolutionFailed
    (DNS) and the other ``httpx.HTTPError`` exceptions.
    """
    transport = GuardedTransport(AllowList.parse(settings.http_allow_hosts))
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )
