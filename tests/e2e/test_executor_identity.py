"""Executor identity through the API: a host name cannot pose as a cancel, and belongs to one live executor."""

from __future__ import annotations

import asyncio

from tests.helpers.api import start_run, wait_for_status
from tests.helpers.stack import MakeStack


async def test_an_executor_named_cancelled_cannot_cancel_its_runs(make_stack: MakeStack) -> None:
    stack = await make_stack(executors=[["--host", "cancelled"]])
    run = await start_run(stack.client, "sleep 1000", host="cancelled")
    await wait_for_status(stack.client, run["id"], "running")
    stopping = await stack.client.post(f"/api/v1/runs/{run['id']}/stop")
    assert stopping.status_code == 202, stopping.text
    assert stopping.json()["status"] != "cancelled"
    assert (await wait_for_status(stack.client, run["id"], "stopped"))["status"] == "stopped"


async def test_a_second_live_executor_with_the_same_host_name_is_refused(make_stack: MakeStack) -> None:
    stack = await make_stack(executors=[["--host", "twin"]])
    await wait_for_status(stack.client, (await start_run(stack.client, "true", host="twin"))["id"], "succeeded")
    second = stack.add_executor("--host", "twin")
    assert await asyncio.to_thread(second.wait, 60) != 0
    assert "another executor is running under host name 'twin'" in second.log()
    run = await start_run(stack.client, "exit 0", host="twin")
    assert (await wait_for_status(stack.client, run["id"], "succeeded"))["status"] == "succeeded"
