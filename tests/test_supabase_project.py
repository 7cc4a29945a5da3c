"""The Supabase CLI's project files: ``supabase/config.toml`` agrees with the engine (the
audio bucket's limits, the migrations and seed it names), and ``seed.sql`` applies to a
migrated database as ``supabase start`` would apply it, giving the main example as an active
workflow that an event runs. (The CLI itself needs Docker: not run here.)"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from blueprint_engine.config import Settings
from blueprint_engine.services import audio_store, speech_service
from tests.support import wait_for_run

ROOT = Path(__file__).resolve().parents[1]
SUPABASE = ROOT / "supabase"
CONFIG = tomllib.loads((SUPABASE / "config.toml").read_text())
SEEDED = "5eed0000-0000-4000-8000-000000000001"


def test_the_audio_bucket_takes_what_the_api_keeps() -> None:
    bucket = CONFIG["storage"]["buckets"][Settings.model_fields["audio_bucket"].default]
    assert bucket["public"] is False, "audio is read through signed URLs only"
    assert sorted(bucket["allowed_mime_types"]) == sorted(set(audio_store.CONTENT_TYPES.values()))
    assert set(audio_store.CONTENT_TYPES) == set(speech_service.FORMATS)
    size, unit = bucket["file_size_limit"][:-3], bucket["file_size_limit"][-3:]
    assert (
        unit == "MiB"
        and int(size) * 1024 * 1024 == Settings.model_fields["max_audio_bytes"].default
    )


def test_the_cli_applies_our_migrations_and_seed() -> None:
    assert CONFIG["db"]["migrations"]["enabled"] is True
    assert CONFIG["db"]["seed"]["sql_paths"] == ["./seed.sql"]
    assert (SUPABASE / "seed.sql").is_file()
    assert CONFIG["realtime"]["enabled"] is True, "the dashboard follows workflow_logs"
    assert CONFIG["auth"]["site_url"] == "http://127.0.0.1:8000"


def test_the_seed_is_the_main_example_and_runs(client: TestClient, database_url: str) -> None:
    seed = (SUPABASE / "seed.sql").read_text()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(seed.encode())
        conn.execute(seed.encode())  # idempotent, as `supabase db reset` may run it again
        [(blueprint,)] = conn.execute(
            "select blueprint from workflow_versions where workflow_id = %s", (SEEDED,)
        ).fetchall()
    example = ROOT / "examples" / "payment_receipt"
    assert blueprint == json.loads((example / "blueprint.json").read_text())

    workflow = client.get(f"/workflows/{SEEDED}").json()
    assert workflow["active_version"] == 1
    payload = json.loads((example / "payload.json").read_text())
    started = client.post("/events", json={"name": "razorpay/payment.captured", "data": payload})
    assert started.status_code == 202, started.text
    [run_id] = started.json()["started_run_ids"]
    assert wait_for_run(client, run_id)["status"] == "succeeded"
