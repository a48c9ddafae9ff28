"""A real headless browser for the console's tests: the system's Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Screenshots of each page, kept after the run (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


def chromium_path() -> str | None:
    """The Chromium to drive: SCRIPTBUS_TEST_CHROMIUM, else the system's, else None."""
    given = os.environ.get("SCRIPTBUS_TEST_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
