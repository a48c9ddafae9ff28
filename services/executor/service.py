"""Wiring the executor at start-up, and its orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from pathlib import Path

from scriptbus.events import ExecutorStopped, connect_bus, publish_event
from scriptbus.executor.containment import Containment
from scriptbus.executor.duplicate import DuplicateExecutor, ensure_sole_instance
from scriptbus.executor.errors import BUS_ERRORS
from scriptbus.executor.execution import ExecutorIdentity
from scriptbus.executor.heartbeat import Heartbeat
from scriptbus.executor.journal import Journal, predecessors
from scriptbus.executor.leftovers import reap_leftovers
from scriptbus.executor.process import find_bash
from scriptbus.executor.settings import ExecutorSettings
from scriptbus.executor.worker import Worker

log = logging.getLogger("scriptbus.executor")


async def serve(settings: ExecutorSettings) -> None:
    """Run the executor until SIGTERM/SIGINT, then stop pulling, stop and report every run, say
    `executor.stopped` and drain the connection."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    work_dir = Path(settings.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    executor_id = str(uuid.uuid4())
    containment = Containment.create(settings.executor_cgroups)
    nc, js, subjects = await connect_bus(settings, name=f"scriptbus-executor-{settings.host}")

    # Before any work: refuse to be a second live instance of this host, then reap what a previous
    # instance on this host left behind.
    gone = predecessors(work_dir)
    try:
        await ensure_sole_instance(nc, js, subjects, settings.host, {g.executor_id for g in gone})
    except DuplicateExecutor as exc:
        for g in gone:
            g.release()
        with contextlib.suppress(*BUS_ERRORS):
            await nc.close()
        raise SystemExit(f"scriptbus executor: {exc}") from None
    await reap_leftovers(work_dir, gone, js, subjects, settings.host, settings.default_stop_grace_s)
    me = ExecutorIdentity(
        host=settings.host,
        executor_id=executor_id,
        bash=find_bash(),
        work_dir=work_dir,
        max_output_bytes=settings.max_output_bytes,
        default_stop_grace_s=settings.default_stop_grace_s,
        containment=containment,
        journal=Journal(work_dir, executor_id),
    )
    worker = Worker(nc, js, subjects, me, settings.targets, settings.max_concurrency)
    heartbeat = Heartbeat(
        js,
        subjects,
        host=me.host,
        executor_id=me.executor_id,
        pools=settings.targets,
        labels=settings.labels,
        capacity=settings.max_concurrency,
        interval_s=settings.heartbeat_interval_s,
        running_run_ids=worker.running_run_ids,
        draining=lambda: worker.draining,
    )
    await worker.start()
    beats_done = asyncio.Event()
    beats = asyncio.create_task(heartbeat.run(beats_done))
    watchers: list[asyncio.Task[None]] = []
    if containment.reaper is not None:
        watchers.append(asyncio.create_task(containment.reaper.watch(beats_done)))
    log.info(
        "executor ready: host=%s id=%s targets=%s max_concurrency=%d runs contained by %s",
        me.host,
        me.executor_id,
        ",".join(settings.targets),
        settings.max_concurrency,
        containment.mode.value,
    )

    await stop.wait()
    log.info("executor shutting down: %d runs to stop", len(worker.executions))
    await worker.stop_pulling()
    await heartbeat.beat()  # tells the fleet we are draining
    await worker.stop_runs()
    beats_done.set()
    await beats
    for watcher in watchers:
        watcher.cancel()
    me.journal.close()
    try:
        await publish_event(js, subjects, ExecutorStopped(host=me.host, executor_id=me.executor_id))
    except BUS_ERRORS as exc:
        log.warning("executor.stopped not published: %s", exc)
    try:
        await nc.drain()
    except BUS_ERRORS as exc:
        log.warning("could not drain the connection: %s", exc)
        with contextlib.suppress(*BUS_ERRORS):
            await nc.close()
    log.info("executor stopped")
