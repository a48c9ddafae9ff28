"""The recorder's loop: fetch a batch, apply it in one transaction, repeat; start over from the stored
position after any failure."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from scriptbus.events.bus import connect_bus
from scriptbus.recorder.batch import apply_batch
from scriptbus.recorder.feed import EventFeed
from scriptbus.recorder.migrations import apply_migrations
from scriptbus.recorder.position import read_position
from scriptbus.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
# Errors after which the PostgreSQL connection is not worth keeping.
_CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def connect_database(url: str, stop: asyncio.Event) -> asyncpg.Connection | None:
    """A connection to PostgreSQL, retried until it works; None if `stop` is set first."""
    backoff = 0.2
    while not stop.is_set():
        try:
            conn: asyncpg.Connection = await asyncpg.connect(
                url, server_settings={"application_name": "scriptbus-recorder"}
            )
            return conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("postgresql not reachable (%s); retrying in %.1fs", exc, backoff)
            await _sleep_unless(stop, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
    return None


async def run_recorder(
    settings: RecorderSettings,
    stop: asyncio.Event,
    *,
    rebuild: bool = False,
    exit_when_caught_up: bool = False,
) -> None:
    """Project the events stream into PostgreSQL until `stop` is set.

    `rebuild` drops the read models first and replays the stream from its start;
    `exit_when_caught_up` returns once everything in the stream at start-up is applied.
    """
    nc, js, subjects = await connect_bus(settings, "scriptbus-recorder")
    conn = await connect_database(settings.database_url, stop)
    feed = EventFeed(
        nc,
        js,
        subjects,
        batch_size=settings.batch_size,
        batch_max_bytes=settings.batch_max_bytes,
        batch_wait_s=settings.batch_wait_s,
        idle_wait_s=settings.idle_wait_s,
    )
    try:
        if conn is None:
            return
        await apply_migrations(conn, rebuild=rebuild)
        target = await feed.last_seq() if exit_when_caught_up else None
        position = await read_position(conn)
        await feed.start(position + 1)
        log.info("recorder ready at seq %d", position)
        caught_up_once = False
        restart = False
        backoff = 0.2
        while not stop.is_set():
            try:
                if restart:
                    if conn is None or conn.is_closed():
                        conn = await connect_database(settings.database_url, stop)
                        if conn is None:
                            break
                    position = await read_position(conn)
                    await feed.start(position + 1)
                    restart = False
                fetch_started = time.perf_counter()
                msgs = await feed.next_batch()
                if msgs:
                    apply_started = time.perf_counter()
                    result = await apply_batch(conn, msgs, feed.only_deleted_between)
                    log.debug(
                        "batch of %d (%d bytes) fetched in %.1f ms, applied in %.1f ms; position %d",
                        len(msgs),
                        sum(len(m.data) for m in msgs),
                        (apply_started - fetch_started) * 1000,
                        (time.perf_counter() - apply_started) * 1000,
                        result.position,
                    )
                    position = result.position
                    if result.restart_from is not None:
                        await feed.start(result.restart_from)
                elif not caught_up_once:
                    caught_up_once = True
                    log.info("caught up at seq %d", position)
                if target is not None and (position >= target or (not msgs and await feed.pending() == 0)):
                    log.info("caught up with the stream at seq %d; exiting", position)
                    break
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever failed, the stored position is the truth
                log.warning("recorder: %r; starting again from the stored position in %.1fs", exc, backoff)
                restart = True
                if conn is not None and isinstance(exc, _CONNECTION_ERRORS):
                    conn.terminate()
                    conn = None
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
    finally:
        await feed.close()
        if conn is not None and not conn.is_closed():
            await conn.close()
        await nc.drain()
        log.info("recorder stopped")
