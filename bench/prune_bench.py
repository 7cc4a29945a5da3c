"""Pruning benchmark: how fast the retention pruner deletes old runs, how long its batches
take, and what it costs the runner's steps meanwhile.

    .venv/bin/python bench/prune_bench.py [--runs 100000] [--batch-size 500] [--pause 0.2]
                                          [--pruners 1]

Recreates ``<name>_bench`` (as ``engine_bench.py``), seeds ``--runs`` finished runs past their
policy (half succeeded 40 days ago, half failed 100 days ago), each as the runner leaves a
5-step run: 6 log rows, 6 checkpoints, 5 attempt counts, a trigger payload of ~0.5 kB; plus
``--runs / 10`` recent runs that must stay. Then:

1. the runner alone: a 20-step no-op chain run again and again; per-step latency;
2. the same while ``--pruners`` pruning passes (as that many processes) delete the old runs;
   per-step latency meanwhile, the passes' rows per second and their batch latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from engine_bench import REGISTRY, _reset, _workflow
from psycopg import conninfo

from blueprint_engine.config import Settings
from blueprint_engine.integrations import ToolResources
from blueprint_engine.services import retention_service
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Pool, open_pool
from blueprint_engine.store.steps import Lease
from blueprint_engine.workflows.runners.embedded import EmbeddedRunner

SEED_CHUNK = 10_000


def seed(url: str, old: int, recent: int) -> None:
    """``old`` finished runs past their policy and ``recent`` ones within it."""
    with psycopg.connect(url, autocommit=True) as conn:
        [(workflow_id,)] = conn.execute(
            "insert into workflows (owner_id, name) values (%s, 'seeded') returning id",
            (LOCAL_USER_ID,),
        ).fetchall()
        conn.execute(
            "insert into workflow_versions (workflow_id, owner_id, version, blueprint,"
            " trigger_kind) values (%s, %s, 1, '{}', 'manual')",
            (workflow_id, LOCAL_USER_ID),
        )
        for done in range(0, old + recent, SEED_CHUNK):
            n = min(SEED_CHUNK, old + recent - done)
            conn.execute(
                """
                with runs as (
                  insert into workflow_runs (owner_id, workflow_id, version, status,
                                             trigger_data, created_at, started_at, finished_at)
                  select %(owner)s, %(wf)s, 1, s.status,
                         jsonb_build_object('order', g, 'note', repeat('x', 400)),
                         s.at, s.at, s.at
                    from generate_series(%(first)s::int, %(last)s::int) g
                    cross join lateral (select
                      case when g > %(old)s::int then 'succeeded'
                           when g %% 2 = 0 then 'succeeded' else 'failed' end as status,
                      now() - make_interval(days => case when g > %(old)s::int then 1
                           when g %% 2 = 0 then 40 else 100 end,
                           secs => g %% 86400) as at) s
                  returning id),
                steps as (select id, 's' || k as step from runs, generate_series(0, 5) k),
                logs as (
                  insert into workflow_logs (run_id, owner_id, node_id, step_id, status,
                                             output)
                  select id, %(owner)s, step, step, 'succeeded', '{"ok": true}' from steps),
                attempts as (
                  insert into step_attempts (run_id, step_id, started)
                  select id, step, 1 from steps where step <> 's0')
                insert into step_checkpoints (run_id, step_id, node_id, status, output)
                select id, step, step, 'succeeded', '{"ok": true}' from steps
                """,
                {
                    "owner": LOCAL_USER_ID,
                    "wf": workflow_id,
                    "first": done + 1,
                    "last": done + n,
                    "old": old,
                },
            )
        conn.execute("vacuum analyze")


async def chain_steps(
    pool: Pool, runner: EmbeddedRunner, workflow_id: object, stop: asyncio.Event, steps: int
) -> list[float]:
    """Run the chain again and again until ``stop``; ms per step of each run."""
    per_step = []
    while not stop.is_set():
        async with pool.connection() as conn:
            await runs_store.create(
                conn,
                owner=LOCAL_USER_ID,
                workflow_id=workflow_id,  # type: ignore[arg-type]
                version=1,
                trigger_data={},
                idempotency_key=None,
            )
            [row] = await runs_store.claim(conn, runner.worker_id, 1, 30)
        t0 = time.perf_counter()
        outcome = await runner.execute_pass(row, Lease(row["lease_token"], 30))
        assert outcome.status == "succeeded", outcome
        per_step.append((time.perf_counter() - t0) / (steps + 1) * 1000)
    return per_step


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(
    url: str, batch_size: int, pruners: int, baseline_seconds: float, steps: int, pause: float
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        prune_batch_size=batch_size,
        prune_pass_seconds=3600,
        prune_batch_pause_seconds=pause,
    )
    pool = await open_pool(url, min_size=2, max_size=8)
    prune_pools = [await open_pool(url, min_size=1, max_size=2) for _ in range(pruners)]
    runner = EmbeddedRunner(
        pool, settings, tools=ToolResources(settings, pool.connection), registry=REGISTRY
    )
    try:
        workflow_id = await _workflow(pool, steps)
        stop = asyncio.Event()
        alone = asyncio.create_task(chain_steps(pool, runner, workflow_id, stop, steps))
        await asyncio.sleep(baseline_seconds)
        stop.set()
        baseline = (await alone)[1:]  # the first run warms caches

        stop = asyncio.Event()
        beside = asyncio.create_task(chain_steps(pool, runner, workflow_id, stop, steps))
        t0 = time.perf_counter()
        reports = await asyncio.gather(*(retention_service.prune(p, settings) for p in prune_pools))
        wall = time.perf_counter() - t0
        stop.set()
        during = await beside
    finally:
        for p in prune_pools:
            await p.close()
        await pool.close()

    runs = sum(r.rows["workflow_runs"] for r in reports)
    rows = sum(r.total for r in reports)
    batches = [s * 1000 for r in reports for s in r.batch_seconds]
    with psycopg.connect(url) as conn:
        left = conn.execute(
            "select count(*) filter (where finished_at < now() - interval '30 days'),"
            " count(*) from workflow_runs where status in ('succeeded', 'failed')"
        ).fetchone()
        server = conn.execute("show server_version").fetchone()
    assert left is not None
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, PostgreSQL {server[0] if server else '?'}"
    )
    print(
        f"pruned {runs} runs ({rows} rows in all) with {pruners} pruner(s), batch "
        f"{batch_size}, in {wall:.1f} s; old runs left: {left[0]}, runs kept: {left[1]}"
    )
    print(f"  runs/s {runs / wall:,.0f}   rows/s {rows / wall:,.0f}")
    print(
        f"  batch latency ms: p50 {pct(batches, 0.5):.1f}  p95 {pct(batches, 0.95):.1f}"
        f"  max {max(batches):.1f}  ({len(batches)} batches)"
    )
    print(f"runner, {steps}-step no-op chain, ms per step:")
    print(
        f"  alone          p50 {pct(baseline, 0.5):.2f}  p95 {pct(baseline, 0.95):.2f}"
        f"  ({len(baseline)} runs)"
    )
    print(
        f"  while pruning  p50 {pct(during, 0.5):.2f}  p95 {pct(during, 0.95):.2f}"
        f"  ({len(during)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--pruners", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--baseline-seconds", type=float, default=15)
    parser.add_argument(
        "--pause", type=float, default=0.2, help="PRUNE_BATCH_PAUSE_SECONDS (default 0.2)"
    )
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/blueprints")
    name = conninfo.conninfo_to_dict(base)["dbname"]
    url = urlunsplit(urlsplit(base)._replace(path=f"/{name}_bench"))
    _reset(url)
    t0 = time.perf_counter()
    seed(url, args.runs, args.runs // 10)
    print(
        f"seeded {args.runs} old + {args.runs // 10} recent runs in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    asyncio.run(
        measure(url, args.batch_size, args.pruners, args.baseline_seconds, args.steps, args.pause)
    )


if __name__ == "__main__":
    main()
