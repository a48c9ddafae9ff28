"""Holding every process of a run, so stop, timeout and the end of a run kill all of them.

Two ways, chosen once at start-up:
- `cgroup`: each run in its own cgroup v2 (see `cgroups.py`); the script joins it before it execs, so
  nothing it forks can leave it.
- `subreaper` (no cgroup can be made: no cgroup2, not root, or SCRIPTBUS_EXECUTOR_CGROUPS=off): the
  executor is a child subreaper, so whatever daemonizes is re-parented to us instead of init; a run's
  processes are those below its bash, in its session or group, or re-parented to us after it started.
  An orphan that two concurrent runs could own is killed when the last of them ends, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from scriptbus.executor.cgroups import CgroupTree, RunCgroup
from scriptbus.executor.procfs import ProcStat, all_stats, descendants
from scriptbus.executor.run_as import RunAs

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
# How often the subreaper notes each run's processes (so a process re-parented to us later is still
# known as that run's) and reaps the zombies re-parented to us.
WATCH_INTERVAL_S = 0.5
# After SIGKILL, how long to keep looking before calling what is left survivors.
SETTLE_S = 1.0


class Mode(enum.StrEnum):
    CGROUP = "cgroup"
    SUBREAPER = "subreaper"


class RunProcesses(Protocol):
    """The processes of one run."""

    @property
    def cgroup_path(self) -> str | None: ...

    def cgroup_procs(self) -> Path | None:
        """The `cgroup.procs` the script's process joins before it execs bash (None: no cgroup)."""

    def started(self, pid: int, start_time: int) -> None:
        """The script's bash is running as `pid`."""

    def on_new_members(self, callback: Callable[[list[tuple[int, int]]], None]) -> None:
        """Call `callback` with (pid, start time) of every process known as the run's whenever more are
        found (only where membership is not kept by the kernel, so a successor can find them)."""

    def pids(self) -> list[int]:
        """Live processes of the run now."""

    def signal(self, sig: int) -> None:
        """`sig` to every process of the run."""

    async def close(self) -> None:
        """The run is over: forget it (and remove its cgroup)."""


class _CgroupRun:
    def __init__(self, cgroup: RunCgroup) -> None:
        self._cgroup = cgroup

    @property
    def cgroup_path(self) -> str | None:
        return str(self._cgroup.path)

    def cgroup_procs(self) -> Path:
        return self._cgroup.procs

    def started(self, pid: int, start_time: int) -> None:
        pass

    def on_new_members(self, callback: Callable[[list[tuple[int, int]]], None]) -> None:
        pass  # the cgroup holds them

    def pids(self) -> list[int]:
        return self._cgroup.pids()

    def signal(self, sig: int) -> None:
        self._cgroup.signal(sig)

    async def close(self) -> None:
        # A killed process leaves cgroup.procs at once but keeps the cgroup busy until it is reaped.
        for delay in (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0):
            await asyncio.sleep(delay)
            if self._cgroup.remove():
                return
        log.warning("cgroup %s still busy; left in place", self._cgroup.path)


class _TreeRun:
    def __init__(self, reaper: Subreaper) -> None:
        self._reaper = reaper
        self.pid: int | None = None
        self.start_time = 0
        # pid -> start time of every process seen as the run's: one re-parented to us stays the run's.
        self.known: dict[int, int] = {}
        self.new_members: Callable[[list[tuple[int, int]]], None] | None = None

    @property
    def cgroup_path(self) -> str | None:
        return None

    def cgroup_procs(self) -> None:
        return None

    def started(self, pid: int, start_time: int) -> None:
        self.pid = pid
        self.start_time = start_time
        self._reaper.runs.append(self)

    def on_new_members(self, callback: Callable[[list[tuple[int, int]]], None]) -> None:
        self.new_members = callback
        if self.known:  # found while the run's first journal entry was being written
            callback(sorted(self.known.items()))

    def pids(self) -> list[int]:
        return self._reaper.members(self, all_stats())

    def signal(self, sig: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def close(self) -> None:
        if self in self._reaper.runs:
            self._reaper.runs.remove(self)
        self._reaper.reap()


class Subreaper:
    """The fallback: the executor adopts its runs' orphans and finds each run's processes in /proc."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.me = os.getpid()
        self.runs: list[_TreeRun] = []
        # While a spawn is under way its bash may already be a zombie child we must not reap (asyncio does).
        self.spawning = 0

    def _spawned(self) -> set[int]:
        return {run.pid for run in self.runs if run.pid is not None}

    def members(self, run: _TreeRun, stats: dict[int, ProcStat]) -> list[int]:
        roots = {pid for pid, start in run.known.items() if pid in stats and stats[pid].start_time == start}
        if run.pid is not None:
            # A pid stays reserved while it names a live group or session, so these cannot be strangers.
            roots |= {s.pid for s in stats.values() if run.pid in (s.pgrp, s.session)}
            leader = stats.get(run.pid)
            if leader is not None and leader.start_time == run.start_time:
                roots.add(run.pid)
        roots |= self._orphans_of(run, stats)
        found = descendants(roots, stats) - {self.me}
        live = sorted(pid for pid in found if not stats[pid].dead)
        # The dead are forgotten, so a long run that forks a lot keeps a short list.
        run.known = {pid: t for pid, t in run.known.items() if pid in stats and stats[pid].start_time == t}
        grew = False
        for pid in live:
            if run.known.get(pid) != stats[pid].start_time:
                run.known[pid] = stats[pid].start_time
                grew = True
        if grew and run.new_members is not None:
            run.new_members(sorted(run.known.items()))
        return live

    def _orphans_of(self, run: _TreeRun, stats: dict[int, ProcStat]) -> set[int]:
        """Processes re-parented to us that belong to `run`: known as its own, or unknown to every other
        run and started after it while no other live run had started before them."""
        spawned = self._spawned()
        out = set()
        for s in stats.values():
            if s.ppid != self.me or s.pid in spawned or s.dead:
                continue
            if run.known.get(s.pid) == s.start_time:
                out.add(s.pid)
                continue
            others = [r for r in self.runs if r is not run]
            if any(r.known.get(s.pid) == s.start_time for r in others):
                continue
            if run.start_time <= s.start_time and not any(r.start_time <= s.start_time for r in others):
                out.add(s.pid)
        return out

    def reap(self) -> None:
        """Collect zombies re-parented to us (never the bash of a run: asyncio waits for those)."""
        if self.spawning:
            return
        spawned = self._spawned()
        for s in all_stats().values():
            if s.ppid == self.me and s.dead and s.pid not in spawned:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(s.pid, os.WNOHANG)

    async def watch(self, stop: asyncio.Event) -> None:
        """Note each run's processes and reap orphans, every WATCH_INTERVAL_S until `stop`."""
        while not stop.is_set():
            if self.runs:
                stats = all_stats()
                for run in list(self.runs):
                    self.members(run, stats)
            self.reap()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL_S)


class Containment:
    """The executor-wide choice of mode, and a `RunProcesses` per run."""

    def __init__(self, cgroups: CgroupTree | None, reaper: Subreaper | None) -> None:
        self.cgroups = cgroups
        self.reaper = reaper
        self.mode = Mode.CGROUP if cgroups is not None else Mode.SUBREAPER

    @property
    def gate(self) -> Path | None:
        """The file every run's bash sources first, to wait until it is in its cgroup (cgroups.py)."""
        return self.cgroups.gate if self.cgroups is not None else None

    @classmethod
    def create(cls, use_cgroups: bool, work_dir: Path, run_as: RunAs | None = None) -> Containment:
        if use_cgroups:
            try:
                tree = CgroupTree.create(work_dir, run_as)
                log.info("runs are contained in cgroups under %s", tree.base)
                if tree.moves_hint:
                    log.info("%s", tree.moves_hint)
                return cls(tree, None)
            except OSError as exc:
                log.warning("no cgroup for runs (%s); falling back to a child subreaper", exc)
        else:
            log.info("cgroups turned off by settings; using a child subreaper")
        reaper = Subreaper()
        log.info("runs are contained by the executor as child subreaper (pid %d)", reaper.me)
        return cls(None, reaper)

    def for_run(self, run_id: str) -> RunProcesses:
        if self.cgroups is not None:
            return _CgroupRun(self.cgroups.make(run_id))
        assert self.reaper is not None
        return _TreeRun(self.reaper)

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """Around a spawn: the subreaper reaps no zombie meanwhile (it could be the new bash)."""
        if self.reaper is not None:
            self.reaper.spawning += 1
        try:
            yield
        finally:
            if self.reaper is not None:
                self.reaper.spawning -= 1


async def _wait_empty(procs: RunProcesses, within_s: float, resend: int | None = None) -> list[int]:
    """Wait up to `within_s` for the run to have no process left (sending `resend` at each look);
    returns what is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    delay = 0.005
    while True:
        left = procs.pids()
        if not left or loop.time() >= deadline:
            return left
        if resend is not None:
            procs.signal(resend)
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.1)


async def terminate(procs: RunProcesses, grace_s: float, settle_s: float = SETTLE_S) -> list[int]:
    """TERM every process of the run, KILL what is left after `grace_s`; returns the pids still alive
    `settle_s` after the KILL (a process in uninterruptible sleep, say)."""
    if not procs.pids():
        # Most runs: bash exited and left nothing. Nothing can join an empty run (only its members fork
        # into it), so there is nothing to KILL either: a cgroup write or, without cgroups, a scan of /proc
        # saved per run.
        return []
    if grace_s > 0:
        procs.signal(signal.SIGTERM)
        await _wait_empty(procs, grace_s)
    procs.signal(signal.SIGKILL)
    return await _wait_empty(procs, settle_s, resend=signal.SIGKILL)


class _Leftover:
    """A predecessor's run without a cgroup: its bash (if still the same process), the processes the
    predecessor had journaled as the run's (if still the same), what is below them, and its session and
    group. What daemonized after the predecessor's last look cannot be told apart."""

    def __init__(self, pid: int, start_time: int, known: list[tuple[int, int]]) -> None:
        self._pid = pid
        self._start_time = start_time
        self._known = known

    @property
    def cgroup_path(self) -> str | None:
        return None

    def cgroup_procs(self) -> None:
        return None

    def started(self, pid: int, start_time: int) -> None:
        pass

    def on_new_members(self, callback: Callable[[list[tuple[int, int]]], None]) -> None:
        pass

    def pids(self) -> list[int]:
        stats = all_stats()
        roots = {s.pid for s in stats.values() if self._pid in (s.pgrp, s.session)}
        roots |= {pid for pid, start in self._known if pid in stats and stats[pid].start_time == start}
        leader = stats.get(self._pid)
        if leader is not None and leader.start_time == self._start_time:
            roots.add(self._pid)
        me = os.getpid()
        return sorted(pid for pid in descendants(roots, stats) if pid != me and not stats[pid].dead)

    def signal(self, sig: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def close(self) -> None:
        pass


def leftover(
    cgroup: str | None, pid: int | None, start_time: int | None, known: list[tuple[int, int]]
) -> RunProcesses | None:
    """The processes a previous executor instance left of one run on this boot, or None when there is
    nothing to look for."""
    if cgroup is not None and os.path.isdir(cgroup):
        return _CgroupRun(RunCgroup(Path(cgroup)))
    if pid is not None and start_time is not None:
        return _Leftover(pid, start_time, known)
    return None
