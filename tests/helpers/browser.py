"""A real headless browser for the console's tests: the system's Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.helpers.stack import Stack
from tests.helpers.tokens import bearer

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


async def sign_in(page: Page, api: str, token: str) -> None:
    """Sign the page in to the console at `api` with `token`."""
    await page.goto(api + "/")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("whoami")).to_be_visible()


async def sign_out(page: Page) -> None:
    """Sign out as a user does, and wait for the sign-in form: only then is the session cookie gone (a
    navigation started before would abort the sign-out's request and keep the session)."""
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_test_id("signin")).to_be_visible()


async def shot(page: Page, name: str) -> None:
    """A full-page screenshot kept as a test artifact."""
    path = artifact(name)
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


async def api_call(stack: Stack, method: str, path: str, token: str, **kwargs: Any) -> Any:
    """An API call the test makes beside the browser: its JSON (None when empty), or a failed assert."""
    headers = {**bearer(token), **kwargs.pop("headers", {})}
    response = await stack.client.request(method, path, headers=headers, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None
