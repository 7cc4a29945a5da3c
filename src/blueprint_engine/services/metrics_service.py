"""The Prometheus exposition of ``GET /metrics``, with the queue figures read at scrape time."""

from __future__ import annotations

import asyncio
import logging
import math

import psycopg
from prometheus_client import generate_latest
from psycopg_pool import PoolTimeout

from blueprint_engine import metrics
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store.db import Pool, check_soon

log = logging.getLogger(__name__)

#: A scrape waits at most this long (seconds) for the queue figures; then they are NaN.
QUEUE_QUERY_SECONDS = 1.0
#: Prometheus' classic text format, which every Prometheus version reads (our metric names are
#: all plain, so prometheus-client's output is the same in both its formats).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def exposition(pool: Pool, *, query_seconds: float = QUEUE_QUERY_SECONDS) -> bytes:
    """Every metric in Prometheus' text format (:data:`CONTENT_TYPE`), after reading the queue
    depth and the age of the oldest ready run from the database (:func:`runs_store.queue_stats`).

    Never raises for the database: if it does not answer within ``query_seconds`` (pool
    included), the two queue gauges are NaN and the rest is served as usual.
    """
    depth: float
    age: float
    try:
        async with asyncio.timeout(query_seconds), pool.connection() as conn:
            depth, age = await runs_store.queue_stats(conn, timeout_ms=int(query_seconds * 1000))
    except (psycopg.Error, OSError, PoolTimeout, TimeoutError) as exc:
        log.warning("metrics: queue figures unavailable: %s: %s", type(exc).__name__, exc)
        if isinstance(exc, psycopg.OperationalError):
            check_soon(pool)
        depth, age = math.nan, math.nan
    metrics.QUEUE_DEPTH.set(depth)
    metrics.QUEUE_OLDEST_AGE.set(age)
    return generate_latest(metrics.registry())
