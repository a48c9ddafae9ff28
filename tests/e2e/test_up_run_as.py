"""Under `scriptbus up` started as root, a script runs as the unprivileged `scriptbus-run`: it reads neither
the environment of the executor nor that of `up`, and lists neither the runs dir nor the data dir."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from scriptbus.embedded import free_port
from tests.helpers.api import start_run, wait_for_status
from tests.helpers.processes import kill_processes_under
from tests.helpers.up import up

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scripts change user only under a root executor")

PROBE = (
    'echo "user=$(id -un)"; '
    'cat "/proc/$PPID/environ"; echo "executor_environ=$?"; '
    'cat "/proc/$UP/environ"; echo "up_environ=$?"; '
    'ls "$DATA/runs"; echo "list_runs=$?"; '
    'ls "$DATA"; echo "list_data=$?"; '
    'ls "$DATA/logs"; echo "list_logs=$?"; '
    'cat "$DATA/logs/executor.log"; echo "read_log=$?"'
)


def report(output: str) -> dict[str, str]:
    """`key=value` lines of stdout alone (in both streams interleaved, a stdout line can land inside a
    stderr line written in parts, as GNU `ls` writes its errors)."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


async def probe(tmp_path: Path, data_dir: Path) -> tuple[str, dict[str, str]]:
    port = free_port()
    stack = up(data_dir, port, tmp_path / "up.log")
    try:
        stack.wait_for_log(r"scriptbus is up", timeout=120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            run = await start_run(client, PROBE, env={"UP": str(stack.pid), "DATA": str(data_dir)})
            done = await wait_for_status(client, run["id"], {"succeeded", "failed"})
            stdout = (await client.get(f"/api/v1/runs/{run['id']}/output", params={"stream": "stdout"})).text
    finally:
        stack.close(grace=60)
        kill_processes_under(data_dir / "runs")
    output: str = done["output"]
    return output, report(stdout)


async def test_a_script_under_up_reads_no_service_environment(tmp_path: Path, up_data_dir: Path) -> None:
    output, got = await probe(tmp_path, up_data_dir)
    assert got["user"] == "scriptbus-run"
    assert "SCRIPTBUS_" not in output
    assert got["executor_environ"] != "0" and got["up_environ"] != "0"
    assert got["list_runs"] != "0", output


async def test_a_script_under_up_cannot_list_the_data_dir(tmp_path: Path, up_data_dir: Path) -> None:
    output, got = await probe(tmp_path, up_data_dir)
    assert got["list_data"] != "0", output
    assert got["list_logs"] != "0" and got["read_log"] != "0", output
