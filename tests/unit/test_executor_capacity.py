"""Run slots shared by pull loops."""

from __future__ import annotations

import asyncio

from scriptbus.executor.capacity import Capacity


async def test_reservations_never_exceed_the_limit_and_unused_ones_come_back() -> None:
    cap = Capacity(5, parties=1)
    assert await cap.reserve(16) == 5
    waiting = asyncio.create_task(cap.reserve(16))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    cap.release(2)
    assert await waiting == 2
    assert cap.used == 5


async def test_each_loop_gets_its_share_and_waiters_are_served_in_order() -> None:
    cap = Capacity(7, parties=2)
    assert await cap.reserve(16) == 4
    assert await cap.reserve(16) == 3
    # The loop that waits first gets the next free slot, even if another releases and asks again.
    first = asyncio.create_task(cap.reserve(16))
    await asyncio.sleep(0)
    cap.release(1)
    second = asyncio.create_task(cap.reserve(16))
    await asyncio.sleep(0.01)
    assert first.done() and await first == 1
    assert not second.done()
    cap.close()
    assert await second == 0
    assert await cap.reserve(1) == 0


async def test_a_cancelled_waiter_loses_nothing() -> None:
    cap = Capacity(1)
    assert await cap.reserve(1) == 1
    waiter = asyncio.create_task(cap.reserve(1))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    cap.release(1)
    assert await cap.reserve(1) == 1
