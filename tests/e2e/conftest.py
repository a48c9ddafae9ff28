"""The whole system as real processes, one stack per test (or several, via `make_stack`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack

import pytest

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
