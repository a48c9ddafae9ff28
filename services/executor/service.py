"""Wiring the executor at start-up, and its orderly shutdown."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from scriptbus.events import ExecutorStopped, publish_event
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.lifecycle import close_bus, connect_bus_unless_stopped, settle_heap, unless_stopped
from scriptbus.events.secret_box import SecretKeyError
from scriptbus.executor.containment import Containment
from scriptbus.executor.duplicate import DuplicateExecutor, ensure_sole_instance
from scriptbus.executor.execution import ExecutorIdentity
from scriptbus.executor.heartbeat import Heartbeat
from scriptbus.executor.journal import Journal, predecessors
from scriptbus.executor.leftovers import reap_leftovers
from scriptbus.executor.process import find_bash
from scriptbus.executor.run_as import resolve
from scriptbus.executor.secrets import SecretReader, load_key
from scriptbus.executor.settings import ExecutorSettings
from scriptbus.executor.sizing import raise_open_files
from scriptbus.executor.work_dir import prepare
from scriptbus.executor.worker import Worker

log = logging.getLogger("scriptbus.executor")


async def serve(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    """Run the executor until `stop` is set, then stop pulling, stop and report every run, say
    `executor.stopped` and drain the connection."""
    try:
        run_as = resolve(settings.executor_run_as)
    except ValueError as exc:
        raise SystemExit(f"scriptbus executor: {exc}") from None
    open_files = raise_open_files()
    work_dir = Path(settings.work_dir)
    prepare(work_dir, run_as is not None)
    executor_id = str(uuid.uuid4())
    containment = Containment.create(settings.executor_cgroups, work_dir, run_as)
    try:
        secrets_key = load_key(settings.secrets_key_file)
    except SecretKeyError as exc:
        raise SystemExit(f"scriptbus executor: {exc}") from None
    nc, js, subjects = await connect_bus_unless_stopped(settings, f"scriptbus-executor-{settings.host}", stop)

    # Before any work: refuse to be a second live instance of this host, then reap what a previous
    # instance on this host left behind.
    gone = predecessors(work_dir)
    try:
        await ensure_sole_instance(nc, js, subjects, settings.host, {g.executor_id for g in gone})
    except DuplicateExecutor as exc:
        for g in gone:
            g.release()
        await close_bus(nc)
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
        secrets=SecretReader(js, subjects, secrets_key),
        run_as=run_as,
        artifacts_max_bytes=settings.artifacts_max_bytes,
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
    await unless_stopped(stop, worker.start())  # its requests wait out their timeouts while NATS is down
    beats_done = asyncio.Event()
    beats = asyncio.create_task(heartbeat.run(beats_done))
    watchers: list[asyncio.Task[None]] = []
    if containment.reaper is not None:
        watchers.append(asyncio.create_task(containment.reaper.watch(beats_done)))
    settle_heap()
    log.info(
        "executor ready: host=%s id=%s targets=%s max_concurrency=%d (open files %d) runs contained by %s, run as %s",
        me.host,
        me.executor_id,
        ",".join(settings.targets),
        settings.max_concurrency,
        open_files,
        containment.mode.value,
        run_as.name if run_as is not None else "the executor's user",
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
        if not nc.is_connected:  # publishing would wait for a server that may not come back
            raise ConnectionError("NATS is not connected")
        await publish_event(js, subjects, ExecutorStopped(host=me.host, executor_id=me.executor_id))
    except BUS_ERRORS as exc:
        log.warning("executor.stopped not published: %s", exc)
    await close_bus(nc)
    log.info("executor stopped")
