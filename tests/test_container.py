"""The container files, linted and checked without Docker: hadolint on the ``Dockerfile``,
Docker Compose's own ``config`` (the compose-spec schema, interpolation, profiles) on
``compose.yaml``, and what each must say (stages, user, health check, the migrate step). Both
linters are binaries from PyPI wheels in the dev group; building and running the images needs a
Docker daemon, which these tests do not use (see the README's "Containers")."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (the dev group has it on Linux and macOS)")
    return found


def _compose(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [_tool("docker-compose"), "--file", "compose.yaml", *args, "config", "--format", "json"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), one list per stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_builds_in_stages_and_runs_slim_unprivileged_and_health_checked() -> None:
    stages = _stages()
    assert [s[0].split()[-1] for s in stages] == ["build", "dashboard", "runtime"]
    build, _, runtime = stages
    assert any("uv sync --locked" in line for line in build), "the locked dependencies"
    assert any("uv build --wheel" in line for line in build), "the project as a wheel"
    assert "slim" in (ROOT / "Dockerfile").read_text().split("PYTHON_IMAGE=")[1].split()[0]
    # Only the venv and the built dashboard reach the runtime: no sources, no compilers.
    copies = [line for line in runtime if line.startswith("COPY")]
    assert copies == [
        "COPY --from=build /app/.venv /app/.venv",
        "COPY --from=dashboard /src/dashboard/dist /app/dashboard",
    ]
    [user] = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert user not in {"0", "root"}
    [health] = [line for line in runtime if line.startswith("HEALTHCHECK")]
    assert "/health" in health
    env = " ".join(line for line in runtime if line.startswith("ENV "))
    assert "AUTO_MIGRATE=false" in env, "migrations are the migrate step's, not the API's"
    assert "DASHBOARD_DIST=/app/dashboard" in env
    [cmd] = [line for line in runtime if line.startswith("CMD ")]
    module, attribute = json.loads(cmd.removeprefix("CMD "))[1].split(":")
    assert hasattr(importlib.import_module(module), attribute)


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".data", ".git", "dashboard/node_modules"} <= set(ignored)


def test_compose_brings_up_the_database_the_migrations_and_the_api() -> None:
    config = _compose()
    services = config["services"]
    assert set(services) == {"db", "migrate", "api"}, "the Inngest services wait for a profile"
    assert services["db"]["healthcheck"]["test"][1] == "pg_isready"
    migrate, api = services["migrate"], services["api"]
    assert migrate["command"] == ["wf", "migrate"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["image"] == migrate["image"]
    assert api["environment"].get("ENGINE", "embedded") == "embedded"
    assert api["environment"]["DATABASE_URL"].startswith("postgresql://postgres:blueprints@db:")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "wf" in scripts
    published = {p["published"] for s in services.values() for p in s.get("ports", [])}
    assert all(
        p["host_ip"] == "127.0.0.1" for s in services.values() for p in s.get("ports", [])
    ), "nothing published beyond this machine by default"
    assert published == {"8000"}


def test_the_inngest_profile_adds_the_dev_server_and_an_api_in_inngest_mode() -> None:
    services = _compose("--profile", "inngest", env={"POSTGRES_PASSWORD": "s3cret"})["services"]
    assert set(services) == {"db", "migrate", "api", "inngest", "api-inngest"}
    inngest, api = services["inngest"], services["api-inngest"]
    assert inngest["image"].startswith("inngest/inngest:v1.")
    assert "http://api-inngest:8000/api/inngest" in inngest["command"]
    assert api["environment"]["ENGINE"] == "inngest"
    assert api["environment"]["INNGEST_DEV"] == "http://inngest:8288"
    assert api["environment"]["DATABASE_URL"] == ("postgresql://postgres:s3cret@db:5432/blueprints")
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_refuses_a_broken_file(tmp_path: Path) -> None:
    """The validation is real: a misspelt key fails it."""
    broken = tmp_path / "compose.yaml"
    broken.write_text((ROOT / "compose.yaml").read_text().replace("depends_on:", "depend_on:", 1))
    result = subprocess.run(
        [_tool("docker-compose"), "--file", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "depend_on" in result.stderr
