"""The scheduler's loop: follow executor events, declare silent executors lost, end their runs as `lost`."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.kv import KeyValue

from scriptbus.events import (
    ExecutorLost,
    RunFinished,
    RunStatus,
    claims_bucket,
    connect_bus,
    decode_event,
    publish_event,
)
from scriptbus.scheduler.fleet import Fleet, Loss
from scriptbus.scheduler.settings import SchedulerSettings
from scriptbus.scheduler.workflows.driver import start_workflow_driver

log = logging.getLogger("scriptbus.scheduler")

_ACTIVE_RUNS_SQL = """
SELECT id::text FROM runs
WHERE host = $1 AND status IN ('running', 'stopping') AND (executor_id = $2 OR executor_id IS NULL)
"""
# Queued runs are few (they wait for an executor); one may be claimed by an executor that died before
# it could start it, and then nobody else ever will.
_QUEUED_RUNS_SQL = "SELECT id::text FROM runs WHERE status = 'queued' ORDER BY created_at LIMIT 10000"


async def _active_runs(pool: asyncpg.Pool | None, claims: KeyValue, loss: Loss) -> set[str]:
    """Runs the read model still shows as running there, those the last heartbeat named (the read
    model may not have projected a just-started run yet), and queued runs the lost host had claimed."""
    run_ids = set(loss.run_ids)
    if pool is None:
        return run_ids
    try:
        rows = await pool.fetch(_ACTIVE_RUNS_SQL, loss.host, loss.executor_id)
        run_ids.update(r["id"] for r in rows)
        queued = [r["id"] for r in await pool.fetch(_QUEUED_RUNS_SQL)]
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("read model unavailable, using heartbeat run list for %s: %s", loss.host, exc)
        return run_ids
    for run_id in queued:
        try:
            entry = await claims.get(run_id)
        except nats.js.errors.KeyNotFoundError:
            continue
        if entry.value == loss.host.encode():
            run_ids.add(run_id)
    return run_ids


async def run(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    nc, js, subjects = await connect_bus(settings, "scriptbus-scheduler")
    pool: asyncpg.Pool | None
    try:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("PostgreSQL unavailable (%s); lost runs will come from heartbeats only", exc)
        pool = None
    claims = await claims_bucket(js, subjects)
    fleet = Fleet(settings.executor_lost_after_s)
    losses: asyncio.Queue[Loss] = asyncio.Queue()

    async def on_executor_event(msg: Msg) -> None:
        event = decode_event(msg.data)
        if event is not None:
            loss = fleet.observe(event, time.monotonic())
            if loss is not None:
                losses.put_nowait(loss)

    # The executors stream keeps the last message per subject: replaying it tells us the whole fleet.
    # Replayed heartbeats count as seen now, so an executor that died while we were down is declared
    # lost one timeout after our start.
    sub = await js.subscribe(
        subjects.executor_event("*", "*"),
        stream=subjects.executors_stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        cb=on_executor_event,
    )
    workflows = start_workflow_driver(js, subjects, stop)
    log.info("scheduler ready: executors lost after %.1fs of silence", settings.executor_lost_after_s)

    async def declare(loss: Loss) -> None:
        run_ids = await _active_runs(pool, claims, loss)
        for run_id in sorted(run_ids):
            await publish_event(
                js,
                subjects,
                RunFinished(run_id=run_id, status=RunStatus.LOST, host=loss.host, reason=loss.reason),
            )
        last_seen = datetime.now(UTC) - timedelta(seconds=loss.silent_for_s)
        await publish_event(
            js,
            subjects,
            ExecutorLost(host=loss.host, executor_id=loss.executor_id, last_seen=last_seen, run_ids=sorted(run_ids)),
        )
        log.warning("%s; %d run(s) marked lost", loss.reason, len(run_ids))

    try:
        while not stop.is_set():
            for loss in fleet.silent(time.monotonic()):
                losses.put_nowait(loss)
            while not losses.empty():
                await declare(losses.get_nowait())
            try:
                await asyncio.wait_for(stop.wait(), settings.check_interval_s)
            except TimeoutError:
                pass
    finally:
        await asyncio.gather(workflows, return_exceptions=True)
        await sub.unsubscribe()
        if pool is not None:
            await pool.close()
        await nc.drain()
        log.info("scheduler stopped")
