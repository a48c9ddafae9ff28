"""A run's messages from JetStream, live: the one reader behind `output?follow=true` and `/events`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from scriptbus.gateway.errors import bus_errors
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

# How often a quiet reader looks at the connection and the gateway's shutdown (and may send keepalives).
IDLE_CHECK_S = 1.0
# The server removes a reader's ephemeral consumer this soon after it unsubscribes (or vanishes).
CONSUMER_INACTIVE_S = 2.0


class RunMessages:
    """Every message stored under `<prefix>.runs.<id>.>` from a stream sequence on, in stream order.

    `open` subscribes, so NATS trouble is still a clean HTTP error before any byte is sent. Use it as
    `async with messages: async for msg in messages: ...`: iterating yields each message, and None
    after each quiet `IDLE_CHECK_S`; it ends when the gateway shuts down or NATS closes; leaving the
    `async with` unsubscribes, also when the client went away and cancelled us."""

    def __init__(self, gw: Gateway, run_id: str, sub: JetStreamContext.PushSubscription) -> None:
        self._gw = gw
        self._run_id = run_id
        self._sub = sub

    @classmethod
    async def open(cls, gw: Gateway, run_id: str, start_seq: int, what: str) -> RunMessages:
        """From stream sequence `start_seq` (1: all of them)."""
        s = gw.subjects
        with bus_errors(what):
            sub = await gw.js.subscribe(
                s.run_all(run_id),
                stream=s.events_stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq > 1 else DeliverPolicy.ALL,
                config=ConsumerConfig(opt_start_seq=start_seq) if start_seq > 1 else None,
                inactive_threshold=CONSUMER_INACTIVE_S,
            )
        return cls(gw, run_id, sub)

    async def __aenter__(self) -> RunMessages:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._sub.unsubscribe()
            except (nats.errors.Error, OSError) as exc:
                log.debug("unsubscribe after reading run %s: %s", self._run_id, exc)

    async def __aiter__(self) -> AsyncIterator[Msg | None]:
        gw = self._gw
        while not gw.shutdown.is_set():
            try:
                yield await self._sub.next_msg(timeout=IDLE_CHECK_S)
            except nats.errors.TimeoutError:
                if gw.nc.is_closed:
                    log.warning("run %s: NATS connection closed while reading its messages", self._run_id)
                    return
                yield None
