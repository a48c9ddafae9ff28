"""Services started as real processes, and the cleanup that leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol


class StartService(Protocol):
    """The `start_service` fixture: a service as a process, closed with the test."""

    def __call__(self, name: str, *args: str, env: dict[str, str] | None = None) -> ServiceProcess: ...


class ServiceProcess:
    """`python -m scriptbus <name>` in its own session, output to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log_file = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scriptbus", name, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until the log matches `pattern` (a regex); fail with the log if the process dies first."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            found = rx.search(self.log())
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before /{pattern}/:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no /{pattern}/ within {timeout}s:\n{self.log()}")

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def close(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        self.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        self._log_file.close()


def kill_processes_under(directory: Path) -> list[int]:
    """SIGKILL every process whose working directory is under `directory`: scripts of executors that
    were SIGKILLed themselves live in their own sessions and would otherwise outlive the test."""
    killed: list[int] = []
    root = str(directory.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


def processes_with(marker: str) -> list[int]:
    """Pids of live (not zombie) processes with `marker` in their argv, from /proc."""
    found: list[int] = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_bytes().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if needle in argv and state not in (b"Z", b"X"):
            found.append(int(entry.name))
    return sorted(found)


def group_alive(pgid: int) -> list[int]:
    """Pids (not zombies) whose process group is `pgid`, from /proc."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            alive.append(int(entry))
    return alive


def descendants(pid: int) -> set[int]:
    """Pids of every process below `pid` (children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


# Leaves processes every way a process group kill misses: a new session, a double fork into a new
# session, a child in its own group. Each has the value of $M in its argv (the script's own text does
# not, so its bash is not counted).
DAEMONIZING_SCRIPT = (
    "setsid sleep $M & "
    "(setsid bash -c 'sleep $M &' &) ; "
    "python3 -c 'import os,time; os.setpgid(0,0); time.sleep(1000)' $M & "
)
