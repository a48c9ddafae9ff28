"""cgroup v2 for runs: a cgroup per run, so a run's processes are found and killed however they
daemonized (as systemd and Nomad do). No controllers are enabled; the cgroup only groups.

Layout: `<cgroup2 mount><the executor's own cgroup>/scriptbus/<run_id>`. Run ids are unique, so every
executor on a machine can share the `scriptbus` directory."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

SUBTREE = "scriptbus"
# An empty run cgroup older than this is left over (a run's own is never empty while the run lives).
EMPTY_CGROUP_AGE_S = 60.0


def cgroup2_mount(mounts: str) -> Path | None:
    """Where cgroup2 is mounted, from the text of /proc/self/mounts (a hybrid host mounts it at
    /sys/fs/cgroup/unified, a pure v2 host at /sys/fs/cgroup)."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def own_cgroup(proc_cgroup: str) -> str:
    """This process's cgroup v2 path, from the text of /proc/self/cgroup (its `0::` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return "/"


def join_cgroup(procs_fd: int) -> None:
    # In a forked child: "0" moves the writing process into the cgroup whose cgroup.procs this is.
    os.write(procs_fd, b"0")


# POSIX sh as the first program of a spawn: it joins the cgroup with a builtin (no fork, so nothing can
# escape it), then execs the rest in the same process. Its stdin is the spawner's handshake pipe: the
# exec replaces it with /dev/null, so the spawner sees EOF only once the process is in the cgroup (or the
# join failed and sh exited).
_JOIN = 'echo 0 > "$0" || { echo "scriptbus: cannot join the cgroup of $0" >&2; exit 126; }; exec "$@" < /dev/null'
SH = "/bin/sh"


def join_argv(procs: Path, argv: list[str]) -> list[str]:
    """`argv` run inside the cgroup whose `cgroup.procs` is `procs`, as the same process, with no Python
    in the child (so CPython can vfork); see `_JOIN` for the stdin it wants."""
    return [SH, "-c", _JOIN, str(procs), *argv]


class RunCgroup:
    """One run's cgroup."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def procs(self) -> Path:
        """Its `cgroup.procs`: a process that writes "0" there joins it."""
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        """Every process in the cgroup (zombies leave it at once)."""
        try:
            text = (self.path / "cgroup.procs").read_text()
        except FileNotFoundError:
            return []
        return sorted(int(p) for p in text.split())

    def signal(self, sig: int) -> None:
        """`sig` to every process in the cgroup; SIGKILL through `cgroup.kill`, which also takes
        processes forked while we kill."""
        if sig == signal.SIGKILL:
            try:
                (self.path / "cgroup.kill").write_text("1")
                return
            except FileNotFoundError:
                if not self.path.exists():
                    return
                # A kernel before 5.14: no cgroup.kill; fall through to signalling each pid.
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def remove(self) -> bool:
        """Remove the (empty) cgroup; False when processes are still in it."""
        try:
            self.path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return False
            raise


class CgroupTree:
    """The executor's subtree where it makes a cgroup per run."""

    def __init__(self, base: Path) -> None:
        self.base = base

    @classmethod
    def create(cls) -> CgroupTree:
        """Find cgroup2 and make our subtree; OSError (logged by the caller) when this host or user
        cannot have one."""
        mount = cgroup2_mount(Path("/proc/self/mounts").read_text())
        if mount is None:
            raise OSError(errno.ENOENT, "no cgroup2 mount")
        own = own_cgroup(Path("/proc/self/cgroup").read_text())
        base = mount / own.lstrip("/") / SUBTREE
        base.mkdir(exist_ok=True)
        # Try the whole path once, the way each run will take it: a child joins a fresh cgroup before it execs.
        probe = RunCgroup(base / f"probe-{os.getpid()}")
        probe.path.mkdir(exist_ok=True)
        try:
            done = subprocess.run(
                join_argv(probe.procs, [SH, "-c", ":"]), stdin=subprocess.DEVNULL, capture_output=True, check=False
            )
            if done.returncode != 0:
                why = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
                raise OSError(errno.EACCES, f"cannot move a process into {probe.path}: {why}")
        finally:
            probe.remove()
        tree = cls(base)
        tree.sweep()
        return tree

    def sweep(self, older_than_s: float = EMPTY_CGROUP_AGE_S) -> None:
        """Remove empty run cgroups an executor that died left (the kernel refuses to remove one that
        holds a process); a young one may be a run of a live executor about to join it, so it stays."""
        now = time.time()
        for path in self.base.iterdir():
            with contextlib.suppress(OSError):
                if path.is_dir() and now - path.stat().st_mtime >= older_than_s:
                    RunCgroup(path).remove()

    def make(self, run_id: str) -> RunCgroup:
        path = self.base / run_id
        path.mkdir(exist_ok=True)
        return RunCgroup(path)
