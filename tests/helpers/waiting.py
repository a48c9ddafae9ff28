"""Waiting for a condition on real servers: one poll loop, so no test hand-rolls its own."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...
@overload
async def eventually(probe: Callable[[], T], timeout: float = ..., interval: float = ..., what: str = ...) -> T: ...
async def eventually(
    probe: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> object:
    """Call `probe` (sync or async) until it returns something truthy and return that; an
    AssertionError naming `what` and the last value (or exception) once `timeout` has passed.
    An AssertionError raised by the probe counts as "not yet", so a probe may assert."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = value
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met after {timeout:g}s; last: {last!r}")
        await asyncio.sleep(interval)


def eventually_blocking(
    probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """`eventually` for synchronous code (a sync test, a helper run in a thread), blocking the calling
    thread meanwhile. It runs on a thread and event loop of its own, so the caller may have a loop or not."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, eventually(probe, timeout, interval, what)).result()
