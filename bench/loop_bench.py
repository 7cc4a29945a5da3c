"""Loop benchmark: what a foreach costs per item on the embedded runner, and what replaying it
costs after a crash.

    python bench/loop_bench.py [--items 300] [--repeats 5]

Workloads (the body is one no-op action, so only the engine is measured):
- per item, concurrency 1 and 10: one run of ``foreach`` over N items, one pass; median wall
  time / items (each item's step is counted, checkpointed and logged under ``each.<i>.step``).
- replay per item: the same run replayed once every item is recorded (what a pass after a
  crash, or after the loop's later delay, pays to get back to where it was): nothing runs
  again, every step returns its checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from engine_bench import REGISTRY, _queue, _reset  # same directory: run as a script
from psycopg import conninfo

from blueprint_engine.config import Settings
from blueprint_engine.integrations import ToolResources
from blueprint_engine.services import workflow_service
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import steps as steps_store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Pool, open_pool
from blueprint_engine.store.steps import Lease
from blueprint_engine.workflows.engine import Engine
from blueprint_engine.workflows.runners.embedded import EmbeddedRunner
from blueprint_engine.workflows.runners.embedded_port import EmbeddedPort
from blueprint_engine.workflows.schema import validate_blueprint


def loop(items: int, concurrency: int) -> dict[str, Any]:
    """A trigger, then a foreach over ``items`` numbers whose body is one no-op step."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "each",
                "type": "foreach",
                "items": list(range(items)),
                "concurrency": concurrency,
                "body": {
                    "nodes": [{"id": "step", "type": "action", "service": "noop", "task": "skip"}]
                },
            },
        ],
        "edges": [{"source": "start", "target": "each"}],
    }


async def _workflow(pool: Pool, items: int, concurrency: int) -> UUID:
    blueprint = validate_blueprint(loop(items, concurrency), REGISTRY)
    async with pool.connection() as conn, conn.transaction():
        row = await workflow_service.create_in(
            conn, blueprint, name="loop", description=None, owner=LOCAL_USER_ID, origin="api"
        )
    workflow_id: UUID = row["id"]
    return workflow_id


async def measure(url: str, items: int, repeats: int) -> dict[str, float]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        foreach_max_items=max(items, 1000),
        foreach_max_concurrency=10,
    )
    pool = await open_pool(url, min_size=4, max_size=12)
    tools = ToolResources(settings, pool.connection)
    runner = EmbeddedRunner(pool, settings, tools=tools, registry=REGISTRY)
    results: dict[str, list[float]] = {"c1": [], "c10": [], "replay": []}
    try:
        for concurrency, key in ((1, "c1"), (10, "c10")):
            workflow_id = await _workflow(pool, items, concurrency)
            for _ in range(repeats + 1):  # the first warms caches and is dropped
                await _queue(pool, workflow_id, 1)
                async with pool.connection() as conn:
                    [row] = await runs_store.claim(conn, runner.worker_id, 1, 60)
                t0 = time.perf_counter()
                outcome = await runner.execute_pass(row, Lease(row["lease_token"], 60))
                results[key].append((time.perf_counter() - t0) / items * 1000)
                assert outcome.status == "succeeded", outcome
                if key == "c10":
                    results["replay"].append(await _replay(runner, pool, row) / items * 1000)
        return {key: statistics.median(values[1:]) for key, values in results.items()}
    finally:
        await runner.tools.aclose()
        await pool.close()


async def _replay(runner: EmbeddedRunner, pool: Pool, row: dict[str, Any]) -> float:
    """Seconds to replay the finished run's engine pass from its checkpoints."""
    async with pool.connection() as conn:
        state = await steps_store.load(conn, row["id"])
    blueprint = await runner._blueprint(row["workflow_id"], row["version"])
    port = EmbeddedPort(
        pool,
        runner._writer,
        row["id"],
        Lease(row["lease_token"], 60),
        state,
        retry_after_max=1.0,
    )
    engine = Engine(
        blueprint,
        registry=REGISTRY,
        settings=runner.settings,
        run_id=row["id"],
        workflow_id=row["workflow_id"],
        owner=None,
        tools=runner.tools,
    )
    t0 = time.perf_counter()
    outcome = await engine.execute(row["trigger_data"], port)
    elapsed = time.perf_counter() - t0
    assert outcome.status == "succeeded", outcome
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/blueprints")
    name = conninfo.conninfo_to_dict(base)["dbname"]
    url = urlunsplit(urlsplit(base)._replace(path=f"/{name}_bench"))
    _reset(url)
    result = asyncio.run(measure(url, args.items, args.repeats))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python ", end="")
    print(f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"workload: foreach over {args.items} items, body one no-op step, x{args.repeats}")
    print(f"{'per item, concurrency 1 (ms)':<36}{result['c1']:>8.3f}")
    print(f"{'per item, concurrency 10 (ms)':<36}{result['c10']:>8.3f}")
    print(f"{'replay per recorded item (ms)':<36}{result['replay']:>8.3f}")


if __name__ == "__main__":
    main()
