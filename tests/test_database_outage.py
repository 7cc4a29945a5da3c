"""A database outage longer than the run lease, on a private PostgreSQL cluster the test starts
and stops (``initdb`` + ``pg_ctl`` in a temp dir; skipped when the server binaries are missing).

Mechanisms under test: every claim gets its own lease token and every write of a pass is
fenced on it, a process never claims a run its own pass still holds, attempts are counted
before they run; the API answers 503 ``database_unavailable`` within
``DB_ACQUIRE_TIMEOUT_SECONDS`` while the database is down, and ``/health`` is 200 again within
seconds of it coming back. External calls are counted at the peer: no step but the one in
flight when the database went away ever runs twice.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import SUMMARY, make_settings
from tests.support import Peer, execute, wait_for_run

LEASE = 2.0


class PrivateCluster:
    """A throwaway PostgreSQL server on a free port (run as ``postgres`` when we are root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="outage-pg-"))
        self.data = self.root / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/outage"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as_owner, str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stop at once, closing every connection (as a crash or a failover would)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self._as_owner, str(self.bindir / "pg_ctl"), "-D", str(self.data), "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _server_bindir() -> Path | None:
    for pg_ctl in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True):
        return Path(pg_ctl).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    bindir = _server_bindir()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = PrivateCluster(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def _wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _chain(peer: Peer) -> dict[str, Any]:
    ids = ["start", "a", "slow", "b", "c"]
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "trigger"}]
    nodes += [
        {
            "id": i,
            "type": "action",
            "service": "http",
            "task": "request",
            "params": {"url": f"{peer.url}/{i}"},
        }
        for i in ids[1:]
    ]
    edges = [{"source": x, "target": y} for x, y in itertools.pairwise(ids)]
    return {"nodes": nodes, "edges": edges}


def _blocking(peer: Peer) -> threading.Event:
    release = threading.Event()
    peer.handlers["/slow"] = lambda _: (200, {"released": release.wait(timeout=60)})
    return release


def _app(cluster: PrivateCluster) -> TestClient:
    settings = make_settings(
        cluster.url,
        run_lease_seconds=LEASE,
        db_acquire_timeout_seconds=1.0,
        worker_poll_seconds=0.1,
        run_pass_backoff_seconds=0.1,
    )
    return TestClient(create_app(settings))


def test_outage_while_a_step_is_in_flight_runs_nothing_twice(
    cluster: PrivateCluster, peer: Peer
) -> None:
    """The database goes away for longer than the lease while ``slow`` is in flight and stays
    in flight until after it is back. The pass that holds it is still this process's, so no
    other pass may claim the run and call ``slow``, ``b`` or ``c`` again (before: the same
    process claimed its own expired run and ran both passes at once)."""
    release = _blocking(peer)
    with _app(cluster) as client:
        run_id = execute(client, _chain(peer))
        _wait(lambda: peer.hits["/slow"] == 1, 20, "the run to reach the slow step")
        cluster.stop()
        try:
            started = time.monotonic()
            during = client.get(f"/runs/{run_id}")
            took = time.monotonic() - started
            assert during.status_code == 503, during.text
            assert during.json()["error"]["code"] == "database_unavailable"
            assert during.headers["retry-after"] == "5"
            assert took < 5, f"a request waited {took:.1f}s for a dead database"
            assert client.get("/health").status_code == 503
            time.sleep(LEASE * 2)  # the lease expires while nobody can extend it
        finally:
            cluster.start()
        recovered = _wait(
            lambda: client.get("/health").status_code == 200, 15, "/health to recover"
        )
        assert recovered < 5, f"/health took {recovered:.1f}s to recover"
        SUMMARY.append(
            f"database outage: a request while down took {took:.2f}s (503); "
            f"/health was 200 again {recovered:.2f}s after the restart"
        )
        time.sleep(LEASE)  # claim loops run with the lease expired: nobody may take the run
        release.set()
        run = wait_for_run(client, run_id, timeout=30)
    assert run["status"] == "succeeded", run
    assert dict(peer.hits) == {"/a": 1, "/slow": 1, "/b": 1, "/c": 1}


def test_outage_when_a_step_finishes_repeats_only_that_step(
    cluster: PrivateCluster, peer: Peer
) -> None:
    """``slow`` finishes while the database is down, so its result cannot be recorded: the
    pass fails and its lease expires. After the outage the run resumes and calls ``slow``
    once more (the step in flight, at-least-once), but nothing that was recorded."""
    release = _blocking(peer)
    with _app(cluster) as client:
        run_id = execute(client, _chain(peer))
        _wait(lambda: peer.hits["/slow"] == 1, 20, "the run to reach the slow step")
        cluster.stop()
        try:
            release.set()
            time.sleep(LEASE * 2)
        finally:
            cluster.start()
        run = wait_for_run(client, run_id, timeout=40)
    assert run["status"] == "succeeded", run
    assert dict(peer.hits) == {"/a": 1, "/slow": 2, "/b": 1, "/c": 1}
    slow = next(node for node in run["nodes"] if node["id"] == "slow")
    assert slow["attempt"] == 2
