"""The scheduler's loop: follow executor events, declare silent executors lost, end their runs as `lost`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.kv import KeyValue

from scriptbus.events import (
    Event,
    ExecutorLost,
    RunFinished,
    RunStatus,
    claim_holder,
    claims_bucket,
    decode_event,
    publish_event,
    run_finish,
)
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.lifecycle import Stopped, close_bus, connect_bus_unless_stopped, settle_heap, unless_stopped
from scriptbus.scheduler.fanouts.driver import start_fanout_driver
from scriptbus.scheduler.fleet import Fleet, Loss
from scriptbus.scheduler.schedules.driver import start_schedule_driver
from scriptbus.scheduler.settings import SchedulerSettings
from scriptbus.scheduler.workflows.driver import start_workflow_driver

log = logging.getLogger("scriptbus.scheduler")

# Failures of NATS and PostgreSQL that the scheduler rides out, as opposed to bugs.
PG_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# Most time between retries of a publish NATS refused.
MAX_BACKOFF_S = 5.0

# Only the runs the lost instance started: another live instance may share its host name.
_ACTIVE_RUNS_SQL = "SELECT id::text FROM runs WHERE executor_id = $1 AND status IN ('running', 'stopping')"
# Queued runs are few (they wait for an executor); one may be claimed by an executor that died before
# it could start it, and then nobody else ever will.
_QUEUED_RUNS_SQL = "SELECT id::text FROM runs WHERE status = 'queued' ORDER BY created_at LIMIT 10000"


async def _active_runs(pool: asyncpg.Pool, claims: KeyValue, loss: Loss) -> set[str]:
    """Runs the read model still shows as running on the lost instance, those its last heartbeat named
    (the read model may not have projected a just-started run yet), and queued runs it had claimed."""
    run_ids = set(loss.run_ids)
    try:
        rows = await pool.fetch(_ACTIVE_RUNS_SQL, loss.executor_id)
        run_ids.update(r["id"] for r in rows)
        queued = [r["id"] for r in await pool.fetch(_QUEUED_RUNS_SQL)]
    except PG_ERRORS as exc:
        log.warning("read model unavailable, using heartbeat run list for %s: %s", loss.host, exc)
        return run_ids
    for run_id in queued:
        try:
            entry = await claims.get(run_id)
        except nats.js.errors.KeyNotFoundError:
            continue
        if claim_holder(entry.value) == loss.executor_id:
            run_ids.add(run_id)
    return run_ids


async def run(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    """Watch the fleet until `stop` is set. A NATS outage is ridden out: silence is not judged while
    the scheduler itself cannot hear, and verdicts that could not be published are retried."""
    nc, js, subjects = await connect_bus_unless_stopped(settings, "scriptbus-scheduler", stop)
    # Connections open on demand, so PostgreSQL being down now (or restarting later) costs only queries.
    pool: asyncpg.Pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=2)
    fleet = Fleet(settings.executor_lost_after_s)
    losses: list[Loss] = []
    # Verdicts are built once and retried as they are: the same event ids, so JetStream drops repeats.
    verdicts: list[list[Event]] = []
    sub: JetStreamContext.PushSubscription | None = None

    async def on_executor_event(msg: Msg) -> None:
        event = decode_event(msg.data)
        if event is not None:
            fleet.observe(event, time.monotonic())

    async def listen() -> JetStreamContext.PushSubscription:
        # The executors stream keeps the last message per subject: replaying it tells us the whole fleet.
        # Replayed heartbeats count as seen now, so an executor that died while we were not listening
        # is declared lost one timeout after we listen again.
        return await js.subscribe(
            subjects.executor_event("*", "*"),
            stream=subjects.executors_stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            cb=on_executor_event,
        )

    async def verdict(loss: Loss) -> list[Event]:
        claims = await claims_bucket(js, subjects)
        run_ids = []
        for run_id in sorted(await _active_runs(pool, claims, loss)):
            # A run that ended before its executor went silent keeps its finish (it may not be projected yet).
            if await run_finish(js, subjects, run_id) is None:
                run_ids.append(run_id)
        last_seen = datetime.now(UTC) - timedelta(seconds=loss.silent_for_s)
        events: list[Event] = [
            RunFinished(run_id=run_id, status=RunStatus.LOST, host=loss.host, reason=loss.reason) for run_id in run_ids
        ]
        events.append(ExecutorLost(host=loss.host, executor_id=loss.executor_id, last_seen=last_seen, run_ids=run_ids))
        log.warning("%s; %d run(s) marked lost", loss.reason, len(run_ids))
        return events

    async def publish_verdicts() -> None:
        while losses:
            verdicts.append(await verdict(losses[0]))
            losses.pop(0)
        while verdicts:
            events = verdicts[0]
            while events:
                await publish_event(js, subjects, events[0])
                events.pop(0)
            verdicts.pop(0)

    workflows = start_workflow_driver(js, subjects, stop, fleet)
    fanouts = start_fanout_driver(js, subjects, stop)
    schedules = start_schedule_driver(js, subjects, stop, settings.schedule_late_after_s)
    settle_heap()
    log.info("scheduler ready: executors lost after %.1fs of silence", settings.executor_lost_after_s)
    backoff = settings.check_interval_s
    try:
        while not stop.is_set():
            now = time.monotonic()
            if sub is not None and not nc.is_connected:
                log.warning("NATS connection lost: not judging executors until it is back")
                with contextlib.suppress(*BUS_ERRORS):
                    await sub.unsubscribe()
                sub = None
            if sub is None:
                fleet.excuse(now)
            wait = settings.check_interval_s
            if nc.is_connected:
                try:
                    if sub is None:
                        sub = await unless_stopped(stop, listen())
                        fleet.listening_since = fleet.listening_since or time.monotonic()
                        log.info("listening to executors")
                    losses.extend(fleet.silent(now))
                    await unless_stopped(stop, publish_verdicts())
                    backoff = settings.check_interval_s
                except BUS_ERRORS as exc:
                    log.warning("NATS: %s; trying again in %.1fs", exc or type(exc).__name__, backoff)
                    wait, backoff = backoff, min(backoff * 2, MAX_BACKOFF_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
    except Stopped:
        pass
    finally:
        # The driver stops deciding when `stop` is set; one waiting on a NATS that is down is cut short
        # (whatever it had decided is in the stream, and the next scheduler carries on from there).
        await asyncio.wait({workflows, fanouts, schedules}, timeout=1.0)
        for task in (workflows, fanouts, schedules):
            if not task.done():
                task.cancel()
        await asyncio.gather(workflows, fanouts, schedules, return_exceptions=True)
        if verdicts or losses:
            log.warning("stopping with %d verdict(s) unpublished: the next scheduler declares them again",
                        len(verdicts) + len(losses))  # fmt: skip
        if sub is not None and nc.is_connected:
            with contextlib.suppress(*BUS_ERRORS):
                await asyncio.wait_for(sub.unsubscribe(), 2)
        await close_bus(nc)
        with contextlib.suppress(*PG_ERRORS):
            await asyncio.wait_for(pool.close(), 2)
        log.info("scheduler stopped")
