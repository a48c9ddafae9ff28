"""The default cap on runs at once: the tightest of memory, open files and pids, within bounds."""

from __future__ import annotations

import resource

from scriptbus.executor.sizing import LEAST, MOST, Limits, machine_limits, raise_open_files

GIB = 1024**3


def test_the_tightest_limit_decides() -> None:
    roomy = Limits(memory_bytes=24 * GIB, open_files=1 << 20, pids=4_194_304)
    assert roomy.runs() == 1536  # half of 24 GiB at 8 MiB a run
    assert Limits(memory_bytes=24 * GIB, open_files=1024, pids=4_194_304).runs() == (1024 - 256) // 6
    assert Limits(memory_bytes=24 * GIB, open_files=1 << 20, pids=4096).runs() == 512


def test_bounds() -> None:
    assert Limits(memory_bytes=256 * 1024 * 1024, open_files=300, pids=64).runs() == LEAST
    assert Limits(memory_bytes=1024 * GIB, open_files=1 << 30, pids=1 << 30).runs() == MOST


def test_this_machine_has_limits_and_the_open_files_limit_is_raised() -> None:
    limits = machine_limits()
    assert limits.memory_bytes > 0 and limits.open_files > 0 and limits.pids > 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        assert raise_open_files() == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
