"""Wiring the executor at start-up, and its orderly shutdown."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from scriptbus.events import ExecutorStopped, publish_event
from scriptbus.events.lifecycle import close_bus, connect_bus_unless_stopped, unless_stopped
from scriptbus.executor.errors import BUS_ERRORS
from scriptbus.executor.execution import ExecutorIdentity
from scriptbus.executor.heartbeat import Heartbeat
from scriptbus.executor.process import find_bash
from scriptbus.executor.settings import ExecutorSettings
from scriptbus.executor.worker import Worker

log = logging.getLogger("scriptbus.executor")


async def serve(settings: ExecutorSettings, stop: asyncio.Event) -> None:
    """Run the executor until `stop` is set, then stop pulling, stop and report every run, say
    `executor.stopped` and drain the connection."""
    work_dir = Path(settings.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    me = ExecutorIdentity(
        host=settings.host,
        executor_id=str(uuid.uuid4()),
        bash=find_bash(),
        work_dir=work_dir,
        max_output_bytes=settings.max_output_bytes,
        default_stop_grace_s=settings.default_stop_grace_s,
    )
    nc, js, subjects = await connect_bus_unless_stopped(settings, f"scriptbus-executor-{settings.host}", stop)
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
    log.info(
        "executor ready: host=%s id=%s targets=%s max_concurrency=%d",
        me.host,
        me.executor_id,
        ",".join(settings.targets),
        settings.max_concurrency,
    )

    await stop.wait()
    log.info("executor shutting down: %d runs to stop", len(worker.executions))
    await worker.stop_pulling()
    await heartbeat.beat()  # tells the fleet we are draining
    await worker.stop_runs()
    beats_done.set()
    await beats
    try:
        if not nc.is_connected:  # publishing would wait for a server that may not come back
            raise ConnectionError("NATS is not connected")
        await publish_event(js, subjects, ExecutorStopped(host=me.host, executor_id=me.executor_id))
    except BUS_ERRORS as exc:
        log.warning("executor.stopped not published: %s", exc)
    await close_bus(nc)
    log.info("executor stopped")
