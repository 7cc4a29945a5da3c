"""Fixtures: a real PostgreSQL test database, the API, a local HTTP peer.

The suite uses the database ``<name>_test`` (default ``blueprints_test``) on the server the
project would use (``DATABASE_URL``, else the local server, else the embedded one: see
``src/blueprint_engine/store/database.py``), recreated and migrated once per session, truncated
before each test.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import conninfo, sql

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings, get_settings
from blueprint_engine.store import database, migrations
from blueprint_engine.store.accounts import LOCAL_USER_ID
from tests.support import JWT_SECRET, FakeDNS, Peer

#: Lines for the end of pytest's report (figures a test measured, e.g. the API fuzzing).
SUMMARY: list[str] = []

#: The project's database as ``wf`` would choose it; the suite's is a sibling (``_test``).
BASE = get_settings()
BASE_URL = BASE.database_url
TERMINAL = {"succeeded", "failed", "cancelled"}
WEBHOOK_SECRET = "whsec_test_secret"
#: Kept audio (voice notes, spoken replies) of the suite's APIs: not the checkout's .data.
AUDIO_DIR = Path(tempfile.mkdtemp(prefix="blueprints-test-audio-"))
atexit.register(shutil.rmtree, AUDIO_DIR, ignore_errors=True)


def suite_database_url() -> str:
    """The suite's own database: ``<DATABASE_URL's name>_test``."""
    name = conninfo.conninfo_to_dict(BASE_URL).get("dbname") or "blueprints"
    return conninfo.make_conninfo(BASE_URL, dbname=f"{name}_test")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = suite_database_url()
    dbname = conninfo.conninfo_to_dict(url)["dbname"]
    admin = conninfo.make_conninfo(url, dbname="postgres")
    with database.held(BASE):  # the embedded server, if that is it, stays up for the session
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )
        assert migrations.ensure_database(url)
        assert migrations.migrate(url), "the init migration should apply on a fresh database"
        assert migrations.migrate(url) == [], "a second migrate is a no-op"
        yield url


@pytest.fixture(autouse=True)
def clean_db(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "truncate workflows, workflow_versions, workflow_runs, step_checkpoints, run_waits,"
            " workflow_logs, events, webhook_deliveries, sessions, session_messages,"
            " workflow_schedules, api_keys, channel_links, channel_link_codes, channel_hints,"
            " credentials, retention_policies"
            " cascade"
        )
        conn.execute("delete from users where id <> %s", (LOCAL_USER_ID,))
        conn.execute(
            "update users set display_name = 'Local user', email = null, phone = null"
            " where id = %s",
            (LOCAL_USER_ID,),
        )


def merged_tools(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tool settings (``Settings.tools``: ``{"twilio": {"auth_token": …}}``), each layer's
    values over the earlier ones', tool by tool."""
    tools: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for name, values in layer.items():
            tools[name] = {**tools.get(name, {}), **values}
    return tools


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """The suite's settings with ``overrides``; ``tools`` is merged tool by tool."""
    base: dict[str, Any] = {
        "database_url": database_url,
        "worker_poll_seconds": 0.05,
        "run_lease_seconds": 5.0,
        "retry_initial_backoff_seconds": 0.01,
        "retry_max_backoff_seconds": 0.05,
        "retry_jitter_seconds": 0.0,
        "tools": {"razorpay": {"webhook_secret": WEBHOOK_SECRET}},
        "http_allow_hosts": ["127.0.0.1"],
        "shutdown_grace_seconds": 2.0,
        "audio_dir": AUDIO_DIR,
    }
    tools = merged_tools(base["tools"], overrides.pop("tools", {}))
    base.update(overrides, tools=tools)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


#: Two users for cross-user tests (``as_user(ALICE)`` gives her request headers).
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"


@pytest.fixture
def accounts(database_url: str) -> Iterator[TestClient]:
    """The API with Supabase Auth configured (HS256, ``support.JWT_SECRET``): requests need
    a token (``support.as_user``) or an API key."""
    settings = make_settings(database_url, supabase_jwt_secret=JWT_SECRET)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class InngestApp:
    """The API in ENGINE=inngest dev mode, with the peer standing in for Inngest's event API."""

    EVENT_KEY = "test-event-key"

    def __init__(self, client: TestClient, peer: Peer) -> None:
        self.client = client
        self.sent: list[dict[str, Any]] = []
        peer.handlers[f"/e/{self.EVENT_KEY}"] = self._accept

    def _accept(self, body: Any) -> tuple[int, Any]:
        events = body if isinstance(body, list) else [body]
        self.sent.extend(events)
        return 200, {"ids": [e.get("id", "x") for e in events], "status": 200}

    @property
    def function(self) -> Any:
        return self.client.app.state.inngest.function  # type: ignore[attr-defined]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e["name"] == name]


@pytest.fixture
def inngest_app(database_url: str, peer: Peer) -> Iterator[InngestApp]:
    settings = make_settings(
        database_url,
        engine="inngest",
        inngest_dev="1",
        inngest_base_url=peer.url,
        inngest_event_key=InngestApp.EVENT_KEY,
        inngest_retries=4,
    )
    with TestClient(create_app(settings)) as client:
        yield InngestApp(client, peer)


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    """Made-up host names for this test (see ``FakeDNS``)."""
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures tests recorded in :data:`SUMMARY`."""
    for line in SUMMARY:
        terminalreporter.write_line(line)
