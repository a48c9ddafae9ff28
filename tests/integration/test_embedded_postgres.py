"""`up`'s PostgreSQL after a power cut: the lock file left behind names a pid that is no postgres any more."""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from scriptbus.embedded import PG_SYSTEM_USER, EmbeddedPostgres, ServerError


def as_postgres_user() -> dict[str, int]:
    """PostgreSQL takes a pid in its lock file for a live postmaster only when that pid is its user's (for
    another user's it cannot tell, and goes on); run as root, `up` runs it as PG_SYSTEM_USER."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(PG_SYSTEM_USER)
    return {"user": user.pw_uid, "group": user.pw_gid}


def live_stranger() -> subprocess.Popen[bytes]:
    """A pid a reboot gave to some other program of the same user."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(["sleep", "600"], **as_postgres_user())  # type: ignore[call-overload]
    return proc


def zombie() -> subprocess.Popen[bytes]:
    """A postmaster SIGKILLed with the rest, not yet reaped: exited, never waited for (yet)."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(["true"], **as_postgres_user())  # type: ignore[call-overload]
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # it has exited; WNOWAIT leaves it unreaped
    return proc


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: PostgreSQL runs as its own user when we are root, and a pytest starting
    # meanwhile makes its base temp folder private again (0700), so a start there could not reach its data.
    with tempfile.TemporaryDirectory(prefix="scriptbus-test-") as tmp:
        yield Path(tmp) / "pg" / "data"


@pytest.mark.parametrize("holder", [live_stranger, zombie], ids=["pid-reused", "zombie"])
async def test_a_lock_file_left_by_a_power_cut_does_not_stop_the_next_start(
    data_dir: Path, holder: Callable[[], subprocess.Popen[bytes]]
) -> None:
    first = EmbeddedPostgres(data_dir)
    first.start()
    left = (data_dir / "postmaster.pid").read_text().splitlines()
    first.stop()
    other = holder()
    try:
        # What the power cut left: the lock file of a postmaster that never shut down, its pid now other's.
        (data_dir / "postmaster.pid").write_text("\n".join([str(other.pid), *left[1:]]) + "\n")
        second = EmbeddedPostgres(data_dir, port=first.port)
        try:
            second.start()
            conn = await asyncpg.connect(second.url("postgres"))
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
        finally:
            second.stop()
        assert other.poll() is None or other.returncode == 0  # the stranger was left alone
    finally:
        other.kill()
        other.wait()


def test_a_postgres_still_running_on_the_data_dir_is_not_started_twice(data_dir: Path) -> None:
    first = EmbeddedPostgres(data_dir)
    first.start()
    try:
        with pytest.raises(ServerError, match="already runs"):
            EmbeddedPostgres(data_dir).start()
        assert first.running()
    finally:
        first.stop()
