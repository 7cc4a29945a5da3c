"""The outbound SSRF guard, through the API: ``http.request`` steps run by POST /workflow/execute.

Made-up names resolve through ``FakeDNS`` (which counts lookups), and the internet is an
``anyio.connect_tcp`` (what httpcore connects with) that records every address it is asked for
and refuses all but loopback, so each test sees every lookup and every connection attempt
without leaving the machine.
"""

from __future__ import annotations

import errno
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import make_settings
from tests.support import FakeDNS, Peer, execute, wait_for_run

GLOBAL_V4 = "93.184.215.14"
GLOBAL_V6 = "2606:4700:4700::1111"


class Internet:
    """``anyio.connect_tcp`` that records each address asked for and only reaches loopback."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._real = anyio.connect_tcp

    async def __call__(self, remote_host: Any, remote_port: int, **kwargs: Any) -> Any:
        host = str(remote_host)
        self.attempts.append(host)
        try:
            reachable = ipaddress.ip_address(host).is_loopback
        except ValueError:
            reachable = True  # a name: anyio resolves it (through FakeDNS) and connects
        if not reachable:
            raise OSError(errno.ENETUNREACH, f"{host} is outside the test machine")
        return await self._real(remote_host, remote_port, **kwargs)


@pytest.fixture
def internet(monkeypatch: pytest.MonkeyPatch) -> Internet:
    fake = Internet()
    monkeypatch.setattr(anyio, "connect_tcp", fake)
    return fake


@pytest.fixture
def guarded(database_url: str) -> Iterator[TestClient]:
    """The API with an empty HTTP_ALLOW_HOSTS: only public addresses are reachable."""
    with TestClient(create_app(make_settings(database_url, http_allow_hosts=[]))) as client:
        yield client


def _request(client: TestClient, url: str) -> dict[str, Any]:
    """Run one GET through the http tool (no retries) and return the finished run."""
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "call",
                "type": "action",
                "service": "http",
                "task": "request",
                "params": {"method": "GET", "url": url, "timeout_seconds": 5},
                "retry": {"max_attempts": 1},
            },
        ],
        "edges": [{"source": "start", "target": "call"}],
    }
    return wait_for_run(client, execute(client, blueprint))


def test_a_rebinding_name_is_resolved_once_and_reached_at_the_vetted_address(
    guarded: TestClient, dns: FakeDNS, internet: Internet, peer: Peer
) -> None:
    """The name is public when checked and loopback a moment later: the connection goes to the
    address that was checked, never to a second answer."""
    dns.answers["rebind.example"] = [[GLOBAL_V4], ["127.0.0.1"]]
    run = _request(guarded, f"http://rebind.example:{peer.port}/secret")
    assert dns.lookups["rebind.example"] == 1
    assert internet.attempts == [GLOBAL_V4]
    assert peer.hits["/secret"] == 0
    assert run["status"] == "failed" and run["error"]["code"] == "network_error"


@pytest.mark.parametrize(
    "host",
    [
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "cgnat.example",  # a name for it
        "[::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[64:ff9b::7f00:1]",  # NAT64 well-known prefix -> 127.0.0.1
        "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_destinations_are_refused_before_connecting(
    guarded: TestClient, dns: FakeDNS, internet: Internet, peer: Peer, host: str
) -> None:
    dns.answers["cgnat.example"] = [["100.64.0.1"]]
    run = _request(guarded, f"http://{host}:{peer.port}/secret")
    assert run["status"] == "failed"
    assert run["error"]["code"] == "destination_blocked", run["error"]
    assert run["error"]["attempts"] == 1
    assert "HTTP_ALLOW_HOSTS" in run["error"]["message"]
    assert internet.attempts == [] and peer.hits["/secret"] == 0


def test_a_public_ipv6_literal_is_connected_to_not_looked_up(
    guarded: TestClient, internet: Internet
) -> None:
    run = _request(guarded, f"http://[{GLOBAL_V6}]/")
    assert internet.attempts == [GLOBAL_V6]
    assert run["error"]["code"] == "network_error", run["error"]


def test_allow_listed_names_and_ranges_are_reached_with_one_lookup(
    database_url: str, dns: FakeDNS, peer: Peer
) -> None:
    dns.answers["internal.example"] = [["127.0.0.1"]]
    dns.answers["ranged.example"] = [["127.0.0.1"]]
    settings = make_settings(database_url, http_allow_hosts=["internal.example", "127.0.0.0/8"])
    with TestClient(create_app(settings)) as client:
        by_name = _request(client, f"http://internal.example:{peer.port}/a")
        by_range = _request(client, f"http://ranged.example:{peer.port}/b")
    assert by_name["status"] == by_range["status"] == "succeeded"
    assert dns.lookups == {"internal.example": 1, "ranged.example": 1}
    assert peer.headers["/a"][0]["Host"] == f"internal.example:{peer.port}"


def test_an_allow_listed_ipv6_loopback_literal_is_reached(database_url: str) -> None:
    try:
        peer = Peer("::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        settings = make_settings(database_url, http_allow_hosts=["::1"])
        with TestClient(create_app(settings)) as client:
            run = _request(client, f"{peer.url}/v6")
    finally:
        peer.close()
    assert run["status"] == "succeeded", run["error"]
    assert peer.hits["/v6"] == 1


def test_tls_is_checked_against_the_url_name_over_the_pinned_address(
    database_url: str, dns: FakeDNS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the socket address is pinned: TLS still sends the URL's name (SNI) and checks the
    certificate against it, so a certificate for another name fails."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    server_names: list[str | None] = []
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("tls.example").configure_cert(tls)
    tls.sni_callback = lambda _socket, name, _context: server_names.append(name)
    peer = Peer(tls=tls)
    dns.answers["tls.example"] = [["127.0.0.1"]]
    dns.answers["other.example"] = [["127.0.0.1"]]
    try:
        settings = make_settings(database_url, http_allow_hosts=["127.0.0.1"])
        with TestClient(create_app(settings)) as client:
            good = _request(client, f"https://tls.example:{peer.port}/ok")
            wrong = _request(client, f"https://other.example:{peer.port}/ok")
    finally:
        peer.close()
    assert good["status"] == "succeeded", good["error"]
    assert dns.lookups["tls.example"] == 1
    assert server_names[0] == "tls.example"
    assert peer.headers["/ok"] == [peer.headers["/ok"][0]]  # the mismatched one never got in
    assert peer.headers["/ok"][0]["Host"] == f"tls.example:{peer.port}"
    assert wrong["error"]["code"] == "network_error"
    assert "certificate" in wrong["error"]["message"].lower()
