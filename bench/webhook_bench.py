"""Webhook ingestion benchmark: signed Razorpay deliveries at a constant rate, with ``wrk``.

    .venv/bin/python bench/webhook_bench.py                        # 100, 250, 500 requests/s
    .venv/bin/python bench/webhook_bench.py --rates 500 --duration 20 --connections 32

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``; macOS: ``brew install wrk``).

Starts the real API (uvicorn, embedded runner, local mode, ``RAZORPAY_WEBHOOK_SECRET`` set) on
a fresh database ``<DATABASE_URL's name>_webhook_bench`` and activates
``examples/payment_receipt`` (triggered by ``razorpay/payment.captured``: a transform, then a
sandboxed WhatsApp message). For each rate, ``rate x --duration`` deliveries are signed here
(each with its own payment id and ``x-razorpay-event-id``, so none is a duplicate) and
``bench/webhook.lua`` sends each once on a fixed schedule. Latency is measured from each
request's scheduled send time (coordinated omission corrected, as wrk2 does; wrk's own figures,
from the actual send, are printed beside them). After each rate the benchmark waits until every
run it started has finished, then checks in the database that every accepted delivery (200,
not a duplicate) started exactly one run, and that every run succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from apiserver import (
    ApiServer,
    Child,
    bench_database,
    cpu_seconds,
    machine,
    percentile,
    raise_open_files,
    worker,
)

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "webhook.lua"
EXAMPLE = ROOT / "examples" / "payment_receipt"
SECRET = "bench-webhook-secret"  # the local benchmark server's own


def signed_bodies(path: Path, phase: str, count: int) -> None:
    """Write ``count`` deliveries to ``path``: ``index \\t event id \\t signature \\t body``."""
    payload = json.loads((EXAMPLE / "payload.json").read_text())
    entity = payload["payload"]["payment"]["entity"]
    with path.open("w") as out:
        for i in range(count):
            entity["id"] = f"pay_{phase}_{i}"
            entity["order_id"] = f"order_{phase}_{i}"
            body = json.dumps(payload, separators=(",", ":"))
            signature = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            out.write(f"{i}\tevt_{phase}_{i}\t{signature}\t{body}\n")


@dataclass
class Phase:
    """One rate's figures."""

    rate: int
    scheduled: int
    sent: int = 0
    answered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    window_s: float = float("nan")
    wrk_p50: str = "?"
    wrk_p99: str = "?"
    runs: int = 0
    lost: int = 0
    extra_runs: int = 0
    not_succeeded: int = 0
    drain_s: float = float("nan")
    span_s: float = float("nan")
    api_cpu_s: float = float("nan")
    worker_cpu_s: float = float("nan")


def run_wrk(
    base_url: str, bodies: Path, rate: int, count: int, connections: int, workdir: Path
) -> tuple[list[list[int]], int, str]:
    """Send ``count`` bodies at ``rate``/s: the Lua script's rows, how many requests were sent,
    and wrk's own output."""
    out = workdir / "rows.txt"
    env = os.environ | {
        "WEBHOOK_BODIES": str(bodies),
        "WEBHOOK_RATE": str(rate),
        "WEBHOOK_THREADS": str(connections),
        "WEBHOOK_OUT": str(out),
    }
    seconds = int(count / rate) + 10  # the schedule, then time for the last answers
    command = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["--latency", "-s", str(LUA), f"{base_url}/webhooks/razorpay"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    rows, sent = [], 0
    for line in out.read_text().splitlines():
        if line.startswith("sent "):
            sent += int(line.split()[1])
        else:
            rows.append([int(x) for x in line.split()])
    return rows, sent, done.stdout


def _wrk_percentile(output: str, q: str) -> str:
    match = re.search(rf"^\s*{q}%\s+(\S+)", output, re.MULTILINE)
    return match.group(1) if match else "?"


def wait_for_runs(url: str, limit_s: float) -> None:
    """Until no run is queued, running or waiting."""
    deadline = time.monotonic() + limit_s
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "select count(*) from workflow_runs where status in"
                " ('queued', 'running', 'waiting')"
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{row[0] if row else '?'} runs unfinished after {limit_s} s")
            time.sleep(0.2)


def verify(url: str, phase: Phase, prefix: str, accepted: set[int], *, finished: bool) -> None:
    """Runs per delivery of this phase, and (when they were executed: ``finished``) whether
    they succeeded and how long they took to finish."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select trigger_data #>> '{payload,payment,entity,id}' as payment,"
            " count(*) as runs, count(*) filter (where status <> 'succeeded') as bad"
            " from workflow_runs where trigger_data #>> '{payload,payment,entity,id}' like %s"
            " group by 1",
            (f"pay_{prefix}_%",),
        ).fetchall()
        span = conn.execute(
            "select extract(epoch from max(finished_at) - max(created_at)),"
            " extract(epoch from max(finished_at) - min(created_at))"
            " from workflow_runs where trigger_data #>> '{payload,payment,entity,id}' like %s",
            (f"pay_{prefix}_%",),
        ).fetchone()
    runs = {int(payment.rsplit("_", 1)[1]): (n, bad) for payment, n, bad in rows}
    phase.runs = sum(n for n, _ in runs.values())
    phase.lost = sum(1 for i in accepted if i not in runs)
    phase.extra_runs = sum(n - 1 for n, _ in runs.values() if n > 1)
    if not finished:
        return
    phase.not_succeeded = sum(bad for _, bad in runs.values())
    if span is not None and span[0] is not None:
        phase.drain_s, phase.span_s = float(span[0]), float(span[1])


def run_phase(
    api: ApiServer,
    workers: list[Child],
    url: str,
    rate: int,
    args: argparse.Namespace,
    prefix: str,
    workdir: Path,
) -> Phase:
    """Deliver ``rate x duration`` signed events at ``rate``/s, wait for their runs, check."""
    count = int(rate * args.duration)
    phase = Phase(rate, count)
    bodies = workdir / f"{prefix}.tsv"
    signed_bodies(bodies, prefix, count)
    api_cpu, worker_cpu = cpu_seconds(api.pid), sum(cpu_seconds(w.pid) for w in workers)
    rows, phase.sent, output = run_wrk(api.base_url, bodies, rate, count, args.connections, workdir)
    phase.api_cpu_s = cpu_seconds(api.pid) - api_cpu
    phase.worker_cpu_s = sum(cpu_seconds(w.pid) for w in workers) - worker_cpu
    bodies.unlink()
    phase.wrk_p50, phase.wrk_p99 = _wrk_percentile(output, "50"), _wrk_percentile(output, "99")
    accepted = set()
    starts, ends = [], []
    for index, status, duplicate, latency_us, done_us in rows:
        phase.answered += 1
        phase.statuses[str(status)] += 1
        phase.duplicates += duplicate
        phase.latencies_ms.append(latency_us / 1000)
        starts.append(done_us - latency_us)
        ends.append(done_us)
        if status == 200 and not duplicate:
            accepted.add(index)
    if rows:
        phase.window_s = (max(ends) - min(starts)) / 1e6
    if args.runner != "none":
        wait_for_runs(url, args.drain_limit)
    verify(url, phase, prefix, accepted, finished=args.runner != "none")
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,250,500", help="requests/s, comma-separated")
    parser.add_argument("--duration", type=float, default=10, help="seconds of sending per rate")
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk threads = connections (one each)"
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds at 50/s first, unscored")
    parser.add_argument("--drain-limit", type=float, default=900, help="seconds to wait for runs")
    parser.add_argument(
        "--runner",
        choices=["embedded", "workers", "none"],
        default="embedded",
        help="who executes the runs: the API's embedded runner (the default deployment), "
        "--workers 'wf worker' processes (the API runs none), or nobody (the runs stay queued: "
        "ingestion alone)",
    )
    parser.add_argument("--workers", type=int, default=1, help="with --runner workers")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk is missing: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew "
            "install wrk) and run again"
        )
    raise_open_files(4096)
    url = bench_database("webhook_bench")
    print(machine(url), flush=True)
    print(
        f"workload: signed razorpay payment.captured deliveries, unique ids, {args.duration:g} s "
        f"per rate, wrk -t{args.connections} -c{args.connections} (one connection a thread), "
        "each run = examples/payment_receipt (transform + sandboxed WhatsApp); runs executed by "
        + {
            "embedded": "the API's embedded runner",
            "workers": f"{args.workers} 'wf worker' processes",
            "none": "nobody (left queued: ingestion alone)",
        }[args.runner],
        flush=True,
    )
    env = {"RAZORPAY_WEBHOOK_SECRET": SECRET}
    if args.runner != "embedded":
        env["RUN_WORKER"] = "false"
    phases: list[Phase] = []
    with (
        ApiServer(url, env) as api,
        contextlib.ExitStack() as stack,
        httpx.Client(base_url=api.base_url, timeout=30) as client,
        tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp,
    ):
        count = args.workers if args.runner == "workers" else 0
        workers = [stack.enter_context(worker(url)) for _ in range(count)]
        blueprint = json.loads((EXAMPLE / "blueprint.json").read_text())
        created = client.post("/workflows", json={"blueprint": blueprint})
        created.raise_for_status()
        client.post(f"/workflows/{created.json()['id']}/activate").raise_for_status()
        if args.warmup > 0:
            warmup = argparse.Namespace(**{**vars(args), "duration": args.warmup})
            run_phase(api, workers, url, 50, warmup, "w", Path(tmp))
        for n, rate in enumerate(rates):
            phases.append(run_phase(api, workers, url, rate, args, f"p{n}", Path(tmp)))
            print(f"  done: {rate}/s", file=sys.stderr, flush=True)
    report(phases)


def report(phases: list[Phase]) -> None:
    """The table and its notes."""
    print(
        f"{'rate/s':>7}{'sent':>7}{'got/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'wrk p50':>9}{'wrk p99':>9}{'non-200':>8}{'lost':>6}{'runs':>7}{'drain s':>9}"
    )
    for p in phases:
        lat = p.latencies_ms
        non200 = p.answered - p.statuses.get("200", 0)
        print(
            f"{p.rate:>7}{p.answered:>7}{p.answered / p.window_s:>8.1f}{percentile(lat, 50):>9.1f}"
            f"{percentile(lat, 99):>9.1f}{max(lat, default=float('nan')):>9.1f}"
            f"{p.wrk_p50:>9}{p.wrk_p99:>9}{non200:>8}{p.lost:>6}{p.runs:>7}{p.drain_s:>9.1f}"
        )
    for p in phases:
        notes = []
        if p.sent != p.scheduled:
            notes.append(
                f"{p.scheduled - p.sent} of {p.scheduled} scheduled were not sent before wrk "
                "stopped (the server fell behind the schedule)"
            )
        if p.answered != p.sent:
            notes.append(f"{p.sent - p.answered} sent got no answer before wrk stopped")
        if len(p.statuses) > 1 or "200" not in p.statuses:
            notes.append(
                "statuses " + ", ".join(f"{k} x{v}" for k, v in sorted(p.statuses.items()))
            )
        if p.duplicates or p.extra_runs or p.not_succeeded:
            notes.append(
                f"{p.duplicates} answered as duplicates, {p.extra_runs} extra runs, "
                f"{p.not_succeeded} runs did not succeed"
            )
        if p.span_s == p.span_s:
            notes.append(f"every run finished {p.span_s:.1f} s after the first was created")
        notes.append(f"API CPU {p.api_cpu_s / max(p.answered, 1) * 1000:.1f} ms/delivery")
        if p.worker_cpu_s == p.worker_cpu_s and p.worker_cpu_s > 0:
            notes.append(
                f"workers' CPU {p.worker_cpu_s / max(p.answered, 1) * 1000:.1f} ms/delivery"
            )
        print(f"  {p.rate}/s: " + "; ".join(notes))
    print(
        "p50/p99/max: ack latency from each request's scheduled send time (coordinated omission "
        "corrected); wrk p50/p99: wrk's own, from the actual send; got/s: answers / (last answer "
        "- first scheduled send); lost: accepted deliveries (200, not duplicate) without exactly "
        "one run; drain: the last run's finished_at - the last run's created_at; CPU per delivery: "
        "while wrk ran"
    )


if __name__ == "__main__":
    main()
