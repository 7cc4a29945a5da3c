"""Connection pool and JSON adaptation for PostgreSQL (psycopg 3).

Connections are autocommit: a single statement is its own transaction; multi-statement
units of work open ``conn.transaction()`` explicitly.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import AsyncConnectionPool

# Vendor SDK results may hold datetimes or decimals: store them as strings, never fail a step.
set_json_dumps(partial(json.dumps, default=str))

Conn = AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Conn]


async def open_pool(database_url: str, *, min_size: int = 2, max_size: int = 20) -> Pool:
    """Open and warm a pool of autocommit, dict-row connections.

    Raises:
        psycopg.OperationalError: the database is unreachable (after a 10 s wait).
    """
    pool: Pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        connection_class=AsyncConnection[DictRow],
        open=False,
    )
    await pool.open(wait=True, timeout=10)
    return pool


def jsonb(value: Any) -> Jsonb | None:
    """Wrap a JSON-like value for a ``jsonb`` parameter (``None`` stays SQL NULL)."""
    return None if value is None else Jsonb(value)
