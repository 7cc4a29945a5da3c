"""Shared by the HTTP benchmarks: a fresh database, the real API (and workers) in subprocesses.

The API is started the way the README says (``uvicorn blueprint_engine.app:app``: migrations, the
pool, the embedded runner) in local mode (no identity configured), from an empty working
directory so that no ``.env`` changes its settings.
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import conninfo

from blueprint_engine.store import migrations

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/blueprints"
#: Settings that would turn on identity (every request would then need credentials).
_IDENTITY = ("SUPABASE_URL", "SUPABASE_JWT_SECRET", "API_KEYS")


def bench_database(suffix: str) -> str:
    """Drop and recreate ``<DATABASE_URL's name>_<suffix>`` on the server in ``DATABASE_URL``,
    migrated; returns its URL."""
    base = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    name = f"{conninfo.conninfo_to_dict(base).get('dbname') or 'blueprints'}_{suffix}"
    url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    admin = conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
    migrations.ensure_database(url)
    migrations.migrate(url)
    return url


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft open-file limit towards ``wanted`` (children inherit it);
    returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def machine(url: str) -> str:
    """One line: CPU, cores, load average, Python and PostgreSQL versions."""
    with psycopg.connect(url) as conn:
        row = conn.execute("show server_version").fetchone()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores (load average {load}), "
        f"Python {platform.python_version()}, PostgreSQL {row[0] if row else '?'} on "
        f"{conninfo.conninfo_to_dict(url).get('host')}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """A subprocess of the benchmark with the API's environment, as a context manager.

    Runs from an empty working directory (no ``.env``), in local mode (identity settings
    removed), ``DATABASE_URL`` = ``database_url`` plus ``env``. Its output goes to a temporary
    file (``log_path``). On exit (also on Ctrl-C or SIGTERM of the benchmark) it gets SIGINT,
    then SIGKILL after ``grace`` seconds.
    """

    def __init__(
        self,
        args: list[str],
        database_url: str,
        env: dict[str, str] | None = None,
        *,
        grace: float = 15.0,
    ) -> None:
        self._args = args
        self._database_url = database_url
        self._env = env or {}
        self._grace = grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="bench-child-")
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        assert self._proc is not None
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        """Where the process's output goes."""
        return Path(self._dir.name) / "output.log"

    def exited(self) -> bool:
        """True once the process has ended."""
        return self._proc is not None and self._proc.poll() is not None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's output."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> Child:
        env = {k: v for k, v in os.environ.items() if k not in _IDENTITY}
        env |= {"DATABASE_URL": self._database_url, **self._env}
        self._log = self.log_path.open("wb")
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _interrupt)
        self._proc = subprocess.Popen(
            [sys.executable, *self._args],
            cwd=self._dir.name,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(self._grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
        self._dir.cleanup()


class ApiServer(Child):
    """``uvicorn blueprint_engine.app:app`` on a free local port (see :class:`Child`); entering
    waits until ``/health`` answers 200.

    Raises:
        RuntimeError: the server did not answer ``/health`` within ``start_timeout`` seconds.
    """

    def __init__(
        self, database_url: str, env: dict[str, str] | None = None, *, start_timeout: float = 60
    ) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._start_timeout = start_timeout
        args = ["-m", "uvicorn", "blueprint_engine.app:app", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        super().__init__(args, database_url, env)

    def __enter__(self) -> ApiServer:
        super().__enter__()
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline and not self.exited():
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not become healthy; its log ends:\n{self.log_tail()}")


def worker(database_url: str, env: dict[str, str] | None = None) -> Child:
    """``wf worker``: the embedded runner in a process of its own (without the API)."""
    return Child(["-m", "blueprint_engine.cli", "worker"], database_url, env)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``; NaN
    elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100, nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]
