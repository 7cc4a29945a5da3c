"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from blueprint_engine.http import PoolDep, error_response
from blueprint_engine.store.db import check_soon

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(pool: PoolDep, request: Request) -> Any:
    """200 ``{"status": "ok", "database": "ok", "worker_id"}`` if the database answers, else 503
    ``database_unavailable`` within ``DB_ACQUIRE_TIMEOUT_SECONDS``. After an outage it is 200
    again within seconds of the database (stale connections are tested and replaced)."""
    try:
        async with pool.connection() as conn:
            await conn.execute("select 1")
    except (psycopg.Error, OSError, TimeoutError) as exc:
        check_soon(pool)
        return error_response(503, "database_unavailable", f"database check failed: {exc}")
    runner = request.app.state.runner
    return JSONResponse({"status": "ok", "database": "ok", "worker_id": runner.worker_id})
