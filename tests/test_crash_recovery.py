"""Crash safety: a run whose process is SIGKILLed mid-step is resumed by another process.

Mechanism under test: step checkpoints keyed by (run_id, step_id) replay finished steps; the
dead process's lease either expires (any worker then claims the run) or, with a stable
WORKER_ID, is taken back at once by the restarted process. Side effects are counted at the
peer: steps that finished before the kill run exactly once; only the step in flight runs again,
and only if its ``max_attempts`` allow another attempt (attempts are counted before they run).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from blueprint_engine.config import Settings
from tests.support import Peer

ROOT = Path(__file__).resolve().parents[1]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "RUN_LEASE_SECONDS": "1",
        "RETRY_MAX_ATTEMPTS": "2",
        **extra,
        "WORKER_POLL_SECONDS": "0.05",
        "HTTP_ALLOW_HOSTS": '["127.0.0.1"]',
    }


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _start_and_kill_mid_step(
    settings: Settings, peer: Peer, tmp_path: Path, env: dict[str, str]
) -> None:
    """``wf run`` a chain start -> a -> b -> slow -> c -> done and SIGKILL it while the peer
    holds the ``slow`` request; the peer then answers (the step's effect happened)."""
    release = threading.Event()

    def slow(_: Any) -> tuple[int, Any]:
        release.wait(timeout=30)
        return 200, {"slow": True}

    peer.handlers["/slow"] = slow
    steps = ["a", "b", "slow", "c"]
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "trigger"}]
    nodes += [
        {
            "id": s,
            "type": "action",
            "service": "http",
            "task": "request",
            "params": {"url": f"{peer.url}/{s}"},
        }
        for s in steps
    ]
    nodes.append({"id": "done", "type": "end", "output": {"c": "{{ steps.c.output.body.hit }}"}})
    edges = [{"source": x["id"], "target": y["id"]} for x, y in itertools.pairwise(nodes)]
    blueprint = tmp_path / "blueprint.json"
    blueprint.write_text(json.dumps({"nodes": nodes, "edges": edges}))

    first = subprocess.Popen(
        [sys.executable, "-m", "blueprint_engine.cli", "run", str(blueprint)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: peer.hits["/slow"] == 1, 30, "the first process to reach the slow step")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    release.set()


def _drain(env: dict[str, str]) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "blueprint_engine.cli", "worker", "--drain"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stderr


@pytest.mark.parametrize("recovery", ["lease_expiry", "same_worker_id"])
def test_sigkilled_run_resumes_without_repeating_finished_steps(
    settings: Settings, peer: Peer, tmp_path: Path, recovery: str
) -> None:
    # same_worker_id: a 10-minute lease, so only WORKER_ID recovery can finish the run in time.
    extra = (
        {"WORKER_ID": "worker-1", "RUN_LEASE_SECONDS": "600"}
        if recovery == "same_worker_id"
        else {}
    )
    _start_and_kill_mid_step(settings, peer, tmp_path, _env(settings, **extra))

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        status, owner = conn.execute("select status, lease_owner from workflow_runs").fetchone()  # type: ignore[misc]
        assert status == "running" and owner, "the killed process still holds the lease"
        done = conn.execute("select step_id from step_checkpoints order by created_at").fetchall()
        assert [d[0] for d in done] == ["start", "a", "b"]

        def lease_expired() -> bool:
            row = conn.execute("select lease_expires_at < now() from workflow_runs").fetchone()
            return bool(row and row[0])

        if recovery == "lease_expiry":
            _wait(lease_expired, 10, "the dead worker's lease to expire")

    _drain(_env(settings, **extra))

    with psycopg.connect(settings.database_url) as conn:
        status, output = conn.execute("select status, output from workflow_runs").fetchone()  # type: ignore[misc]
    assert status == "succeeded"
    assert output == {"c": 1}
    assert dict(peer.hits) == {"/a": 1, "/b": 1, "/slow": 2, "/c": 1}


def test_interrupted_last_attempt_is_not_run_again(
    settings: Settings, peer: Peer, tmp_path: Path
) -> None:
    """With max_attempts 1, the attempt that was in flight when its process died was the only
    one allowed: the resumed run fails that step (``attempt_lost``) instead of calling the
    peer a second time. Attempts are counted durably before they run."""
    env = _env(settings, RETRY_MAX_ATTEMPTS="1", WORKER_ID="worker-1", RUN_LEASE_SECONDS="600")
    _start_and_kill_mid_step(settings, peer, tmp_path, env)
    _drain(env)

    with psycopg.connect(settings.database_url) as conn:
        status, error = conn.execute("select status, error from workflow_runs").fetchone()  # type: ignore[misc]
    assert status == "failed"
    assert error["node_id"] == "slow" and error["code"] == "attempt_lost", error
    assert dict(peer.hits) == {"/a": 1, "/b": 1, "/slow": 1}


def test_sigkilled_mid_loop_reruns_no_finished_item(
    settings: Settings, peer: Peer, tmp_path: Path
) -> None:
    """A foreach over six items, SIGKILLed while item 3's request is in flight: another
    process finishes the loop; items 0-2 (recorded under ``each.<i>.call``) are not sent
    again, only the one in flight is, and the results keep the input order."""
    release = threading.Event()

    def slow(_: Any) -> tuple[int, Any]:
        release.wait(timeout=30)
        return 200, {"slow": True}

    peer.handlers["/i3"] = slow
    items = [f"i{n}" for n in range(6)]
    blueprint = {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {
                "id": "each",
                "type": "foreach",
                "items": items,
                "body": {
                    "nodes": [
                        {
                            "id": "call",
                            "type": "action",
                            "service": "http",
                            "task": "request",
                            "params": {"url": f"{peer.url}/{{{{ item }}}}"},
                        },
                        {"id": "out", "type": "end", "output": "{{ item }}"},
                    ],
                    "edges": [{"source": "call", "target": "out"}],
                },
            },
            {"id": "done", "type": "end", "output": "{{ steps.each.output.results }}"},
        ],
        "edges": [{"source": "start", "target": "each"}, {"source": "each", "target": "done"}],
    }
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(blueprint))
    env = _env(settings)
    first = subprocess.Popen(
        [sys.executable, "-m", "blueprint_engine.cli", "run", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: peer.hits["/i3"] == 1, 30, "the first process to reach item 3")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    release.set()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        done = conn.execute(
            "select step_id from step_checkpoints where step_id like 'each.%%.call'"
            " order by step_id"
        ).fetchall()
        assert [d[0] for d in done] == ["each.0.call", "each.1.call", "each.2.call"]
        _wait(
            lambda: bool(
                (
                    row := conn.execute(
                        "select lease_expires_at < now() from workflow_runs"
                    ).fetchone()
                )
                and row[0]
            ),
            10,
            "the dead worker's lease to expire",
        )

    _drain(env)

    with psycopg.connect(settings.database_url) as conn:
        status, output = conn.execute("select status, output from workflow_runs").fetchone()  # type: ignore[misc]
    assert status == "succeeded"
    assert output == items
    assert dict(peer.hits) == {"/i0": 1, "/i1": 1, "/i2": 1, "/i3": 2, "/i4": 1, "/i5": 1}
