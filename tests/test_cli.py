"""The ``wf`` CLI: live run of the shipped examples, exit codes, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from blueprint_engine.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def wf(
    settings: Settings, *args: str, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url or settings.database_url,
        "COLUMNS": "160",
        "WORKER_POLL_SECONDS": "0.05",
    }
    return subprocess.run(
        [sys.executable, "-m", "blueprint_engine.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_payment_receipt_example(settings: Settings) -> None:
    result = wf(
        settings,
        "run",
        "examples/payment_receipt/blueprint.json",
        "--payload",
        "examples/payment_receipt/payload.json",
    )
    assert result.returncode == 0, result.stderr
    assert "run succeeded" in result.stdout
    assert "sandbox mode for send_receipt" in result.stdout
    assert '"amount_rupees": "2499.00"' in result.stdout
    assert "WhatsApp the receipt" in result.stdout


def test_run_fanout_example_in_sandbox(settings: Settings) -> None:
    result = wf(
        settings,
        "run",
        "examples/order_fanout/blueprint.json",
        "--payload",
        "examples/order_fanout/payload.json",
        "--sandbox",
    )
    assert result.returncode == 0, result.stderr
    assert '"order_id": "order_DaZlswtdcn9UNV"' in result.stdout


def test_invalid_blueprint_exits_2_with_the_problems(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "nodes": [
                    {"id": "start", "type": "trigger"},
                    {"id": "x", "type": "action", "service": "nope", "task": "t"},
                ],
                "edges": [{"source": "start", "target": "x"}],
            }
        )
    )
    result = wf(settings, "run", str(bad))
    assert result.returncode == 2
    assert "unknown service 'nope'" in result.stderr
    assert wf(settings, "validate", str(bad)).returncode == 1
    assert wf(settings, "validate", "examples/payment_link_followup/blueprint.json").returncode == 0


def test_failed_run_exits_1_naming_the_node(settings: Settings, tmp_path: Path) -> None:
    blueprint = tmp_path / "fails.json"
    blueprint.write_text(
        json.dumps(
            {
                "nodes": [
                    {"id": "start", "type": "trigger"},
                    {
                        "id": "call",
                        "type": "action",
                        "service": "http",
                        "task": "request",
                        "params": {"url": "http://127.0.0.1:9/blocked"},
                    },
                ],
                "edges": [{"source": "start", "target": "call"}],
            }
        )
    )
    result = wf(settings, "run", str(blueprint))
    assert result.returncode == 1
    assert "run failed at node call: destination_blocked" in " ".join(result.stderr.split())


def test_bad_payload_file_and_missing_database(settings: Settings, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text("{not json")
    result = wf(
        settings, "run", "examples/payment_receipt/blueprint.json", "--payload", str(payload)
    )
    assert result.returncode == 2 and "is not valid JSON" in result.stderr
    result = wf(
        settings,
        "run",
        "examples/payment_receipt/blueprint.json",
        database_url="postgresql://postgres@127.0.0.1:1/nowhere",
    )
    assert result.returncode == 3
    assert "Cannot reach PostgreSQL" in result.stderr and "DATABASE_URL" in result.stderr
