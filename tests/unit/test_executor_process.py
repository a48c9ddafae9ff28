"""Process handling without NATS: clean environments, exit detection, whole-tree kills, statuses."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scriptbus.events import RunStatus
from scriptbus.executor import run_as
from scriptbus.executor.cgroups import GATE_ENV, CgroupTree, cgroup2_mount, moves_wait, own_cgroup, write_gate
from scriptbus.executor.containment import Containment, RunProcesses, terminate
from scriptbus.executor.process import Spawned, StopCause, clean_env, find_bash, outcome, spawn, wait_exit
from scriptbus.executor.procfs import ProcStat, descendants, read_stat
from tests.helpers.waiting import eventually


@functools.cache
def _tree() -> CgroupTree:
    """Our cgroup subtree, with its gate in a folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="scriptbus-gate-"))
    folder.chmod(0o711)  # as the executor's work dir: the run user reaches the gate by its path
    return CgroupTree.create(folder, run_as.resolve(None))


def _gate() -> Path | None:
    return _tree().gate


@pytest.fixture
async def run_processes() -> AsyncIterator[RunProcesses]:
    """A run's cgroup (the pytest process must not become a subreaper, so no fallback here)."""
    try:
        tree = _tree()
    except OSError as exc:
        pytest.skip(f"no cgroup v2 here: {exc}")
    procs = Containment(tree, None).for_run(f"unit-{os.getpid()}-{time.monotonic_ns()}")
    yield procs
    await terminate(procs, grace_s=0)
    await procs.close()


async def start(procs: RunProcesses, script: str, cwd: Path) -> Spawned:
    proc = await spawn(find_bash(), script, ["hi"], clean_env({}), cwd, procs.cgroup_procs(), gate=_gate())
    stat = read_stat(proc.pid)  # None when it already ended and was reaped
    procs.started(proc.pid, stat.start_time if stat is not None else 0)
    return proc


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


def test_clean_env_of_another_user_names_it_and_its_home() -> None:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/root", "USER": "root", "LOGNAME": "root"}
    env = clean_env({"FOO": "bar"}, base, user="scriptbus-run", home="/runs/r1")
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/runs/r1",
        "USER": "scriptbus-run",
        "LOGNAME": "scriptbus-run",
        "LANG": "C.UTF-8",
        "FOO": "bar",
    }


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


async def test_exit_is_seen_although_a_background_child_holds_the_pipes(
    tmp_path: Path, run_processes: RunProcesses
) -> None:
    proc = await start(run_processes, "setsid sleep 30 & echo $1", tmp_path)
    t0 = time.monotonic()
    assert await asyncio.wait_for(wait_exit(proc), 10) == 0
    assert time.monotonic() - t0 < 5
    assert len(run_processes.pids()) == 1  # the sleep, in its own session but still in the run's cgroup
    assert await terminate(run_processes, grace_s=5) == []
    assert run_processes.pids() == []
    assert proc.stdout is not None
    assert await proc.stdout.read() == b"hi\n"
    await proc.wait()


async def test_terminate_takes_every_descendant_after_the_grace(tmp_path: Path, run_processes: RunProcesses) -> None:
    script = "trap '' TERM; (setsid bash -c 'trap \"\" TERM; sleep 1000 & wait' &); sleep 1000 & wait"
    proc = await start(run_processes, script, tmp_path)
    # bash, the detached bash, two sleeps
    await eventually(lambda: len(run_processes.pids()) >= 4, 10, interval=0.01, what="the run's 4 processes")
    t0 = time.monotonic()
    assert await terminate(run_processes, grace_s=0.3) == []
    assert time.monotonic() - t0 >= 0.3  # TERM was ignored: KILL only after the grace
    assert await wait_exit(proc) == -9
    assert run_processes.pids() == []
    await proc.wait()


def test_cgroup2_is_found_on_hybrid_and_pure_hosts() -> None:
    hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
    hybrid += "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    assert str(cgroup2_mount(hybrid)) == "/sys/fs/cgroup/unified"
    assert str(cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")) == "/sys/fs/cgroup"
    assert cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n") is None
    assert own_cgroup("4:memory:/x\n0::/system.slice/scriptbus.service\n") == "/system.slice/scriptbus.service"
    assert own_cgroup("1:cpu:/\n") == "/"


def test_a_cgroup2_mount_without_favordynmods_gets_a_hint_naming_it() -> None:
    hint = moves_wait(
        "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
    )
    assert hint is not None and "mount -o remount,favordynmods /sys/fs/cgroup/unified" in hint
    assert moves_wait("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate,favordynmods 0 0\n") is None
    assert moves_wait("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n") is None  # no cgroup2: no cgroups at all


def test_descendants_follow_parent_links_only() -> None:
    def stat(pid: int, ppid: int) -> ProcStat:
        return ProcStat(pid, "S", ppid, pid, pid, 0)

    stats = {p.pid: p for p in (stat(1, 0), stat(10, 1), stat(11, 10), stat(12, 11), stat(20, 1))}
    assert descendants({10}, stats) == {10, 11, 12}
    assert descendants({99}, stats) == set()


async def test_script_runs_in_its_own_session_with_its_cwd(tmp_path: Path) -> None:
    proc = await spawn(find_bash(), "pwd; ps -o sid= -p $$", [], clean_env({}), tmp_path)
    assert proc.stdout is not None
    out = (await proc.stdout.read()).decode().split()
    assert out[0] == str(tmp_path)
    assert int(out[1]) == proc.pid
    assert os.getsid(0) != proc.pid
    await proc.wait()


async def test_sweep_removes_only_empty_left_over_cgroups(tmp_path: Path, run_processes: RunProcesses) -> None:
    # A subtree of its own, so the sweep cannot touch anything else on this machine.
    own = _tree().make(f"unit-sweep-{os.getpid()}-{time.monotonic_ns()}")
    tree = CgroupTree(own.path, _gate())
    empty = tree.make("left-over")
    busy = Containment(tree, None).for_run("live")
    proc = await start(busy, "sleep 1000", tmp_path)
    # Any age: cgroupfs stamps a directory with the kernel's clock, which time.time() may trail by a tick.
    tree.sweep(older_than_s=-1)
    assert not empty.path.exists()
    assert busy.pids() == [proc.pid]  # a live run's cgroup stays
    assert await terminate(busy, grace_s=0) == []
    await proc.wait()
    await busy.close()
    assert own.remove()


# The exec chain (setpriv drops, bash waits at the gate while we move it) and the preexec path (taken when a
# run sets a name that would change the chain) must give the script the same start.
SPAWN_PATHS = {"exec-chain": {}, "preexec": {"LOCPATH": "/nonexistent"}}
FIRST_LOOK = (
    # Builtins only, on bash's own pid: the state of the script's first process before anything forks.
    'while read -r cg; do [ "${cg#0::}" != "$cg" ] && echo "cgroup=${cg#0::}"; done < /proc/$$/cgroup; '
    'while read -r k v; do case $k in Uid:|Gid:|Groups:|CapPrm:|CapEff:|CapAmb:) echo "${k%:}=$v";; esac; '
    "done < /proc/$$/status; "
    'read -r -a st < /proc/$$/stat; echo "pid=$$ sid=${st[5]} pgrp=${st[4]}"; '
    'echo "stdin=$(readlink /proc/$$/fd/0)"; echo "env=$(env | cut -d= -f1 | sort | tr "\\n" " ")"; '
    'echo "shlvl=$SHLVL"; exit 7'
)


@pytest.mark.skipif(os.geteuid() != 0, reason="a run user needs a root executor")
@pytest.mark.parametrize("path", list(SPAWN_PATHS))
async def test_the_scripts_first_process_is_in_its_cgroup_as_the_run_user(
    tmp_path: Path, run_processes: RunProcesses, path: str
) -> None:
    who = run_as.resolve(None)
    assert who is not None
    env = clean_env(SPAWN_PATHS[path], user=who.name, home=str(tmp_path))
    procs = run_processes.cgroup_procs()
    assert procs is not None
    proc = await spawn(find_bash(), FIRST_LOOK, [], env, tmp_path, procs, who, _gate())
    assert proc.stdout is not None
    got = dict(line.split("=", 1) for line in (await proc.stdout.read()).decode().splitlines())
    assert await proc.wait() == 7  # bash's own exit status: nothing stayed as its parent
    mount = cgroup2_mount(Path("/proc/self/mounts").read_text())
    assert mount is not None
    assert got["cgroup"] == "/" + str(procs.parent.relative_to(mount))
    # real, effective, saved and filesystem ids all the user's, and no capability left
    assert got["Uid"].split() == [str(who.uid)] * 4
    assert got["Gid"].split() == [str(who.gid)] * 4
    assert got["Groups"].split() == [str(g) for g in who.groups]
    assert int(got["CapPrm"], 16) == int(got["CapEff"], 16) == int(got["CapAmb"], 16) == 0
    assert got["pid"] == f"{proc.pid} sid={proc.pid} pgrp={proc.pid}"
    assert got["stdin"] == "/dev/null"
    assert got["shlvl"] == "1"
    assert got["env"].split() == sorted({*env, "PWD", "SHLVL", "_"})  # the last three: bash's own


@pytest.mark.skipif(os.geteuid() != 0, reason="a run user needs a root executor")
async def test_spawn_returns_once_the_script_is_in_its_cgroup(tmp_path: Path, run_processes: RunProcesses) -> None:
    # So a stop that arrives while spawning, signalled through the cgroup, cannot miss the script.
    procs = run_processes.cgroup_procs()
    assert procs is not None
    for _ in range(20):
        proc = await spawn(
            find_bash(), "exec sleep 30", [], clean_env({}), tmp_path, procs, run_as.resolve(None), _gate()
        )
        assert proc.pid in run_processes.pids()
        run_processes.signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL


@pytest.mark.skipif(os.geteuid() != 0, reason="a run user needs a root executor")
def test_a_gate_the_run_user_cannot_read_is_found_at_the_start(tmp_path: Path) -> None:
    # bash goes on without a word when it cannot read BASH_ENV: the executor's first probe must see it.
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    try:
        _tree()
    except OSError as exc:
        pytest.skip(f"no cgroup v2 here: {exc}")
    with pytest.raises(OSError, match="did not pass the gate"):
        CgroupTree.create(hidden, run_as.resolve(None))


def test_bash_at_the_gate_runs_nothing_of_the_script_when_nobody_says_go(tmp_path: Path) -> None:
    # The executor died between the spawn and the move: the script must not run outside its cgroup.
    gate = write_gate(tmp_path)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [find_bash(), "-c", f"touch {tmp_path / 'ran'}"], stdin=read_end, env={"PATH": os.defpath, GATE_ENV: str(gate)}
    )
    os.close(read_end)
    os.close(write_end)
    assert proc.wait(timeout=30) == 126
    assert not (tmp_path / "ran").exists()
