"""cgroup v2 for runs: a cgroup per run, so a run's processes are found and killed however they
daemonized (as systemd and Nomad do). No controllers are enabled; the cgroup only groups.

Layout: `<cgroup2 mount><the executor's own cgroup>/scriptbus/<run_id>`. Run ids are unique, so every
executor on a machine can share the `scriptbus` directory."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from scriptbus.executor.run_as import RunAs

SUBTREE = "scriptbus"
# An empty run cgroup older than this is left over (a run's own is never empty while the run lives).
EMPTY_CGROUP_AGE_S = 60.0


def _cgroup2_fields(mounts: str) -> list[str] | None:
    """The fields of cgroup2's line in the text of /proc/self/mounts (device, path, type, options, ...)."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup2":
            return fields
    return None


def cgroup2_mount(mounts: str) -> Path | None:
    """Where cgroup2 is mounted, from the text of /proc/self/mounts (a hybrid host mounts it at
    /sys/fs/cgroup/unified, a pure v2 host at /sys/fs/cgroup)."""
    fields = _cgroup2_fields(mounts)
    return Path(fields[1]) if fields is not None else None


def moves_wait(mounts: str) -> str | None:
    """The hint to log when cgroup2 (in the text of /proc/self/mounts) is mounted without `favordynmods`:
    then moving a process into a cgroup, once per run, waits for an RCU grace period unless another move
    just did (8-10 ms on an idle 2-core VM here, 0.4 ms with it): that wait is in every run's start on a
    quiet host. The option (Linux 6.0+) is the host's to set, for every cgroup, at a small cost to forks."""
    fields = _cgroup2_fields(mounts)
    if fields is None or "favordynmods" in fields[3].split(","):
        return None
    return (
        f"cgroup2 at {fields[1]} is mounted without favordynmods: each run waits about 10 ms to be moved "
        f"into its cgroup on a quiet host; `mount -o remount,favordynmods {fields[1]}` (Linux 6.0+) "
        "removes that wait"
    )


def own_cgroup(proc_cgroup: str) -> str:
    """This process's cgroup v2 path, from the text of /proc/self/cgroup (its `0::` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return "/"


def join_cgroup(procs_fd: int) -> None:
    # In a forked child: "0" moves the writing process into the cgroup whose cgroup.procs this is.
    os.write(procs_fd, b"0")


# The gate: a run's bash sources it (BASH_ENV names it) before the first line of the script, and waits there
# until the spawner has moved it into the run's cgroup and says "go" on its stdin, a pipe; EOF instead (the
# executor died first) ends bash before the script runs. Then the script gets /dev/null as stdin, and no
# bash it starts reads BASH_ENV. So bash itself is the first program of a spawn that needs no cgroup step
# (it was `sh`: an exec and 0.6 ms of CPU per run). `-t`: TMOUT, which a run may set, is read's default.
# `LC_ALL=C` with LOCALE_DEFERRED set is the spawner's, not the run's: it spares setpriv loading the locale
# (no locale archive here: a file per category, 0.3-0.4 ms of CPU per run), and the gate unsets it, so bash
# loads the run's LANG before the script's first line and the script never sees either name.
GATE = (
    "read -r -t 86400 __scriptbus_go || exit 126\nunset __scriptbus_go BASH_ENV\n"
    '[ -z "${__scriptbus_lc_all+x}" ] || unset LC_ALL __scriptbus_lc_all\nexec 0</dev/null\n'
)
GATE_NAME = ".cgroup-gate.bash"
GATE_ENV = "BASH_ENV"
LOCALE_DEFERRED = "__scriptbus_lc_all"
BASH = shutil.which("bash") or "/bin/bash"


def write_gate(directory: Path) -> Path:
    """The gate file in `directory` (the work dir: scripts may enter it, not list it), readable by all,
    written by this process alone."""
    path = directory / GATE_NAME
    tmp = directory / f".{GATE_NAME}.{os.getpid()}"
    tmp.write_text(GATE)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return path


def move(procs: Path, pid: int) -> None:
    """Move process `pid` into the cgroup whose `cgroup.procs` is `procs`."""
    fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


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

    def __init__(self, base: Path, gate: Path | None = None, moves_hint: str | None = None) -> None:
        self.base = base
        # The file each run's bash sources first (`GATE`); without it, runs join by a preexec_fn.
        self.gate = gate
        # What the operator could do about each run's wait to be moved into its cgroup (`moves_wait`).
        self.moves_hint = moves_hint

    @classmethod
    def create(cls, gate_dir: Path, run_as: RunAs | None = None) -> CgroupTree:
        """Find cgroup2, make our subtree and the gate (in `gate_dir`); OSError (logged by the caller) when
        this host or user cannot have them, or scripts (as `run_as`) cannot pass the gate."""
        mounts = Path("/proc/self/mounts").read_text()
        mount = cgroup2_mount(mounts)
        if mount is None:
            raise OSError(errno.ENOENT, "no cgroup2 mount")
        own = own_cgroup(Path("/proc/self/cgroup").read_text())
        base = mount / own.lstrip("/") / SUBTREE
        base.mkdir(exist_ok=True)
        gate = write_gate(gate_dir)
        # Try the whole path once, the way each run will take it: bash waits at the gate while it is moved.
        probe = RunCgroup(base / f"probe-{os.getpid()}")
        probe.path.mkdir(exist_ok=True)
        try:
            where, stdin = _through_the_gate(probe.procs, gate, run_as)
            if stdin != "/dev/null":
                # bash goes on without a word when it cannot read BASH_ENV: it did not wait at the gate.
                raise OSError(errno.EACCES, f"bash did not pass the gate {gate} (its stdin: {stdin!r})")
            if where != "/" + str(probe.path.relative_to(mount)):
                raise OSError(errno.EACCES, f"a process moved into {probe.path} reported itself in {where!r}")
        finally:
            probe.remove()
        tree = cls(base, gate, moves_wait(mounts))
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


def start_at_gate(argv: list[str], procs: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv`, a bash whose environment names the gate in BASH_ENV, with a pipe as its stdin; move
    it into the cgroup whose `cgroup.procs` is `procs`, then let it go. If it cannot be moved it is killed
    at the gate, where nothing of its script has run (SubprocessError)."""
    read_end, write_end = os.pipe()
    try:
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, stdin=read_end, **popen)
        os.close(read_end)
        read_end = -1
        try:
            move(procs, proc.pid)
        except OSError as exc:
            proc.kill()
            proc.communicate()
            raise subprocess.SubprocessError(f"cannot move the script into its cgroup ({procs.parent}): {exc}") from exc
        with contextlib.suppress(BrokenPipeError):
            # Gone already (setpriv refused, say): its exit status and stderr tell why.
            os.write(write_end, b"go\n")
        return proc
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


def _through_the_gate(procs: Path, gate: Path, run_as: RunAs | None) -> tuple[str, str]:
    """Start bash (as `run_as`) at the gate, move it into the cgroup of `procs`, let it go: the cgroup it
    then reports, and its stdin."""
    argv = [BASH, "-c", 'cat /proc/self/cgroup; readlink "/proc/$$/fd/0"']
    if run_as is not None:
        argv = run_as.exec_argv(argv) or argv
    env = {"PATH": os.defpath, GATE_ENV: str(gate)}
    try:
        proc = start_at_gate(argv, procs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        out, err = proc.communicate(timeout=30)
    except subprocess.SubprocessError as exc:
        raise OSError(errno.EACCES, str(exc)) from exc
    if proc.returncode != 0:
        raise OSError(errno.EACCES, f"bash at the gate: exit {proc.returncode}: {err.decode(errors='replace').strip()}")
    text = out.decode(errors="replace")
    return own_cgroup(text), text.rstrip("\n").rsplit("\n", 1)[-1]
