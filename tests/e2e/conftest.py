"""The whole system as real processes, one stack per test (or several, via `make_stack`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.helpers.browser import chromium_path
from tests.helpers.processes import ServiceProcess
from tests.helpers.stack import MakeStack, Stack, running_stack


@pytest.fixture
async def make_stack(start_service: Callable[..., ServiceProcess]) -> AsyncIterator[MakeStack]:
    async with AsyncExitStack() as stacks:

        async def make(executors: Sequence[Sequence[str]] = (("--host", "local"),)) -> Stack:
            return await stacks.enter_async_context(running_stack(start_service, executors))

        yield make


@pytest.fixture
async def stack(start_service: Callable[..., ServiceProcess]) -> AsyncIterator[Stack]:
    async with running_stack(start_service) as ready:
        yield ready


@pytest.fixture
def up_data_dir() -> Iterator[Path]:
    """A data dir for `scriptbus up` outside pytest's temp root: pytest keeps that root 0700 (any other pytest
    run on the machine resets it), and as root the embedded PostgreSQL runs as a user that must cross it."""
    base = Path(tempfile.mkdtemp(prefix="scriptbus-up-"))
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium from the system's packages (Playwright downloads no browser here)."""
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium executable (install chromium, or set SCRIPTBUS_TEST_CHROMIUM to its path)")
    async with async_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
        launched = await playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()
