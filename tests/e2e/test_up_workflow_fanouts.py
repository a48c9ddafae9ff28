"""A workflow step with `fan_out` through a secured `scriptbus up` (nkey users with least-privilege
permissions, API tokens): the scheduler, as itself, may request the step's fan-out, and the fan-out's
host runs and the next step run as the workflow's caller."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from scriptbus.embedded import free_port
from tests.helpers.processes import kill_processes_under
from tests.helpers.tokens import bearer
from tests.helpers.up import up
from tests.helpers.waiting import eventually
from tests.helpers.wfapi import put_workflow, start_wfrun, steps_of, wait_wfrun_ended

TOKEN = "e2e-" + uuid.uuid4().hex


async def test_a_fan_out_step_runs_under_secured_up(tmp_path: Path, up_data_dir: Path) -> None:
    port = free_port()
    stack = up(up_data_dir, port, tmp_path / "up.log", {"SCRIPTBUS_API_TOKENS": TOKEN})
    try:
        stack.wait_for_log(r"scriptbus is up(?s:.*)Ctrl-C", timeout=120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=bearer(TOKEN)) as client:

            async def one_online() -> bool:
                items = (await client.get("/api/v1/executors")).json()["items"]
                return any(e["state"] == "online" for e in items)

            await eventually(one_online, 60, interval=0.1, what="the executor online")
            tasks = [
                {"name": "all", "place": 1, "script": "echo fanned out", "fan_out": {"max_parallel": 1}},
                {"name": "after", "place": 2, "script": "echo after"},
            ]
            await put_workflow(client, "up", "fan", tasks)
            end = await wait_wfrun_ended(client, (await start_wfrun(client, "up", "fan"))["id"])
            assert end["status"] == "succeeded", end
            (host,) = steps_of(end)["all"]["fanout_hosts"]
            run = (await client.get(f"/api/v1/runs/{host['run_id']}")).json()
            assert run["output"] == "fanned out\n" and run["requested_by"] != ""
            fanout = (await client.get(steps_of(end)["all"]["fanout_url"])).json()
            assert fanout["status"] == "succeeded" and fanout["requested_by"] == run["requested_by"]
    finally:
        stack.close(grace=60)
        kill_processes_under(up_data_dir / "runs")
