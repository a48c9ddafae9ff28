"""Process handling without NATS: clean environments, exit detection, whole-group kills, statuses."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from scriptbus.events import RunStatus
from scriptbus.executor.process import (
    StopCause,
    clean_env,
    find_bash,
    group_members,
    kill_group,
    outcome,
    spawn,
    wait_exit,
)


def test_clean_env_keeps_only_the_basics_and_the_runs_own() -> None:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/x",
        "USER": "x",
        "SCRIPTBUS_NATS_URL": "nats://secret",
        "AWS_SECRET_ACCESS_KEY": "k",
        "LANG": "",
    }
    env = clean_env({"FOO": "bar", "PATH": "/opt/bin"}, base)
    assert env == {"PATH": "/opt/bin", "HOME": "/home/x", "USER": "x", "LANG": "C.UTF-8", "FOO": "bar"}


def test_outcome_maps_endings_to_statuses() -> None:
    assert outcome(0, None, False).status == RunStatus.SUCCEEDED
    failed = outcome(2, None, False)
    assert (failed.status, failed.exit_code, failed.signal) == (RunStatus.FAILED, 2, None)
    foreign = outcome(-9, None, False)
    assert (foreign.status, foreign.exit_code, foreign.signal) == (RunStatus.TERMINATED, None, 9)
    assert outcome(-15, StopCause.STOP, False).status == RunStatus.STOPPED
    # A script that traps TERM and exits on its own still counts as stopped by us.
    assert outcome(0, StopCause.STOP, False).status == RunStatus.STOPPED
    assert outcome(-9, StopCause.STOP, True).status == RunStatus.KILLED
    assert outcome(-9, StopCause.SHUTDOWN, True).status == RunStatus.KILLED
    assert outcome(-15, StopCause.TIMEOUT, False).status == RunStatus.TIMED_OUT
    assert outcome(-9, StopCause.TIMEOUT, True).status == RunStatus.TIMED_OUT


async def test_exit_is_seen_although_a_background_child_holds_the_pipes(tmp_path: Path) -> None:
    proc = await spawn(find_bash(), "sleep 30 & echo $1", ["hi"], clean_env({}), tmp_path)
    t0 = time.monotonic()
    assert await asyncio.wait_for(wait_exit(proc), 10) == 0
    assert time.monotonic() - t0 < 5
    assert len(group_members(proc.pid)) == 1  # the background sleep
    assert await kill_group(proc.pid) == []
    assert group_members(proc.pid) == []
    assert proc.stdout is not None
    assert await proc.stdout.read() == b"hi\n"
    await proc.wait()


async def test_kill_group_takes_children_and_grandchildren(tmp_path: Path) -> None:
    script = "bash -c 'sleep 1000 & wait' & sleep 1000 & wait"
    proc = await spawn(find_bash(), script, [], clean_env({}), tmp_path)
    deadline = time.monotonic() + 10
    while len(group_members(proc.pid)) < 4:  # bash, inner bash, two sleeps
        assert time.monotonic() < deadline, group_members(proc.pid)
        await asyncio.sleep(0.01)
    assert proc.pid in group_members(proc.pid)
    assert await kill_group(proc.pid) == []
    assert await wait_exit(proc) == -9
    assert group_members(proc.pid) == []
    await proc.wait()


async def test_script_runs_in_its_own_session_with_its_cwd(tmp_path: Path) -> None:
    proc = await spawn(find_bash(), "pwd; ps -o sid= -p $$", [], clean_env({}), tmp_path)
    assert proc.stdout is not None
    out = (await proc.stdout.read()).decode().split()
    assert out[0] == str(tmp_path)
    assert int(out[1]) == proc.pid
    assert os.getsid(0) != proc.pid
    await proc.wait()
