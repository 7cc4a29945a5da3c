"""Finds a Chromium for the browser tests: Playwright's own, else the system's.

``python -m tests.browser`` prints the one it would use (``playwright`` for Playwright's own)
and exits 1, saying how to get one, when there is none.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from playwright.sync_api import Browser, Playwright, sync_playwright

#: Debian's and Ubuntu's names for the browser, then Chrome's.
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Flags for a root, headless, offline machine: no sandbox (root), no calls home.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

HOW_TO_GET_ONE = (
    "no Chromium for the browser tests: install Playwright's "
    "(`.venv/bin/python -m playwright install chromium`) or the system's (Debian/Ubuntu: "
    "`apt-get install -y chromium`; macOS: `brew install --cask chromium`), or set CHROMIUM to "
    "a Chromium or Chrome binary"
)


def system_chromium() -> str | None:
    """The system's Chromium: ``$CHROMIUM``, else the first of :data:`SYSTEM_NAMES` on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_choice(playwright: Playwright) -> str | None:
    """``"playwright"`` when Playwright's own Chromium is installed, else the system's path,
    else None."""
    if Path(playwright.chromium.executable_path).exists() and not os.environ.get("CHROMIUM"):
        return "playwright"
    return system_chromium()


def launch(playwright: Playwright) -> Browser:
    """A headless Chromium.

    Raises:
        RuntimeError: none is installed (the message says how to get one).
    """
    choice = chromium_choice(playwright)
    if choice is None:
        raise RuntimeError(HOW_TO_GET_ONE)
    path = None if choice == "playwright" else choice
    if path is not None and not Path(path).is_file():
        raise RuntimeError(f"{path} does not exist; {HOW_TO_GET_ONE}")
    return playwright.chromium.launch(executable_path=path, headless=True, args=ARGS)


def main() -> int:
    """Print the Chromium the tests would use; 1 with advice when there is none."""
    with sync_playwright() as playwright:
        choice = chromium_choice(playwright)
    if choice is None:
        print(HOW_TO_GET_ONE, file=sys.stderr)
        return 1
    print(choice)
    return 0


if __name__ == "__main__":
    sys.exit(main())
