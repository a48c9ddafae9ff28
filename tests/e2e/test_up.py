"""`scriptbus up`: the embedded default, from nothing to a finished run, stopped and found again."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

from scriptbus.embedded import free_port
from tests.helpers.api import start_run, wait_for_status, wait_until_ready
from tests.helpers.processes import ServiceProcess, descendants, kill_processes_under
from tests.helpers.up import up
from tests.helpers.waiting import eventually


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_up_runs_a_script_stops_cleanly_and_finds_it_again(tmp_path: Path, up_data_dir: Path) -> None:
    data_dir = up_data_dir
    port = free_port()
    first = up(data_dir, port, tmp_path / "up-1.log")
    try:
        first.wait_for_log(r"scriptbus is up", timeout=120)
        assert f"http://127.0.0.1:{port}" in first.log()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            run = await start_run(client, "echo hello from up")
            done = await wait_for_status(client, run["id"], "succeeded")
            assert done["output"] == "hello from up\n"
        children = descendants(first.pid)
        assert len(children) >= 6  # nats-server, postgres, four services
        first.terminate()
        assert first.wait(90) == 0, first.log()
        assert not [pid for pid in children if alive(pid)], "up left processes behind"
    finally:
        first.close()

    second = up(data_dir, port, tmp_path / "up-2.log")
    try:
        second.wait_for_log(r"scriptbus is up", timeout=120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await wait_until_ready(client)
            again = (await client.get(f"/api/v1/runs/{run['id']}")).json()
            assert again["status"] == "succeeded" and again["output"] == "hello from up\n"
    finally:
        second.close(grace=60)
        kill_processes_under(data_dir / "runs")


def _reaped(pid: int) -> bool:
    return _state(pid) == "gone"


def _logged(process: ServiceProcess, text: str) -> bool:
    return text in process.log()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _nats_server_pid(up_pid: int) -> int:
    for pid in descendants(up_pid):
        try:
            if b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                return pid
        except OSError:
            continue
    raise AssertionError("no nats-server under up")


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "data" / "postmaster.pid").read_text().splitlines()[0])


async def test_up_heals_after_nats_server_and_postgres_are_killed(tmp_path: Path, up_data_dir: Path) -> None:
    data_dir = up_data_dir
    port = free_port()
    supervisor = up(data_dir, port, tmp_path / "up.log")
    try:
        supervisor.wait_for_log(r"scriptbus is up", timeout=120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            finders: list[tuple[str, Callable[[], int]]] = [
                ("nats-server", lambda: _nats_server_pid(supervisor.pid)),
                ("postgres", lambda: _postmaster_pid(data_dir)),
            ]
            for what, find_pid in finders:
                victim = find_pid()
                os.kill(victim, signal.SIGKILL)
                # Reaped by `up` (no zombie left), reported, and back without anybody's help.
                gone = f"scriptbus: {what} exited"
                await eventually(partial(_reaped, victim), timeout=10, what=f"{what} {victim} reaped")
                await eventually(partial(_logged, supervisor, gone), timeout=10, what=f"{what} reported")
                await wait_until_ready(client, timeout=90)
                assert find_pid() != victim
                run = await start_run(client, f"echo after {what}")
                done = await wait_for_status(client, run["id"], "succeeded", timeout=60)
                assert done["output"] == f"after {what}\n"
            assert supervisor.proc.poll() is None, supervisor.log()
            # The services rode the outages out: none of them crashed and had to be restarted.
            for service in ("recorder", "scheduler", "executor", "gateway"):
                assert f"scriptbus: {service} exited" not in supervisor.log(), supervisor.log()
        supervisor.terminate()
        assert supervisor.wait(90) == 0, supervisor.log()
    finally:
        supervisor.close(grace=60)
        kill_processes_under(data_dir / "runs")
