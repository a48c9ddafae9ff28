"""The skeleton every scriptbus service runs in: logging, SIGTERM/SIGINT → a stop event, a shutdown
with a deadline, and connecting to NATS in a way a stop interrupts.

It lives in `libs/events` (`scriptbus.events.lifecycle`) because that is the one package every
service imports (DESIGN.md: nothing else is shared between services) and because half of it is
about the bus connection, beside `bus.py`. A service's `__main__` parses flags, builds its settings
(a `ServiceSettings`) and calls `run_service(name, settings, serve)`; `serve(stop)` does the work
until `stop` is set, then winds down.
However `serve` is written, the process leaves within `shutdown_timeout_s` of the first signal
(at once on a second one), logging what it gave up waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from nats.aio.client import Client
from pydantic import Field, field_validator

from scriptbus.events.bus import BusConnection, BusSettings, connect_bus

log = logging.getLogger("scriptbus.lifecycle")

T = TypeVar("T")
# A service's work: runs until the stop event is set, then winds down and returns.
Serve = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How long a service may take to wind down after the first SIGTERM/SIGINT before it exits anyway.
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
# After the deadline, cancelled tasks get this long to unwind before the process leaves regardless.
_CANCEL_GRACE_S = 2.0
# Draining a connection flushes what we published; bounded, so a dead server cannot hold shutdown.
DRAIN_TIMEOUT_S = 3.0
EXIT_FORCED = 1


class ServiceSettings(BusSettings):
    """What every service's settings share: the bus, `SCRIPTBUS_LOG_LEVEL` (any case) and
    `SCRIPTBUS_SHUTDOWN_TIMEOUT_S`, the most a shutdown may take before the process exits anyway."""

    log_level: str = "INFO"
    shutdown_timeout_s: float = Field(default=DEFAULT_SHUTDOWN_TIMEOUT_S, gt=0)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        log_level(value)
        return value.strip().upper()


class Stopped(Exception):
    """The stop event was set before the awaited work finished; the work was cancelled."""


def log_level(name: str) -> int:
    """`"debug"`, `"INFO"`, `" Warning "`... as a logging level; ValueError naming the valid ones."""
    level = logging.getLevelNamesMapping().get(name.strip().upper())
    if level is None:
        raise ValueError(f"log level {name!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)")
    return level


def setup_logging(level: str) -> None:
    """Log to stderr at `level` (any case, e.g. `SCRIPTBUS_LOG_LEVEL=debug`), one format for all services."""
    logging.basicConfig(stream=sys.stderr, level=log_level(level), format=LOG_FORMAT, force=True)


async def unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T:
    """The result of `work`, or `Stopped` (with `work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    if stop.is_set():
        task.cancel()
    else:
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
    if task.cancelled() or not task.done():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise Stopped
    return task.result()


async def cancel_after_stop(stop: asyncio.Event, work: Awaitable[T], grace_s: float, what: str) -> T | None:
    """The result of `work`; once `stop` is set it has `grace_s` more to finish, then it is cancelled
    and this returns None. For work that checks `stop` between steps but may be inside one (a request
    to a server that is down) when it is set."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace_s)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled() or not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("stopped %s: it did not finish within %.1fs of the stop", what, grace_s)
        return None
    return task.result()


async def connect_bus_unless_stopped(settings: BusSettings, name: str, stop: asyncio.Event) -> BusConnection:
    """`connect_bus` (which retries until NATS answers), given up with `Stopped` when `stop` is set."""
    if not stop.is_set():
        log.info("connecting to NATS at %s", settings.nats_url)
    return await unless_stopped(stop, connect_bus(settings, name))


async def close_bus(nc: Client, timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Drain the connection while the server is there (bounded), else just close it: draining a
    connection that is reconnecting would wait for a server that may never come back."""
    if nc.is_closed:
        return
    if nc.is_connected:
        try:
            await asyncio.wait_for(nc.drain(), timeout)
        except Exception as exc:  # noqa: BLE001 - closing below regardless
            log.warning("could not drain the NATS connection (%s); closing it", exc or type(exc).__name__)
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout)


def _describe(task: asyncio.Task[Any]) -> str:
    """A task as `name (outer:line -> inner:line -> ...)`: where it waits, for the log line that says
    what a shutdown gave up on."""
    parts: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        code = getattr(awaited, "cr_code", None) or getattr(awaited, "gi_code", None)
        if code is None:
            parts.append(type(awaited).__name__)
            break
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        parts.append(f"{code.co_qualname}:{frame.f_lineno}" if frame is not None else code.co_qualname)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return f"{task.get_name()} ({' -> '.join(parts)})"


async def _supervise(name: str, serve: Serve, shutdown_timeout_s: float) -> None:
    stop = asyncio.Event()
    forced = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: not waiting any longer", sig.name)
            forced.set()
            return
        log.info("%s: %s shutting down (at most %.0fs)", sig.name, name, shutdown_timeout_s)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    work = asyncio.create_task(serve(stop), name=name)
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
    forcing = asyncio.create_task(forced.wait())
    if not work.done():
        await asyncio.wait({work, forcing}, timeout=shutdown_timeout_s, return_when=asyncio.FIRST_COMPLETED)
    forcing.cancel()
    waiting.cancel()
    if work.done():
        with contextlib.suppress(Stopped):
            work.result()  # a crash propagates: asyncio.run reports it and the process exits 1
        return

    current = asyncio.current_task()
    ours = {current, waiting, forcing}
    pending = sorted(_describe(t) for t in asyncio.all_tasks() if t not in ours and not t.done())
    why = "when told twice" if forced.is_set() else f"in {shutdown_timeout_s:g}s"
    log.error("%s did not stop %s; giving up on: %s", name, why, "; ".join(pending))
    work.cancel()
    await asyncio.wait({work}, timeout=_CANCEL_GRACE_S)
    # Leave without asyncio.run's clean-up: it waits, without a bound, for every task to finish.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_FORCED)


# The young generation's size before the cycle collector runs (CPython's default is 700). Requests in flight
# outlive a collection at 700 and are promoted, so older generations grow and full collections come often.
GC_YOUNG_OBJECTS = 20_000


def settle_heap() -> None:
    """Take what the process holds so far (modules, schemas, the app, its caches) out of the cycle
    collector's reach: it lives as long as the process, and each full collection scanned all of it (the
    gateway paused for up to 237 ms at a time under load)."""
    gc.freeze()


def run_service(
    name: str,
    settings: ServiceSettings,
    serve: Serve,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Set up logging at `settings.log_level` and run `serve(stop)` until it returns; SIGTERM/SIGINT
    set `stop`. From the first signal `serve` has `settings.shutdown_timeout_s` to return (a second
    signal ends the wait); then what is still pending is logged and cancelled, and the process exits 1.
    `Stopped` escaping `serve` counts as a clean stop; any other exception exits 1 with its traceback.
    `loop_factory` makes the event loop (e.g. uvloop's); asyncio's default when None."""
    setup_logging(settings.log_level)
    log.debug("%s starting, pid %d", name, os.getpid())
    gc.set_threshold(GC_YOUNG_OBJECTS, *gc.get_threshold()[1:])
    settle_heap()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_supervise(name, serve, settings.shutdown_timeout_s))
