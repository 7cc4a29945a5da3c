"""The built wheel on its own: installed into a fresh virtualenv (the versions of ``uv.lock``),
away from the checkout, ``wf migrate`` applies the migrations it carries and ``wf validate``
checks a blueprint. Built and installed with uv (``scripts/lib.sh`` bootstraps it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = sorted(p.name for p in (ROOT / "supabase" / "migrations").glob("*.sql"))


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "uv" / "bin" / "uv")
    if not Path(found).is_file():
        pytest.fail("no uv: run ./scripts/test.sh, which installs it (scripts/lib.sh find_uv)")
    return found


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the virtualenv it is installed in)."""
    work = tmp_path_factory.mktemp("wheel")
    uv = _uv()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    _run(uv, "build", "--wheel", "--out-dir", work / "dist", ROOT, cwd=ROOT, env=env)
    [wheel] = (work / "dist").glob("*.whl")
    locked = work / "requirements.txt"
    _run(
        uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
        "--output-file", locked, cwd=ROOT, env=env,
    )  # fmt: skip
    venv = work / "venv"
    _run(uv, "venv", "--python", sys.executable, venv, cwd=work, env=env)
    _run(
        uv, "pip", "install", "--python", venv / "bin" / "python", "-r", locked, wheel,
        cwd=work, env=env,
    )  # fmt: skip
    yield wheel, venv


def test_the_wheel_carries_the_engine_and_its_migrations_only(
    installed: tuple[Path, Path],
) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".sql"))
    assert packaged == MIGRATIONS
    assert "blueprint_engine/py.typed" in names
    top_levels = {
        n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")
    }
    assert top_levels == {"blueprint_engine"}, "evals/, tests/ and bench/ stay in the checkout"


def test_wf_migrate_and_validate_from_the_installed_wheel(
    installed: tuple[Path, Path], database_url: str, tmp_path: Path
) -> None:
    _, venv = installed
    name = str(conninfo.conninfo_to_dict(database_url)["dbname"]) + "_wheel"
    url = conninfo.make_conninfo(database_url, dbname=name)
    admin = conninfo.make_conninfo(database_url, dbname="postgres")
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)
    # Away from the checkout: nothing of it on sys.path, no .env read.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env |= {"DATABASE_URL": url, "COLUMNS": "200"}
    wf = venv / "bin" / "wf"
    try:
        where = _run(
            venv / "bin" / "python", "-c",
            "from blueprint_engine import resources as r; print(r.CHECKOUT, r.migrations())",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert where.startswith("None ") and str(venv) in where, where
        out = _run(wf, "migrate", cwd=tmp_path, env=env)
        assert "created database" in out
        assert [line.split()[-1] for line in out.splitlines() if "applied migration" in line] == (
            MIGRATIONS
        )
        with psycopg.connect(url) as conn:
            recorded = conn.execute("select count(*) from supabase_migrations.schema_migrations")
            assert recorded.fetchone() == (len(MIGRATIONS),)
        assert "applied migration" not in _run(wf, "migrate", cwd=tmp_path, env=env)

        blueprint = ROOT / "examples" / "payment_receipt" / "blueprint.json"
        assert "valid" in _run(wf, "validate", blueprint, cwd=tmp_path, env=env)
        broken = tmp_path / "broken.json"
        broken.write_text(blueprint.read_text().replace('"whatsapp"', '"fax"'))
        refused = subprocess.run(
            [wf, "validate", broken], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert refused.returncode == 1, refused.stdout
        assert "Invalid blueprint" in refused.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(drop)
