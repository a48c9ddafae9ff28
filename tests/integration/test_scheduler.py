"""The scheduler against real NATS and PostgreSQL: silent executors are lost, and so are their runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from scriptbus.events import (
    ExecutorStopped,
    RunFinished,
    RunRequested,
    RunStarted,
    RunStatus,
    claims_bucket,
    ensure_queue,
    executor_claim,
    new_id,
    publish_event,
)
from tests.helpers.fleet import heartbeat
from tests.helpers.processes import ServiceProcess
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually


async def status_of(database_url: str, run_id: str, wanted: str, timeout: float = 20) -> tuple[str, str]:
    conn = await asyncpg.connect(database_url)
    try:

        async def in_wanted_status() -> tuple[str, str]:
            try:
                row = await conn.fetchrow("SELECT status, reason FROM runs WHERE id = $1", run_id)
            except asyncpg.UndefinedTableError:
                row = None  # the recorder has not applied its migrations yet
            assert row is not None and row["status"] == wanted, row
            return row["status"], row["reason"]

        return await eventually(in_wanted_status, timeout, interval=0.1, what=f"run {run_id} {wanted}")
    finally:
        await conn.close()


async def test_lost_executor_takes_its_running_and_claimed_runs_with_it(
    bus: Bus, database_url: str, start_service: Callable[..., ServiceProcess]
) -> None:
    _nc, js, s = bus
    start_service("recorder")
    start_service("scheduler")
    await ensure_queue(js, s, "default")
    running = RunRequested(run_id=new_id(), script="sleep 100")
    claimed = RunRequested(run_id=new_id(), script="sleep 100")
    bystander = RunRequested(run_id=new_id(), script="true")
    for run in (running, claimed, bystander):
        await publish_event(js, s, run)
    kv = await claims_bucket(js, s)
    await kv.create(running.run_id, executor_claim("e1"))
    await kv.create(claimed.run_id, executor_claim("e1"))  # claimed, then the executor died before starting it
    await publish_event(js, s, RunStarted(run_id=running.run_id, host="ghost", pid=4242, executor_id="e1"))
    await publish_event(js, s, heartbeat("ghost", "e1", [running.run_id]))
    # ...and then nothing more from ghost.
    for run in (running, claimed):
        status, reason = await status_of(database_url, run.run_id, "lost")
        assert "ghost" in reason
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT status FROM runs WHERE id = $1", bystander.run_id) == "queued"
    finally:
        await conn.close()


async def test_cleanly_stopped_executor_is_not_lost(
    bus: Bus, database_url: str, start_service: Callable[..., ServiceProcess]
) -> None:
    _nc, js, s = bus
    start_service("recorder")
    scheduler = start_service("scheduler")
    await publish_event(js, s, heartbeat("tidy", "e1"))
    await publish_event(js, s, ExecutorStopped(host="tidy", executor_id="e1"))
    await asyncio.sleep(4.5)  # longer than SCRIPTBUS_EXECUTOR_LOST_AFTER_S=3
    assert "executor tidy lost" not in scheduler.log()


async def test_two_live_instances_of_one_host_lose_only_the_dead_ones_runs(
    bus: Bus, database_url: str, start_service: Callable[..., ServiceProcess]
) -> None:
    _nc, js, s = bus
    start_service("recorder")
    scheduler = start_service("scheduler")
    await ensure_queue(js, s, "default")
    done, e1_run, e2_run = (RunRequested(run_id=new_id(), script="sleep 100") for _ in range(3))
    for run, instance in ((done, "e1"), (e1_run, "e1"), (e2_run, "e2")):
        await publish_event(js, s, run)
        await publish_event(js, s, RunStarted(run_id=run.run_id, host="twin", pid=4242, executor_id=instance))

    async def beat(instances: dict[str, list[str]], seconds: float) -> None:
        # Two live processes under one host name, each at its 0.5 s interval, for longer than lost_after.
        for _ in range(int(seconds / 0.5)):
            for instance, runs in instances.items():
                await publish_event(js, s, heartbeat("twin", instance, runs))
            await asyncio.sleep(0.5)

    await beat({"e1": [done.run_id, e1_run.run_id], "e2": [e2_run.run_id]}, 4.5)
    await publish_event(js, s, RunFinished(run_id=done.run_id, status=RunStatus.SUCCEEDED, exit_code=0, host="twin"))
    await status_of(database_url, done.run_id, "succeeded")
    await beat({"e1": [e1_run.run_id], "e2": [e2_run.run_id]}, 2)
    assert "marked lost" not in scheduler.log()

    # e1 dies; e2 goes on.
    await beat({"e2": [e2_run.run_id]}, 4.5)
    _, reason = await status_of(database_url, e1_run.run_id, "lost")
    assert "instance e1" in reason
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT status FROM runs WHERE id = $1", e2_run.run_id) == "running"
        assert await conn.fetchval("SELECT status FROM runs WHERE id = $1", done.run_id) == "succeeded"
    finally:
        await conn.close()
