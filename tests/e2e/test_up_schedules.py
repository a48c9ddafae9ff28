"""Schedules through a secured `scriptbus up`: the gateway may store schedule definitions, the scheduler
fires them and requests their runs, the reader watches ticks live, and an executor may not fire one."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from nats.aio.msg import Msg

from scriptbus.events.codec import encode_event
from scriptbus.events.schedules import FiredOutcome, ScheduleFired
from tests.e2e.test_up_secured import Connect, Up, as_role, s, secured  # noqa: F401 (fixtures)
from tests.helpers.api import wait_for_status
from tests.helpers.waiting import eventually


async def test_a_schedule_fires_under_up_with_each_role_doing_only_its_part(secured: Up, as_role: Connect) -> None:  # noqa: F811
    reader, _ = await as_role("reader")
    ticks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_tick(msg: Msg) -> None:
        await ticks.put(json.loads(msg.data))

    await reader.subscribe(s.schedule_event("*", "fired"), cb=on_tick)
    await reader.flush()
    async with secured.client() as client:
        response = await client.post("/api/v1/commands", json={"name": "sched-hi", "script": "echo scheduled"})
        assert response.status_code == 201, response.text
        made = await client.post(
            "/api/v1/schedules", json={"name": "e2e", "every_s": 1, "command_id": "sched-hi", "overlap": "allow"}
        )
        assert made.status_code == 201, made.text
        schedule = made.json()
        tick = await asyncio.wait_for(ticks.get(), 30)  # the reader sees it live
        assert tick["schedule_id"] == schedule["id"] and tick["outcome"] == FiredOutcome.STARTED
        run = await wait_for_status(client, tick["run_id"], "succeeded")
        assert run["output"] == "scheduled\n" and run["schedule_id"] == schedule["id"]

        # An executor's credential cannot fire a tick of its own.
        executor, errors = await as_role("executor")
        forged = ScheduleFired(
            schedule_id=schedule["id"], generation=1, tick=run["created_at"], outcome=FiredOutcome.STARTED,
            run_id=str(uuid.uuid4()),
        )  # fmt: skip
        await executor.publish(s.schedule_event(schedule["id"], "fired"), encode_event(forged))
        await executor.flush()
        await eventually(
            lambda: any("permissions violation for publish" in e.lower() for e in errors), 10, what=f"{errors}"
        )
        assert (await client.delete("/api/v1/schedules/e2e")).status_code == 204
