"""`scriptbus up` with its executor SIGKILLed mid-run: the restarted executor leaves no process of the run."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import httpx

from scriptbus.embedded import free_port
from tests.helpers.api import start_run, wait_for_status
from tests.helpers.processes import DAEMONIZING_SCRIPT, descendants, kill_processes_under, processes_with
from tests.helpers.up import up
from tests.helpers.waiting import eventually


def executor_under(up_pid: int) -> int | None:
    for pid in descendants(up_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[-3:-1] == [b"scriptbus", b"executor"]:
            return pid
    return None


async def test_executor_sigkilled_under_up_leaves_no_process_of_its_run(tmp_path: Path, up_data_dir: Path) -> None:
    data_dir = up_data_dir
    port = free_port()
    marker = f"1000.{random.randrange(10**8):08d}"
    stack = up(data_dir, port, tmp_path / "up.log")
    try:
        stack.wait_for_log(r"scriptbus is up", timeout=120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            run = await start_run(client, DAEMONIZING_SCRIPT + "sleep $M", env={"M": marker})
            await wait_for_status(client, run["id"], "running")
            await eventually(lambda: len(processes_with(marker)) >= 4, 30, what="the run's processes")
            executor = executor_under(stack.pid)
            assert executor is not None
            os.kill(executor, signal.SIGKILL)

            await eventually(lambda: (e := executor_under(stack.pid)) is not None and e != executor, 60)
            await eventually(lambda: processes_with(marker) == [], 60, what="no process of the run left")
            lost = await wait_for_status(client, run["id"], "lost")
            assert "reaped after the executor restarted" in lost["reason"]
            assert not (data_dir / "runs" / run["id"]).exists()
            # And the new executor works.
            after = await start_run(client, "echo after")
            assert (await wait_for_status(client, after["id"], "succeeded"))["output"] == "after\n"
    finally:
        stack.close(grace=60)
        kill_processes_under(data_dir / "runs")
