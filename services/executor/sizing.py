"""How many runs this machine can hold at once: the default `max_concurrency`, sized from memory, open
files and processes (whichever is tightest), and the open-files limit raised to allow it.

A sleeping run costs the executor a few fds and a few KiB; what it costs the machine is its processes
(bash and what it starts). The figures below are deliberately generous per run, so the default leaves
room for the scripts actually doing something."""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

# Per run: what its processes may take resident (bash alone is ~3 MiB, most of it shared)...
MEMORY_PER_RUN = 8 * 1024 * 1024
# ... of this share of the machine's (or the container's) memory,
MEMORY_SHARE = 0.5
# the executor's fds for it (two pipes, two pidfds, a cgroup fd while it starts, one spare),
FDS_PER_RUN = 6
# the fds the executor needs besides its runs (NATS, journal, logs, libraries),
FDS_RESERVED = 256
# and processes (bash, what it starts, and their threads).
PIDS_PER_RUN = 8
# Never below (a tiny box still runs things) nor above (beyond this a second executor is the answer).
LEAST = 16
MOST = 10_000

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Limits:
    """The machine's limits that bound how many runs fit."""

    memory_bytes: int
    open_files: int
    pids: int

    def runs(self) -> int:
        by_memory = int(self.memory_bytes * MEMORY_SHARE) // MEMORY_PER_RUN
        by_files = (self.open_files - FDS_RESERVED) // FDS_PER_RUN
        by_pids = self.pids // PIDS_PER_RUN
        return max(LEAST, min(MOST, by_memory, by_files, by_pids))


def default_max_concurrency() -> int:
    """The default cap on runs at once for this machine."""
    return machine_limits().runs()


def machine_limits() -> Limits:
    """Memory (the machine's, or its cgroup's when lower), the hard open-files limit (raised to at start,
    see `raise_open_files`), and the pids any of the kernel, the cgroup or RLIMIT_NPROC allow."""
    memory = min(_mem_total(), _cgroup_limit("memory.max", "memory", "memory.limit_in_bytes"))
    _, hard_files = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = _UNLIMITED if hard_files == resource.RLIM_INFINITY else hard_files
    pids = min(
        _read_int(Path("/proc/sys/kernel/pid_max")),
        _read_int(Path("/proc/sys/kernel/threads-max")),
        _cgroup_limit("pids.max", "pids", "pids.max"),
    )
    if os.geteuid() != 0:  # root is not held to RLIMIT_NPROC
        _, nproc = resource.getrlimit(resource.RLIMIT_NPROC)
        if nproc != resource.RLIM_INFINITY:
            pids = min(pids, nproc)
    return Limits(memory_bytes=memory, open_files=files, pids=pids)


def raise_open_files() -> int:
    """Raise the soft open-files limit to the hard one (each run holds a few fds); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _mem_total() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return _UNLIMITED


def _cgroup_limit(v2_file: str, v1_controller: str, v1_file: str) -> int:
    """The limit of our own cgroup (v2, or the v1 controller's hierarchy); unlimited when unknown."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            rel = path.lstrip("/")
            if controllers == "":
                found = _read_int(_CGROUP_ROOT / rel / v2_file)
            elif v1_controller in controllers.split(","):
                found = _read_int(_CGROUP_ROOT / v1_controller / rel / v1_file)
            else:
                continue
            if found < _UNLIMITED:
                return found
    return _UNLIMITED


def _read_int(path: Path) -> int:
    """An integer from a kernel file; unlimited for `max`, a missing file or nonsense."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return _UNLIMITED
