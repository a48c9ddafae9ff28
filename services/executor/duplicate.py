"""Refusing to start as a second live executor under a host name that another instance is using.

Two instances with one host name would share its queue and confuse anyone reading the fleet by host;
the scheduler tells them apart by executor id, but a person meant one of them to have another name."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from scriptbus.events import ExecutorHeartbeat, Subjects, decode_event, utcnow

log = logging.getLogger(__name__)

# How many of its own intervals we wait for another heartbeat of the instance that beat last.
BEATS_TO_WAIT = 2.5
MAX_WAIT_S = 30.0


class DuplicateExecutor(RuntimeError):
    """Another live instance uses this host name."""


async def _last(js: JetStreamContext, s: Subjects, host: str, name: str) -> object:
    try:
        raw = await js.get_last_msg(s.executors_stream, s.executor_event(host, name))
    except nats.js.errors.NotFoundError:
        return None
    return decode_event(raw.data or b"{}")


async def ensure_sole_instance(nc: Client, js: JetStreamContext, s: Subjects, host: str, gone: set[str]) -> None:
    """Raise DuplicateExecutor when another instance serves `host`. Its last heartbeat alone does
    not say it lives (it may have been SIGKILLed a moment ago), so unless it said it stopped, was
    declared lost, or left a journal here that nobody holds (`gone`), we wait a few of its intervals
    for another beat."""
    beat = await _last(js, s, host, "heartbeat")
    if not isinstance(beat, ExecutorHeartbeat) or beat.executor_id in gone or beat.draining:
        return  # none, gone, or on its way out (it takes no new work and reports its own runs)
    for ending in ("stopped", "lost"):
        event = await _last(js, s, host, ending)
        if getattr(event, "executor_id", None) == beat.executor_id:
            return
    wait_s = min(max(beat.interval_s * BEATS_TO_WAIT, 1.0), MAX_WAIT_S)
    if utcnow() - beat.occurred_at > timedelta(seconds=wait_s * 4 + 60):
        return  # long silent (and not reported lost only because no scheduler runs)
    log.info(
        "another instance (%s) beat under host %s lately; waiting %.1fs to see if it lives",
        beat.executor_id[:8],
        host,
        wait_s,
    )
    heard: asyncio.Queue[str] = asyncio.Queue()

    async def on_beat(msg: Msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event, ExecutorHeartbeat) and not event.draining:
            heard.put_nowait(event.executor_id)

    sub = await nc.subscribe(s.executor_event(host, "heartbeat"), cb=on_beat)
    try:
        other = await asyncio.wait_for(heard.get(), wait_s)
    except TimeoutError:
        return
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    raise DuplicateExecutor(
        f"another executor is running under host name {host!r} (instance {other[:8]}, heartbeat just now);"
        " give this one a different --host (or SCRIPTBUS_HOST), or stop the other one first"
    )
