"""What /proc says about processes: parent, group, session, state and start time, read in one place."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    # Field 22 of /proc/<pid>/stat: clock ticks after boot. With the boot id it names a process for good,
    # where a pid alone may have been recycled.
    start_time: int

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X")


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat line, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
    fields = raw.rpartition(b")")[2].split()
    if len(fields) < 20:
        return None
    return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))


def all_stats() -> dict[int, ProcStat]:
    """Every process visible in /proc, by pid."""
    out: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                out[stat.pid] = stat
    return out


def is_alive(pid: int, start_time: int) -> bool:
    """True when `pid` is still the process that started at `start_time`, and not a zombie."""
    stat = read_stat(pid)
    return stat is not None and stat.start_time == start_time and not stat.dead


@functools.cache
def boot_id() -> str:
    """This boot's id: pids and start times mean nothing across a reboot (read once: a process lives
    within one boot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def descendants(roots: set[int], stats: dict[int, ProcStat]) -> set[int]:
    """`roots` and every process below them by parent links, as far as `stats` shows."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found = {pid for pid in roots if pid in stats}
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
