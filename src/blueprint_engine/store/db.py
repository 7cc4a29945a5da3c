"""Connection pool and JSON adaptation for PostgreSQL (psycopg 3).

Connections are autocommit: a single statement is its own transaction; multi-statement
units of work open ``conn.transaction()`` explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from weakref import WeakKeyDictionary

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import AsyncConnectionPool

from blueprint_engine.store import storable

# Vendor SDK results may hold datetimes or decimals: store them as strings, never fail a step.
set_json_dumps(storable.dumps)

Conn = AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Conn]


async def open_pool(
    database_url: str, *, min_size: int = 2, max_size: int = 20, acquire_timeout: float = 30.0
) -> Pool:
    """Open and warm a pool of autocommit, dict-row connections.

    ``acquire_timeout``: seconds ``pool.connection()`` waits for a connection before raising
    ``psycopg_pool.PoolTimeout`` (an ``OperationalError``). While the database is down, a new
    connection is tried after 1, 2, 4 s…, but a connecting task gives up after
    :data:`RECONNECT_SECONDS` and the next request starts a fresh one at once: the pool is back
    within seconds of the database, whatever the outage lasted.

    Raises:
        psycopg.OperationalError: the database is unreachable (after a 10 s wait).
    """
    pool: Pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5},
        connection_class=AsyncConnection[DictRow],
        timeout=acquire_timeout,
        reconnect_timeout=RECONNECT_SECONDS,
        open=False,
    )
    await pool.open(wait=True, timeout=10)
    return pool


RECONNECT_SECONDS = 4.0
_checks: WeakKeyDictionary[Pool, asyncio.Task[None]] = WeakKeyDictionary()


def check_soon(pool: Pool) -> None:
    """After a connection failed: test the pool's idle connections in the background and
    replace the broken ones (``pool.check()``), so a restarted database costs one failed
    request, not one per stale connection. At most one check runs at a time."""
    running = _checks.get(pool)
    if running is not None and not running.done():
        return

    async def check() -> None:
        with contextlib.suppress(Exception):
            await pool.check()

    _checks[pool] = asyncio.create_task(check(), name="db-pool-check")


def jsonb(value: Any) -> Jsonb | None:
    """Wrap a JSON-like value for a ``jsonb`` parameter (``None`` stays SQL NULL)."""
    return None if value is None else Jsonb(value)
