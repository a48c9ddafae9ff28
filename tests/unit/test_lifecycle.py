"""The service skeleton's pieces that need no server: log levels, and work a stop interrupts."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from scriptbus.events.lifecycle import ServiceSettings, Stopped, cancel_after_stop, unless_stopped


@pytest.mark.parametrize("given", ["debug", "DEBUG", " Debug "])
def test_log_level_in_any_case(given: str) -> None:
    assert ServiceSettings(log_level=given).log_level == "DEBUG"


def test_unknown_log_level_names_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match="not one of DEBUG, INFO"):
        ServiceSettings(log_level="verbose")


async def test_a_stop_interrupts_work_that_would_never_end() -> None:
    stop = asyncio.Event()
    forever = asyncio.ensure_future(asyncio.Event().wait())
    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(Stopped):
        await unless_stopped(stop, forever)
    assert forever.cancelled()


async def test_work_that_ends_first_gives_its_result() -> None:
    async def answer() -> int:
        return 42

    assert await unless_stopped(asyncio.Event(), answer()) == 42


async def test_work_gets_its_grace_after_a_stop_then_is_cancelled() -> None:
    stop = asyncio.Event()
    stop.set()

    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert await cancel_after_stop(stop, quick(), grace_s=5, what="quick") == "done"
    assert await cancel_after_stop(stop, asyncio.Event().wait(), grace_s=0.05, what="stuck") is None
