"""Files the engine ships with, found the same way in a checkout and in an installed wheel.

The wheel carries the SQL migrations inside the package (``<package>/migrations``, copied there
from ``supabase/migrations`` by the build: ``[tool.hatch.build.targets.wheel.force-include]``
in ``pyproject.toml``), so ``wf migrate`` needs no source tree. A checkout (or an editable
install of one) reads ``supabase/migrations`` itself, where the Supabase CLI reads them too.
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

#: This package's files (``importlib.resources``): the installed wheel's or the checkout's.
PACKAGE: Traversable = files(__package__ or __name__)

#: The checkout this package is running from, if it is one (``pyproject.toml`` two levels up);
#: ``None`` for an installed wheel.
CHECKOUT: Path | None = next(
    (
        root
        for root in [Path(__file__).resolve().parents[2]]
        if (root / "pyproject.toml").is_file() and (root / "supabase" / "migrations").is_dir()
    ),
    None,
)


def data_dir() -> Path:
    """Where the engine keeps its own files (the embedded server's data): ``.data`` in a
    checkout; else ``$XDG_DATA_HOME/blueprint-engine`` (``~/.local/share/blueprint-engine``)."""
    if CHECKOUT is not None:
        return CHECKOUT / ".data"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "blueprint-engine"


def dashboard_dist() -> Path:
    """Where ``vite build`` puts the dashboard: ``DASHBOARD_DIST`` (the container image sets
    it), else the checkout's ``dashboard/dist``, else ``./dashboard/dist``."""
    configured = os.environ.get("DASHBOARD_DIST")
    if configured:
        return Path(configured)
    return (CHECKOUT or Path.cwd()) / "dashboard" / "dist"


def migrations() -> Traversable:
    """The directory of ``<version>_<name>.sql`` migrations.

    Raises:
        FileNotFoundError: neither the package nor a checkout holds them (a broken install).
    """
    packaged = PACKAGE / "migrations"
    if packaged.is_dir():
        return packaged
    if CHECKOUT is not None:
        return CHECKOUT / "supabase" / "migrations"
    raise FileNotFoundError(f"no migrations in {PACKAGE} (the wheel should carry them)")
