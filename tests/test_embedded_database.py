"""Which PostgreSQL the project uses, and the embedded server it falls back to.

Mechanisms under test (``src/blueprint_engine/store/database.py``): the choice DATABASE_URL -> the
local server -> the embedded server; the embedded server's data surviving a stop (the main job's
example, run by ``wf run``, read back through the API after a restart); processes sharing one
server, the last to exit stopping it (flock-counted users); and crashes — of a user or of the
server itself, even with its pid reused — leaving nothing that blocks the next start.

These tests start their own embedded servers in temporary directories, whichever server the
rest of the suite uses.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.store import database
from blueprint_engine.store.database import EmbeddedServer
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
#: Nothing listens here: the "local server" of these tests never answers.
CLOSED = "postgresql://postgres@127.0.0.1:1/blueprints"
EXAMPLE = ["examples/payment_receipt/blueprint.json", "--payload"]
EXAMPLE += ["examples/payment_receipt/payload.json"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """An embedded server's data directory; whatever a test left running is stopped."""
    path = tmp_path.resolve() / "pg"
    yield path
    server = EmbeddedServer.of(path)
    pid = server.postmaster_pid()
    if pid is not None:
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown, whoever still holds it


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return {
        **env,
        "LOCAL_DATABASE_URL": CLOSED,
        "EMBEDDED_DATABASE_DIR": str(data_dir),
        "COLUMNS": "160",
        "WORKER_POLL_SECONDS": "0.05",
        **extra,
    }


def wf(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blueprint_engine.cli", *args],
        cwd=ROOT,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _worker(data_dir: Path) -> subprocess.Popen[str]:
    """``wf worker``, once it has said it started (it is then attached to the server)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "blueprint_engine.cli", "worker"],
        cwd=ROOT,
        env=_env(data_dir, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # ends when the worker exits
        seen.append(line)
        if line.startswith("worker ") and line.rstrip().endswith(" started"):
            return process
    raise AssertionError(f"wf worker exited: {''.join(seen)}")


def _embedded_settings(data_dir: Path, **overrides: Any) -> Settings:
    return make_settings(
        database.embedded_url(data_dir), embedded_database_dir=data_dir, **overrides
    )


def test_database_url_else_local_server_else_embedded(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    data_dir = tmp_path.resolve() / "pg"
    given = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=CLOSED, local_database_url=database_url
    )
    assert database.choose(given) is given, "DATABASE_URL is used as it is, even unreachable"
    assert database.describe(given) == "DATABASE_URL (127.0.0.1:1/blueprints)"

    local = database.choose(
        Settings(_env_file=None, local_database_url=database_url, embedded_database_dir=data_dir)  # type: ignore[call-arg]
    )
    assert local.database_url == database_url, "a local server that lets us in comes next"
    assert database.describe(local).startswith("the local PostgreSQL server (")
    assert database.embedded_server(local) is None

    embedded = database.choose(
        Settings(_env_file=None, local_database_url=CLOSED, embedded_database_dir=data_dir)  # type: ignore[call-arg]
    )
    assert embedded.database_url == f"postgresql://postgres@/blueprints?host={data_dir}"
    assert database.describe(embedded) == f"embedded PostgreSQL in {data_dir}"
    server = database.embedded_server(embedded)
    assert server is not None and not server.running(), "choosing it does not start it"


def test_the_example_runs_on_the_embedded_server_and_survives_a_restart(data_dir: Path) -> None:
    result = wf(data_dir, "run", *EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"database: embedded PostgreSQL in {data_dir}" in result.stdout
    assert "run succeeded" in result.stdout
    match = re.search(r"run ([0-9a-f-]{36})", result.stdout)
    assert match is not None, result.stdout
    run_id = match.group(1)
    server = EmbeddedServer.of(data_dir)
    assert not server.running(), "wf run was its only user: it stopped the server on exit"
    assert (data_dir / "PG_VERSION").exists()

    # Restart: the API starts the server again and finds the run, every node succeeded.
    with TestClient(create_app(_embedded_settings(data_dir))) as client:
        assert server.running()
        run = client.get(f"/runs/{run_id}").json()
        assert run["status"] == "succeeded", run
        assert {node["id"]: node["status"] for node in run["nodes"]} == {
            "payment_captured": "succeeded",
            "receipt": "succeeded",
            "send_receipt": "succeeded",
            "done": "succeeded",
        }
        assert run["output"]["amount_rupees"] == "2499.00"
    assert not server.running(), "the API was its last user"


def test_wf_db_start_keeps_it_up_for_other_tools_until_wf_db_stop(data_dir: Path) -> None:
    status = wf(data_dir, "db", "status")
    assert status.returncode == 0 and "not running" in status.stdout
    started = wf(data_dir, "db", "start")
    assert started.returncode == 0, started.stderr
    url = wf(data_dir, "db", "url").stdout.strip()
    assert url == database.embedded_url(data_dir)
    run = wf(data_dir, "run", *EXAMPLE)
    assert run.returncode == 0, run.stdout + run.stderr
    with psycopg.connect(url) as conn:  # as psql "$(wf db url)" would
        count = conn.execute("select count(*) from workflow_runs").fetchone()
    assert count == (1,), "wf run used the kept server and left it up"
    assert "kept up by `wf db start`" in wf(data_dir, "db", "status").stdout
    stopped = wf(data_dir, "db", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not EmbeddedServer.of(data_dir).running()


def test_processes_share_one_server_and_the_last_to_exit_stops_it(data_dir: Path) -> None:
    worker = _worker(data_dir)
    try:
        server = EmbeddedServer.of(data_dir)
        postmaster = server.postmaster_pid()
        assert postmaster is not None and server.in_use()
        run = wf(data_dir, "run", *EXAMPLE)
        assert run.returncode == 0, run.stdout + run.stderr
        assert server.postmaster_pid() == postmaster, "wf run attached to the worker's server"
        assert "in use" in wf(data_dir, "db", "stop").stdout, "wf db stop waits for the worker"
        assert server.running()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert not server.running(), "the worker was the last user"


def test_crashes_leave_nothing_that_blocks_the_next_start(data_dir: Path) -> None:
    worker = _worker(data_dir)
    worker.kill()  # a user dies without letting go
    worker.wait(timeout=10)
    server = EmbeddedServer.of(data_dir)
    postmaster = server.postmaster_pid()
    assert postmaster is not None and not server.in_use(), "its flock died with it"

    os.kill(postmaster, signal.SIGKILL)  # the server dies too, leaving postmaster.pid behind
    deadline = time.monotonic() + 10
    while server.postmaster_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    # ...and its pid now belongs to another program (here: this test's process).
    pid_file = data_dir / "postmaster.pid"
    lines = pid_file.read_text().split("\n")
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]))
    assert not server.running()

    run = wf(data_dir, "run", *EXAMPLE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "run succeeded" in run.stdout
    assert not server.running(), "wf run, its only user, stopped it"
