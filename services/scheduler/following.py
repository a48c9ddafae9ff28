"""What the scheduler's drivers (workflows, fan-outs, schedules) share: following the events stream
from its start up to now and on, and riding out NATS failures by starting over from a fresh state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.subjects import Subjects

log = logging.getLogger(__name__)

# After NATS trouble: the wait before a driver retries a decision or follows the stream again (then
# doubled, up to MAX_RETRY_S, while following keeps failing).
RETRY_S = 1.0
MAX_RETRY_S = 10.0


class Driver(Protocol):
    async def start(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def close(self) -> None: ...


async def follow(
    js: JetStreamContext, s: Subjects, filters: Sequence[str], inbox: asyncio.Queue[Msg]
) -> tuple[int, JetStreamContext.PushSubscription]:
    """Put every message of the events stream under `filters`, from the first, into `inbox`. Returns the
    sequence of the last such message stored now (0: none), up to which the driver is catching up."""
    mark = 0
    for subject in filters:
        try:
            msg = await js.get_last_msg(s.events_stream, subject)
        except nats.js.errors.NotFoundError:
            continue
        mark = max(mark, msg.seq or 0)

    async def take(msg: Msg) -> None:
        inbox.put_nowait(msg)

    sub = await js.subscribe(
        "",
        stream=s.events_stream,
        ordered_consumer=True,
        cb=take,
        config=ConsumerConfig(filter_subjects=list(filters), deliver_policy=DeliverPolicy.ALL),
    )
    return mark, sub


async def unfollow(sub: JetStreamContext.PushSubscription | None) -> None:
    """Stop following; a connection already gone has nothing to stop."""
    if sub is not None:
        try:
            await sub.unsubscribe()
        except BUS_ERRORS as exc:
            log.debug("unsubscribe: %s", exc)


async def drive(make: Callable[[], Driver], what: str, stop: asyncio.Event) -> None:
    """Run a driver made by `make` until `stop` is set; while the stream cannot be read, start over with
    a new one (a fresh state, folded again from the stream), backing off."""
    delay = RETRY_S
    while not stop.is_set():
        driver = make()
        try:
            await driver.start()
            delay = RETRY_S
            await driver.run(stop)
            return
        except BUS_ERRORS as exc:
            log.warning("%s: cannot follow the stream (%s); starting over in %.0fs", what, exc, delay)
        finally:
            await driver.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, MAX_RETRY_S)
