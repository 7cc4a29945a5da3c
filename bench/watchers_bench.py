"""Watchers benchmark: live progress (SSE ``GET /runs/{id}/stream``) for many watchers at once.

    .venv/bin/python bench/watchers_bench.py                      # every scenario
    .venv/bin/python bench/watchers_bench.py --scenarios 1,100 --steps 5 --delay 0.5

Starts the real API (uvicorn, embedded runner, local mode) on a fresh database
``<DATABASE_URL's name>_watchers_bench`` and runs a workflow of ``--steps`` ``delay`` nodes of
``--delay`` seconds in a chain. Each run first waits for an event, so that every watcher is
connected before the first delay starts; then ``POST /events`` releases it.

Watchers are SSE clients in separate load processes (``--processes``; many streams per process,
each a raw HTTP/1.1 connection read with asyncio streams, so that the load generator costs
little more than the kernel and is not the bottleneck). For every ``log`` event
a watcher notes lag = its arrival time minus the row's ``finished_at`` (same machine, same
clock); a stream that breaks before the run finished is resumed with ``Last-Event-ID`` (as a
browser's EventSource does, honouring a ``retry:`` hint), at most ``--max-reconnects`` times.

Printed per scenario: log events received against expected (every watcher must see every row
of its run exactly once: missing and duplicates are counted), reconnects and errors, lag
p50/p99/max over the rows written after the release, and the wall time of the run (release to
the run's ``finished_at``) with watchers against the same run unwatched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import multiprocessing
import queue
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from apiserver import (
    ApiServer,
    bench_database,
    cpu_seconds,
    machine,
    percentile,
    raise_open_files,
    worker,
)

TERMINAL = {"succeeded", "failed", "cancelled"}
GO_EVENT = "bench/go"


@dataclass
class Scenario:
    """``runs`` runs, each watched by ``watchers`` SSE clients."""

    label: str
    runs: int
    watchers: int


SCENARIOS = {
    "1": Scenario("1 watcher, 1 run", 1, 1),
    "100": Scenario("100 watchers, 1 run", 1, 100),
    "1000": Scenario("1000 watchers, 1 run", 1, 1000),
    "100x10": Scenario("100 runs x 10 watchers", 100, 10),
}


def blueprint(steps: int, delay: float) -> dict[str, Any]:
    """trigger -> wait for ``bench/go`` with this run's batch -> ``steps`` delays -> end."""
    nodes: list[dict[str, Any]] = [
        {"id": "start", "type": "trigger"},
        {
            "id": "go",
            "type": "wait_for_event",
            "event": GO_EVENT,
            "match": "event.data.batch == trigger_data.batch",
            "timeout": "1h",
        },
    ]
    nodes += [{"id": f"d{i}", "type": "delay", "duration": delay} for i in range(steps)]
    nodes.append({"id": "end", "type": "end"})
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"schema_version": 1, "name": "watchers bench", "nodes": nodes, "edges": edges}


# -- load processes ------------------------------------------------------------------------


@dataclass
class WatcherResult:
    """What one SSE client saw: ``(log id, finished_at epoch s, arrival epoch s)`` per event."""

    run_id: str
    events: list[tuple[int, float, float]] = field(default_factory=list)
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    final_status: str | None = None


class _Closed(Exception):
    """The server ended the stream (or answered something other than 200)."""


async def _sse_frames(host: str, port: int, path: str, headers: dict[str, str]) -> Any:
    """The SSE frames (text between blank lines) of ``GET path``, read off a raw HTTP/1.1
    connection: the load generator does little more than the kernel, so the figures are the
    server's, not an HTTP client library's."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise _Closed(status.decode(errors="replace").strip())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers: uvicorn sends SSE with chunked transfer encoding
        buffer = b""
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            *frames, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
            for frame in frames:
                yield frame.decode()
    finally:
        writer.close()


async def _watch(
    base: tuple[str, int],
    result: WatcherResult,
    connected: asyncio.Event,
    max_reconnects: int,
) -> None:
    last_id: int | None = None
    retry_ms = 1000
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        try:
            frames = _sse_frames(*base, f"/runs/{result.run_id}/stream", headers)
            async for frame in frames:
                arrival = time.time()
                connected.set()  # the first frame (the run's status) comes after subscribing
                kind, event_id, data = "message", None, []
                for line in frame.split("\n"):
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "id":
                        event_id = value
                    elif name == "data":
                        data.append(value)
                    elif name == "retry" and value.isdigit():
                        retry_ms = int(value)
                if data and kind == "log":
                    row = json.loads("\n".join(data))
                    finished = datetime.fromisoformat(row["finished_at"]).timestamp()
                    result.events.append((int(row["id"]), finished, arrival))
                    last_id = int(event_id) if event_id else int(row["id"])
                elif data and kind == "run":
                    result.final_status = json.loads("\n".join(data))["status"]
        except (OSError, asyncio.IncompleteReadError, ValueError, _Closed) as exc:
            connected.set()
            result.errors.append(type(exc).__name__)
        if result.final_status in TERMINAL:
            return
        if result.reconnects >= max_reconnects:
            result.errors.append("gave up")
            return
        result.reconnects += 1
        await asyncio.sleep(retry_ms / 1000)


async def _load(
    base_url: str,
    run_ids: list[str],
    ready: Any,
    results: Any,
    max_reconnects: int,
    limit_s: float,
    connect_concurrency: int,
) -> None:
    url = urlsplit(base_url)
    base = (url.hostname or "127.0.0.1", url.port or 80)
    watchers = [WatcherResult(run_id) for run_id in run_ids]
    gate = asyncio.Semaphore(connect_concurrency)
    connected = [asyncio.Event() for _ in watchers]

    async def one(i: int) -> None:
        async with gate:
            task = asyncio.create_task(_watch(base, watchers[i], connected[i], max_reconnects))
            await connected[i].wait()
        await task

    tasks = [asyncio.create_task(one(i)) for i in range(len(watchers))]
    await asyncio.gather(*(c.wait() for c in connected))
    ready.put(len(watchers))
    _, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for watcher in watchers:
        if watcher.final_status not in TERMINAL:
            watcher.errors.append("timed out" if pending else "stream ended early")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(([w.__dict__ for w in watchers], usage.ru_utime + usage.ru_stime))


def load_process(
    base_url: str,
    run_ids: list[str],
    ready: Any,
    results: Any,
    max_reconnects: int,
    timeout: float,
    connect_concurrency: int,
) -> None:
    """Entry of a load process: watch ``run_ids`` (one SSE client each, repeats allowed)."""
    gc.disable()  # a collection pause here would be the load generator's, not the server's
    load = _load(base_url, run_ids, ready, results, max_reconnects, timeout, connect_concurrency)
    try:
        import uvloop  # the server's event loop too, when installed (uvicorn picks it)
    except ImportError:
        asyncio.run(load)
    else:
        uvloop.run(load)


# -- orchestration -------------------------------------------------------------------------


@dataclass
class Outcome:
    """One scenario's figures."""

    scenario: Scenario
    expected: int = 0
    received: int = 0
    missing: int = 0
    duplicates: int = 0
    reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lags_ms: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    failed_runs: int = 0
    connect_s: float = 0.0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    load_cpu_s: float = 0.0
    processes: int = 0


def _start_runs(client: httpx.Client, workflow_id: str, batch: str, count: int) -> list[str]:
    run_ids = []
    for _ in range(count):
        body = {"workflow_id": workflow_id, "payload": {"batch": batch}}
        resp = client.post("/workflow/execute", json=body)
        resp.raise_for_status()
        run_ids.append(resp.json()["run_id"])
    deadline = time.monotonic() + 60
    pending = set(run_ids)
    while pending:  # each run's wait for the release is open
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} runs did not reach their wait within 60 s")
        for run_id in list(pending):
            if client.get(f"/runs/{run_id}").json()["status"] == "waiting":
                pending.discard(run_id)
        time.sleep(0.1)
    return run_ids


def _finish(
    client: httpx.Client, workflow_id: str, run_ids: list[str], released: float, timeout: float
) -> dict[str, dict[str, Any]]:
    """Wait until every run finished; their summaries by id."""
    deadline = time.monotonic() + timeout
    wanted = set(run_ids)
    while True:
        found: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = client.get(f"/workflows/{workflow_id}/runs", params=params).json()
            found |= {r["id"]: r for r in page["runs"] if r["id"] in wanted}
            cursor = page.get("next_cursor")
            if not cursor or len(found) == len(wanted):
                break
        if all(r["status"] in TERMINAL for r in found.values()) and len(found) == len(wanted):
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs not finished {timeout:.0f} s after the release")
        time.sleep(0.25)


def _walls(runs: dict[str, dict[str, Any]], released: float) -> list[float]:
    return [datetime.fromisoformat(r["finished_at"]).timestamp() - released for r in runs.values()]


def run_scenario(
    api: ApiServer,
    client: httpx.Client,
    workflow_id: str,
    scenario: Scenario,
    args: argparse.Namespace,
    batch: str,
) -> Outcome:
    """Start the runs, connect every watcher, release the runs, collect what each saw."""
    outcome = Outcome(scenario)
    run_ids = _start_runs(client, workflow_id, batch, scenario.runs)
    assignments = [run_id for run_id in run_ids for _ in range(scenario.watchers)]
    processes = max(1, min(args.processes, math.ceil(len(assignments) / 50)))
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    timeout = args.steps * args.delay * 10 + 120
    workers = [
        ctx.Process(
            target=load_process,
            args=(
                api.base_url,
                assignments[i::processes],
                ready,
                results,
                args.max_reconnects,
                timeout,
                args.connect_concurrency,
            ),
            daemon=True,
        )
        for i in range(processes)
    ]
    t0, cpu0 = time.monotonic(), cpu_seconds(api.pid)
    outcome.processes = processes
    watched: list[dict[str, Any]] = []
    try:
        for worker in workers:
            worker.start()
        for _ in workers:
            ready.get(timeout=timeout)
        outcome.connect_s = time.monotonic() - t0
        released = time.time()
        client.post("/events", json={"name": GO_EVENT, "data": {"batch": batch}}).raise_for_status()
        runs = _finish(client, workflow_id, run_ids, released, timeout)
        outcome.server_cpu_s = cpu_seconds(api.pid) - cpu0
        outcome.seconds = time.monotonic() - t0
        for _ in workers:
            seen, cpu = results.get(timeout=timeout)
            watched += seen
            outcome.load_cpu_s += cpu
    except queue.Empty:
        raise RuntimeError("a load process did not answer in time") from None
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.terminate()
    outcome.walls = _walls(runs, released)
    outcome.failed_runs = sum(r["status"] != "succeeded" for r in runs.values())
    expected = {}
    for run_id in run_ids:
        logs = client.get(f"/runs/{run_id}/logs", params={"limit": 1000}).json()["logs"]
        expected[run_id] = {row["id"] for row in logs}
    for seen in watched:
        want = expected[seen["run_id"]]
        ids = [event[0] for event in seen["events"]]
        outcome.expected += len(want)
        outcome.received += len(ids)
        outcome.missing += len(want - set(ids))
        outcome.duplicates += len(ids) - len(set(ids))
        outcome.reconnects += seen["reconnects"]
        for error in seen["errors"]:
            outcome.errors[error] = outcome.errors.get(error, 0) + 1
        outcome.lags_ms += [
            (arrival - finished) * 1000
            for _, finished, arrival in seen["events"]
            if finished >= released
        ]
    return outcome


def unwatched(client: httpx.Client, workflow_id: str, runs: int, batch: str) -> list[float]:
    """Wall times of ``runs`` runs released together with nobody watching."""
    run_ids = _start_runs(client, workflow_id, batch, runs)
    released = time.time()
    client.post("/events", json={"name": GO_EVENT, "data": {"batch": batch}}).raise_for_status()
    return _walls(_finish(client, workflow_id, run_ids, released, 600), released)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)}, or RUNSxWATCHERS (default: all)",
    )
    parser.add_argument("--steps", type=int, default=10, help="delay nodes per run")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds per delay node")
    parser.add_argument("--processes", type=int, default=4, help="load processes (at most)")
    parser.add_argument("--max-reconnects", type=int, default=5, help="per watcher")
    parser.add_argument("--connect-concurrency", type=int, default=50, help="per load process")
    parser.add_argument(
        "--runner",
        choices=["embedded", "worker"],
        default="embedded",
        help="who executes the runs: the API's embedded runner (the default deployment), or a "
        "'wf worker' process (the API only serves the streams)",
    )
    args = parser.parse_args()
    scenarios = []
    for name in args.scenarios.split(","):
        if name in SCENARIOS:
            scenarios.append(SCENARIOS[name])
        else:
            runs, _, watchers = name.partition("x")
            if not (runs.isdigit() and watchers.isdigit()):
                parser.error(f"unknown scenario {name!r}")
            label = f"{runs} runs x {watchers} watchers"
            scenarios.append(Scenario(label, int(runs), int(watchers)))

    most = max(s.runs * s.watchers for s in scenarios)
    limit = raise_open_files(most * 2 + 1024)
    if limit < most + 256:
        sys.exit(f"open-file limit {limit} is too low for {most} watchers (raise ulimit -n)")
    url = bench_database("watchers_bench")
    print(machine(url), flush=True)
    print(
        f"workload: a run of {args.steps} x {args.delay:g} s delay nodes, released by an event "
        f"once every watcher is connected; up to {args.processes} load processes; runs executed "
        + ("by the API's embedded runner" if args.runner == "embedded" else "by a 'wf worker'"),
        flush=True,
    )
    env = {} if args.runner == "embedded" else {"RUN_WORKER": "false"}
    with (
        ApiServer(url, env) as api,
        contextlib.ExitStack() as stack,
        httpx.Client(base_url=api.base_url, timeout=60) as client,
    ):
        if args.runner == "worker":
            stack.enter_context(worker(url))
        resp = client.post("/workflows", json={"blueprint": blueprint(args.steps, args.delay)})
        resp.raise_for_status()
        workflow_id = resp.json()["id"]
        baselines: dict[int, list[float]] = {}
        rows = []
        for n, scenario in enumerate(scenarios):
            if scenario.runs not in baselines:
                baselines[scenario.runs] = unwatched(
                    client, workflow_id, scenario.runs, f"base{scenario.runs}"
                )
            outcome = run_scenario(api, client, workflow_id, scenario, args, f"s{n}")
            rows.append((outcome, baselines[scenario.runs]))
            print(f"  done: {scenario.label}", file=sys.stderr, flush=True)
    print(
        f"{'scenario':<26}{'events got/expected':>21}{'missing':>8}{'dup':>5}{'reconn':>7}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'wall s':>8}{'unwatched':>10}{'ratio':>7}"
    )
    for outcome, base in rows:
        wall, base_wall = max(outcome.walls), max(base)
        got = f"{outcome.received}/{outcome.expected}"
        lags = outcome.lags_ms
        print(
            f"{outcome.scenario.label:<26}{got:>21}{outcome.missing:>8}{outcome.duplicates:>5}"
            f"{outcome.reconnects:>7}{percentile(lags, 50):>9.0f}{percentile(lags, 99):>9.0f}"
            f"{max(lags, default=float('nan')):>9.0f}{wall:>8.2f}{base_wall:>10.2f}"
            f"{wall / base_wall:>7.2f}"
        )
    for outcome, base in rows:
        notes = []
        if outcome.errors:
            notes.append("errors " + ", ".join(f"{k} x{v}" for k, v in outcome.errors.items()))
        if outcome.failed_runs:
            notes.append(f"{outcome.failed_runs} runs did not succeed")
        if outcome.scenario.runs > 1:
            notes.append(
                f"per-run wall median {statistics.median(outcome.walls):.2f} s "
                f"(unwatched {statistics.median(base):.2f} s)"
            )
        notes.append(f"all watchers connected in {outcome.connect_s:.1f} s")
        notes.append(
            f"CPU over {outcome.seconds:.0f} s: API {outcome.server_cpu_s:.1f} s, "
            f"{outcome.processes} load processes {outcome.load_cpu_s:.1f} s"
        )
        print(f"  {outcome.scenario.label}: " + "; ".join(notes))
    print(
        "lag = arrival at the watcher - the log row's finished_at, over rows written after the "
        "release; wall = release to the last run's finished_at (the ideal is "
        f"{args.steps * args.delay:g} s); ratio = wall / unwatched wall"
    )


if __name__ == "__main__":
    main()
