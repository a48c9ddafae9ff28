"""The recorder's loops, one per stream: fetch a batch, apply it in one transaction, repeat; start
over from the stored position after any failure."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

from scriptbus.events.lifecycle import cancel_after_stop, close_bus, connect_bus_unless_stopped, settle_heap
from scriptbus.recorder.batch import GapCheck, apply_batch
from scriptbus.recorder.feed import EventFeed
from scriptbus.recorder.migrations import apply_migrations
from scriptbus.recorder.position import EXECUTORS_POSITION_NAME, POSITION_NAME, read_position
from scriptbus.recorder.purges import RunPurger, deletes_a_run
from scriptbus.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
# After a stop, how long a batch in flight may take to finish before it is cancelled.
STOP_GRACE_S = 2.0
# Errors after which the PostgreSQL connection is not worth keeping.
_CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
)


@dataclass(frozen=True, slots=True)
class StreamProjection:
    """One stream projected into the read models, with its own position."""

    position_name: str
    stream: str
    # The executors stream keeps only the last message per subject: jumps over superseded
    # messages are its normal state, not lost deliveries.
    gaps_are_normal: bool = False
    # Purges deleted runs' messages after the commits that delete them (events stream only).
    purger: RunPurger | None = None


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def _no_gap(first: int, end: int) -> bool:
    return True


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
    """Project the events and executors streams into PostgreSQL until `stop` is set.

    `rebuild` drops the read models first and replays the streams from their start;
    `exit_when_caught_up` returns once everything in the streams at start-up is applied.
    """
    nc, js, subjects = await connect_bus_unless_stopped(settings, "scriptbus-recorder", stop)
    try:
        conn = await connect_database(settings.database_url, stop)
        if conn is None:
            return
        try:
            await apply_migrations(conn, rebuild=rebuild)
        finally:
            await conn.close()
        projections = [
            StreamProjection(POSITION_NAME, subjects.events_stream, purger=RunPurger(js, subjects)),
            StreamProjection(EXECUTORS_POSITION_NAME, subjects.executors_stream, gaps_are_normal=True),
        ]
        streams = asyncio.gather(*(project_stream(p, settings, nc, js, stop, exit_when_caught_up) for p in projections))
        # A loop may be inside a request to a server that is down: the stored position makes cancelling it safe.
        await cancel_after_stop(stop, streams, STOP_GRACE_S, "projecting")
    finally:
        await close_bus(nc)
        log.info("recorder stopped")


async def project_stream(
    projection: StreamProjection,
    settings: RecorderSettings,
    nc: Client,
    js: JetStreamContext,
    stop: asyncio.Event,
    exit_when_caught_up: bool,
) -> None:
    """Apply one stream's batches until `stop` is set (or, if asked, until caught up)."""
    name = projection.position_name
    feed = EventFeed(
        nc,
        js,
        projection.stream,
        batch_size=settings.batch_size,
        batch_max_bytes=settings.batch_max_bytes,
        idle_wait_s=settings.idle_wait_s,
    )
    gap_check: GapCheck = _no_gap if projection.gaps_are_normal else feed.only_deleted_between
    conn: asyncpg.Connection | None = None
    target: int | None = None
    position = 0
    started = caught_up_once = False
    restart = True
    backoff = 0.2
    try:
        while not stop.is_set():
            try:
                if restart:
                    if conn is None or conn.is_closed():
                        conn = await connect_database(settings.database_url, stop)
                        if conn is None:
                            break
                    if exit_when_caught_up and target is None:
                        target = await feed.last_seq()
                    position = await read_position(conn, name)
                    if projection.purger is not None:
                        # Deletions committed by an earlier life that died before purging.
                        await projection.purger.purge_pending(conn)
                    await feed.start(position + 1)
                    if not started:
                        started = True
                        settle_heap()
                        log.info("%s: ready at seq %d", name, position)
                    restart = False
                assert conn is not None
                fetch_started = time.perf_counter()
                msgs = await feed.next_batch()
                if msgs:
                    apply_started = time.perf_counter()
                    result = await apply_batch(conn, msgs, gap_check, position_name=name, known_position=position)
                    log.debug(
                        "%s: batch of %d (%d bytes) fetched in %.1f ms, applied in %.1f ms; position %d",
                        name,
                        len(msgs),
                        sum(len(m.data) for m in msgs),
                        (apply_started - fetch_started) * 1000,
                        (time.perf_counter() - apply_started) * 1000,
                        result.position,
                    )
                    position = result.position
                    if projection.purger is not None and result.applied and deletes_a_run(msgs):
                        await projection.purger.purge_pending(conn)
                    if result.restart_from is not None:
                        await feed.start(result.restart_from)
                elif not caught_up_once:
                    caught_up_once = True
                    log.info("%s: caught up at seq %d", name, position)
                if target is not None and (position >= target or (not msgs and await feed.pending() == 0)):
                    log.info("%s: caught up with the stream at seq %d; exiting", name, position)
                    break
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever failed, the stored position is the truth
                log.warning("%s: %r; starting again from the stored position in %.1fs", name, exc, backoff)
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
