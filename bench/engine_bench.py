"""Engine benchmark: per-step overhead and throughput, ours vs DBOS on the same PostgreSQL.

    python bench/engine_bench.py            # or: bash bench/run.sh (installs dbos first)

Workloads (identical for both engines, all steps are no-ops so only the engine is measured):
- overhead: one run of a 100-step chain, repeated; median wall time per step (ms).
- throughput: 50 runs of 5 steps started at once; runs per second until all finished.

Ours = the embedded runner (checkpoint + workflow_logs row per step, fenced on the lease).
DBOS = ``@DBOS.workflow`` with ``@DBOS.step`` functions, async API, same database.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import statistics
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg
from psycopg import conninfo

from blueprint_engine.config import Settings
from blueprint_engine.integrations import (
    TOOL_REGISTRY,
    BaseTool,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolResources,
    task,
)
from blueprint_engine.services import workflow_service
from blueprint_engine.store import migrations
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Pool, open_pool
from blueprint_engine.store.steps import Lease
from blueprint_engine.workflows.runners.embedded import EmbeddedRunner
from blueprint_engine.workflows.schema import validate_blueprint


class NoParams(TaskParams):
    """No params."""


class Nothing(TaskResult):
    """No output."""


class NoopTool(BaseTool):
    """Does nothing and changes nothing (never sandboxed): isolates engine cost."""

    service = "noop"
    description = "no-op"
    side_effects = False

    @task(params=NoParams, result=Nothing, description="no-op")
    async def skip(self, params: NoParams, context: ToolContext) -> Nothing:
        return Nothing()


REGISTRY: dict[str, BaseTool] = {**TOOL_REGISTRY, "noop": NoopTool()}


def chain(steps: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "trigger"}]
    nodes += [
        {"id": f"s{i}", "type": "action", "service": "noop", "task": "skip"} for i in range(steps)
    ]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": nodes, "edges": edges}


async def _workflow(pool: Pool, steps: int) -> UUID:
    blueprint = validate_blueprint(chain(steps), REGISTRY)
    async with pool.connection() as conn, conn.transaction():
        row = await workflow_service.create_in(
            conn,
            blueprint,
            name=f"bench-{steps}",
            description=None,
            owner=LOCAL_USER_ID,
            origin="api",
        )
    workflow_id: UUID = row["id"]
    return workflow_id


async def _queue(pool: Pool, workflow_id: UUID, count: int) -> None:
    async with pool.connection() as conn, conn.transaction():
        for _ in range(count):
            await runs_store.create(
                conn,
                owner=LOCAL_USER_ID,
                workflow_id=workflow_id,
                version=1,
                trigger_data={},
                idempotency_key=None,
            )


async def ours(
    url: str, steps: int, repeats: int, concurrent: int, rounds: int
) -> dict[str, float]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        worker_concurrency=concurrent,
        db_pool_max=24,
        worker_poll_seconds=0.01,
    )
    pool = await open_pool(url, min_size=8, max_size=24)
    runner = EmbeddedRunner(
        pool, settings, tools=ToolResources(settings, pool.connection), registry=REGISTRY
    )
    try:
        long_wf = await _workflow(pool, steps)
        per_step = []
        for _ in range(repeats + 1):  # first pass warms caches, dropped
            await _queue(pool, long_wf, 1)
            async with pool.connection() as conn:
                [row] = await runs_store.claim(conn, runner.worker_id, 1, 30)
            t0 = time.perf_counter()
            outcome = await runner.execute_pass(row, Lease(row["lease_token"], 30))
            elapsed = time.perf_counter() - t0
            assert outcome.status == "succeeded", outcome
            per_step.append(elapsed / (steps + 1) * 1000)
        short_wf = await _workflow(pool, 5)
        rates = []
        for _ in range(rounds):
            await _queue(pool, short_wf, concurrent)
            t0 = time.perf_counter()
            await runner.drain()
            rates.append(concurrent / (time.perf_counter() - t0))
        async with pool.connection() as conn:
            cur = await conn.execute(
                "select count(*) as n from workflow_runs where status <> 'succeeded'"
            )
            left = await cur.fetchone()
        assert left is not None and left["n"] == 0, "every benchmark run must succeed"
        return {
            "per_step_ms": statistics.median(per_step[1:]),
            "runs_per_s": statistics.median(rates),
        }
    finally:
        await pool.close()


async def dbos(
    url: str, steps: int, repeats: int, concurrent: int, rounds: int
) -> dict[str, float]:
    from dbos import DBOS

    DBOS(config={"name": "bench", "system_database_url": url, "log_level": "WARNING"})

    @DBOS.step()
    async def noop(i: int) -> dict[str, Any]:
        return {}

    @DBOS.workflow()
    async def flow(n: int) -> int:
        for i in range(n):
            await noop(i)
        return n

    DBOS.launch()
    try:
        per_step = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            handle = await DBOS.start_workflow_async(flow, steps)
            await handle.get_result()
            per_step.append((time.perf_counter() - t0) / steps * 1000)
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            handles = [await DBOS.start_workflow_async(flow, 5) for _ in range(concurrent)]
            await asyncio.gather(*(h.get_result() for h in handles))
            rates.append(concurrent / (time.perf_counter() - t0))
        return {
            "per_step_ms": statistics.median(per_step[1:]),
            "runs_per_s": statistics.median(rates),
        }
    finally:
        DBOS.destroy()


def commit_baseline(url: str, count: int = 2000) -> float:
    """Median ms of a one-row INSERT commit on this server: the floor under a durable step."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table bench_baseline (id serial primary key, v int)")
        times = []
        for i in range(count):
            t0 = time.perf_counter()
            conn.execute("insert into bench_baseline (v) values (%s)", (i,))
            times.append(time.perf_counter() - t0)
        conn.execute("drop table bench_baseline")
    return statistics.median(times) * 1000


def _reset(url: str) -> None:
    name = conninfo.conninfo_to_dict(url)["dbname"]
    admin = conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
    migrations.ensure_database(url)
    migrations.migrate(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-dbos", action="store_true")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/blueprints")
    # <db>_bench, recreated: parallel checkouts with their own DATABASE_URL do not collide
    name = conninfo.conninfo_to_dict(base)["dbname"]
    url = urlunsplit(urlsplit(base)._replace(path=f"/{name}_bench"))
    _reset(url)
    baseline = commit_baseline(url)
    work = (args.steps, args.repeats, args.concurrent, args.rounds)
    mine = asyncio.run(ours(url, *work))
    theirs = None if args.skip_dbos else asyncio.run(dbos(url, *work))

    with psycopg.connect(url) as conn:
        server = conn.execute("show server_version").fetchone()
    host = conninfo.conninfo_to_dict(url).get("host")
    version = server[0] if server else "?"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, ", end="")
    print(f"Python {platform.python_version()}, PostgreSQL {version} on {host}")
    print(
        f"workloads: {args.steps}-step chain x{args.repeats} (median); "
        f"{args.concurrent} concurrent 5-step runs x{args.rounds} (median)"
    )
    print(f"one-row INSERT commit on this server: {baseline:.3f} ms (median)")
    print(f"{'metric':<28}{'ours':>10}{'dbos':>10}{'ours/dbos':>11}")
    for key, label in (
        ("per_step_ms", "per-step overhead (ms)"),
        ("runs_per_s", "throughput (runs/s)"),
    ):
        other = theirs[key] if theirs else float("nan")
        print(f"{label:<28}{mine[key]:>10.3f}{other:>10.3f}{mine[key] / other:>11.2f}")


if __name__ == "__main__":
    main()
