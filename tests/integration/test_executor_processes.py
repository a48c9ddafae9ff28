"""Every process of a run is accounted for: stop, timeout and the end of a run kill whatever it started,
however it daemonized, with cgroups and without; a restarted executor reaps what its predecessor left;
a run that ended elsewhere does not go on; one host name, one live executor."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scriptbus.events import (
    CANCELLED_CLAIM,
    OutputStream,
    RunFinished,
    RunStarted,
    RunStatus,
    RunStopRequested,
    claims_bucket,
    decode_event,
    publish_event,
)
from scriptbus.executor.journal import LOG_NAME, read_entries
from tests.helpers.executor import follow, request_run, start_executor, wait_run
from tests.helpers.processes import DAEMONIZING_SCRIPT, processes_with
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually

# The two ways an executor holds a run's processes; `subreaper` is what a host without cgroup v2 gets.
MODES = {"cgroup": {}, "subreaper": {"SCRIPTBUS_EXECUTOR_CGROUPS": "off"}}


def new_marker() -> str:
    """A `sleep` duration no other process on this machine has in its argv."""
    return f"1000.{random.randrange(10**8):08d}"


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def started_with_marker(js: Any, s: Any, run_id: str, marker: str, count: int) -> RunStarted:
    started: RunStarted = (await wait_run(js, s, run_id, until=RunStarted)).started
    await eventually(lambda: len(processes_with(marker)) >= count, 30, what=f"{count} processes of the run")
    return started


async def test_stop_leaves_no_process(bus: Bus, start_service: Any, mode: str) -> None:
    _nc, js, s = bus
    executor = await start_executor(start_service, env=MODES[mode])
    marker = new_marker()
    request = await request_run(js, s, DAEMONIZING_SCRIPT + "sleep $M", env={"M": marker}, stop_grace_s=5)
    await started_with_marker(js, s, request.run_id, marker, 4)

    await publish_event(js, s, RunStopRequested(run_id=request.run_id, reason="enough"))
    finished = (await wait_run(js, s, request.run_id)).finished
    assert finished.status == RunStatus.STOPPED
    assert finished.survivors == []
    assert processes_with(marker) == []
    assert f"runs contained by {mode}" in executor.log()


async def test_timeout_leaves_no_process(bus: Bus, start_service: Any, mode: str) -> None:
    _nc, js, s = bus
    await start_executor(start_service, env=MODES[mode])
    marker = new_marker()
    # The run waits for its processes itself, so the timeout surely finds them all there.
    script = DAEMONIZING_SCRIPT + 'until [ "$(pgrep -fc -- "$M")" -ge 3 ]; do sleep 0.05; done; sleep $M'
    request = await request_run(js, s, script, env={"M": marker}, timeout_s=2, stop_grace_s=5)
    finished = (await wait_run(js, s, request.run_id)).finished
    assert finished.status == RunStatus.TIMED_OUT
    assert finished.survivors == []
    assert processes_with(marker) == []


async def test_normal_end_leaves_no_process(bus: Bus, start_service: Any, mode: str) -> None:
    _nc, js, s = bus
    await start_executor(start_service, env=MODES[mode])
    marker = new_marker()
    script = DAEMONIZING_SCRIPT + 'until [ "$(pgrep -fc -- "$M")" -ge 3 ]; do sleep 0.05; done; echo done'
    request = await request_run(js, s, script, env={"M": marker})
    record = await wait_run(js, s, request.run_id)
    assert record.finished.status == RunStatus.SUCCEEDED
    assert record.output() == b"done\n"
    assert record.finished.survivors == []
    assert processes_with(marker) == []


async def test_a_process_outside_the_run_holding_its_output_does_not_hold_up_its_end(
    bus: Bus, start_service: Any, mode: str, exchange_dir: Path
) -> None:
    # Here the test itself is that process: it opens the script's stdout and stderr pipes through /proc
    # and keeps them open. The run ends all the same, with every byte it printed.
    _nc, js, s = bus
    executor = await start_executor(start_service, env=MODES[mode])
    script = (
        'echo before; echo $$ > "$X/pid"; for _ in $(seq 200); do [ -e "$X/held" ] && break; sleep 0.05; done; '
        "echo after; echo late >&2"
    )
    request = await request_run(js, s, script, env={"X": str(exchange_dir)})
    await eventually(lambda: (exchange_dir / "pid").exists(), 30, what="the script's pid")
    await eventually(lambda: (exchange_dir / "pid").read_text().strip().isdigit(), 5, what="the whole pid")
    pid = (exchange_dir / "pid").read_text().strip()
    with open(f"/proc/{pid}/fd/1", "wb") as held_out, open(f"/proc/{pid}/fd/2", "wb") as held_err:
        (exchange_dir / "held").touch()
        record = await wait_run(js, s, request.run_id, timeout=30)
        assert not held_out.closed and not held_err.closed

    assert record.finished.status == RunStatus.SUCCEEDED
    assert record.output(OutputStream.STDOUT) == b"before\nafter\n"
    assert record.output(OutputStream.STDERR) == b"late\n"
    assert record.finished.output_bytes == len(b"before\nafter\nlate\n")
    assert "a process outside the group holds its output open" in executor.log()


async def test_restarted_executor_reaps_what_its_predecessor_left(bus: Bus, start_service: Any, work_dir: Path) -> None:
    _nc, js, s = bus
    first = await start_executor(start_service, "--host", "phoenix")
    marker = new_marker()
    request = await request_run(js, s, DAEMONIZING_SCRIPT + "sleep $M", env={"M": marker}, host="phoenix")
    await started_with_marker(js, s, request.run_id, marker, 4)
    assert (work_dir / request.run_id).is_dir()

    first.kill()  # SIGKILL: nothing of the run is reported or stopped
    assert len(processes_with(marker)) >= 4, "the run's processes died with the executor"
    # Work waiting for the next instance: it must take it only after reaping.
    later = await request_run(js, s, "echo later", host="phoenix")
    sub = await follow(js, f"{s.prefix}.runs.*.*")
    await start_executor(start_service, "--host", "phoenix")

    assert processes_with(marker) == []
    finished = (await wait_run(js, s, request.run_id)).finished
    assert finished.status == RunStatus.LOST
    assert "reaped after the executor restarted" in finished.reason
    assert not (work_dir / request.run_id).exists()
    assert (await wait_run(js, s, later.run_id)).finished.status == RunStatus.SUCCEEDED
    # In the stream, the lost finish comes before the next run's start.
    order: list[tuple[str, str]] = []
    while not order or order[-1] != (later.run_id, "run.started"):
        event = decode_event((await sub.next_msg(timeout=10)).data)
        if isinstance(event, (RunStarted, RunFinished)):
            order.append((event.run_id, event.type))
    await sub.unsubscribe()
    assert (request.run_id, "run.finished") in order


async def test_restart_reaps_without_cgroups_too(bus: Bus, start_service: Any, work_dir: Path) -> None:
    _nc, js, s = bus
    env = MODES["subreaper"]
    first = await start_executor(start_service, "--host", "phoenix2", env=env)
    marker = new_marker()
    script = DAEMONIZING_SCRIPT + "sleep $M"
    request = await request_run(js, s, script, env={"M": marker}, host="phoenix2")
    await started_with_marker(js, s, request.run_id, marker, 4)
    # Without a cgroup, what daemonized is found again through the processes the executor journaled.
    journal = next((work_dir / ".journal").iterdir())
    await eventually(lambda: len(read_entries(journal)[request.run_id].members) >= 5, 30, what="members journaled")
    first.kill()
    assert len(processes_with(marker)) >= 4
    await start_executor(start_service, "--host", "phoenix2", env=env)
    assert processes_with(marker) == []
    assert (await wait_run(js, s, request.run_id)).finished.status == RunStatus.LOST
    assert not (work_dir / request.run_id).exists()


async def test_predecessor_runs_from_another_boot_or_a_recycled_pid_are_reported_not_killed(
    bus: Bus, start_service: Any, work_dir: Path
) -> None:
    _nc, js, s = bus
    bystander = subprocess.Popen(["sleep", "1000"])  # holds a pid an old entry names, with another start time
    try:
        stat = Path(f"/proc/{bystander.pid}/stat").read_text().rpartition(")")[2].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        rebooted, recycled = (
            await request_run(js, s, "true", pool="nobody"),
            await request_run(js, s, "true", pool="nobody"),
        )
        gone = work_dir / ".journal" / "0d1e0d1e-0000-4000-8000-000000000000"
        gone.mkdir(parents=True)
        (gone / "lock").touch()
        entries = {
            rebooted.run_id: {"boot_id": "another-boot", "pid": bystander.pid, "start_time": int(stat[19])},
            recycled.run_id: {"boot_id": boot, "pid": bystander.pid, "start_time": int(stat[19]) - 1},
        }
        lines = [json.dumps({"run_id": run_id, **entry}) for run_id, entry in entries.items()]
        (gone / LOG_NAME).write_text("\n".join(lines) + "\n")
        for run_id in entries:
            (work_dir / run_id).mkdir()

        await start_executor(start_service)
        finishes = {r.run_id: (await wait_run(js, s, r.run_id)).finished for r in (rebooted, recycled)}
        assert all(f.status == RunStatus.LOST for f in finishes.values())
        assert "rebooted" in finishes[rebooted.run_id].reason
        assert bystander.poll() is None, "a process with a recycled pid was killed"
        assert not gone.exists() and not any((work_dir / r).exists() for r in entries)
    finally:
        bystander.kill()
        bystander.wait()


async def test_stale_run_folders_are_removed_at_start(bus: Bus, start_service: Any, work_dir: Path) -> None:
    stale = work_dir / "0b5e5e55-dead-4bad-8bad-000000000000"
    (stale / "sub").mkdir(parents=True)
    await start_executor(start_service)
    assert not stale.exists()


async def test_run_that_ended_elsewhere_is_killed(bus: Bus, start_service: Any) -> None:
    _nc, js, s = bus
    executor = await start_executor(start_service, "--host", "sleeper")
    marker = new_marker()
    request = await request_run(js, s, DAEMONIZING_SCRIPT + "sleep $M", env={"M": marker}, host="sleeper")
    await started_with_marker(js, s, request.run_id, marker, 4)

    # Paused long enough to be declared lost: the scheduler ends its run.
    os.kill(executor.pid, signal.SIGSTOP)
    try:
        await publish_event(js, s, RunFinished(run_id=request.run_id, status=RunStatus.LOST, reason="executor lost"))
    finally:
        os.kill(executor.pid, signal.SIGCONT)
    await eventually(lambda: processes_with(marker) == [], 30, what="the run's processes gone")
    assert "already ended elsewhere" in executor.log()


async def test_second_live_executor_with_the_same_host_is_refused(bus: Bus, start_service: Any) -> None:
    _nc, js, s = bus
    await start_executor(start_service, "--host", "twin")
    second = start_service("executor", "--host", "twin")
    assert second.wait(60) != 0
    assert "another executor is running under host name 'twin'" in second.log()
    # The first one goes on serving the host.
    request = await request_run(js, s, "echo still here", host="twin")
    assert (await wait_run(js, s, request.run_id)).finished.status == RunStatus.SUCCEEDED


async def test_a_dead_instance_does_not_block_its_host_name(bus: Bus, start_service: Any, tmp_path: Path) -> None:
    _nc, js, s = bus
    first = await start_executor(start_service, "--host", "reborn")
    first.kill()
    # Elsewhere (no journal of the dead one to go by): its last heartbeat is fresh, but no more come.
    await start_executor(start_service, "--host", "reborn", env={"SCRIPTBUS_WORK_DIR": str(tmp_path / "elsewhere")})
    request = await request_run(js, s, "echo here", host="reborn")
    assert (await wait_run(js, s, request.run_id)).finished.status == RunStatus.SUCCEEDED


async def test_executor_named_cancelled_cannot_write_a_cancel(bus: Bus, start_service: Any) -> None:
    _nc, js, s = bus
    await start_executor(start_service, "--host", "cancelled")
    request = await request_run(js, s, "sleep 1000", host="cancelled")
    await wait_run(js, s, request.run_id, until=RunStarted)
    entry = await (await claims_bucket(js, s)).get(request.run_id)
    assert entry.value != CANCELLED_CLAIM
    await publish_event(js, s, RunStopRequested(run_id=request.run_id))
    assert (await wait_run(js, s, request.run_id)).finished.status == RunStatus.STOPPED
