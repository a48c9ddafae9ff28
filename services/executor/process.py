"""The script's process: spawning it clean, seeing it exit, and what its ending means as a run status.
(Finding and killing everything it started is `containment.py`.)"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import functools
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scriptbus.events import RunStatus
from scriptbus.executor.cgroups import GATE_ENV, LOCALE_DEFERRED, join_cgroup, start_at_gate, write_gate
from scriptbus.executor.run_as import RunAs

# Size of one pipe read, and the StreamReader's buffer limit (it pauses the pipe past twice this).
READ_SIZE = 64 * 1024


class StopCause(enum.Enum):
    """Why we signalled a run; decides its status together with how it ended."""

    STOP = "stop"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


def clean_env(
    run_env: Mapping[str, str],
    base: Mapping[str, str] | None = None,
    user: str | None = None,
    home: str | None = None,
) -> dict[str, str]:
    """The environment a script gets: PATH, HOME, LANG, USER/LOGNAME (the executor's, or `user` and
    `home` when scripts run as another user), then the run's own variables. Nothing else of the
    executor's (its NATS URL, credentials, any SCRIPTBUS_*) leaks in."""
    src = os.environ if base is None else base
    env: dict[str, str] = {"PATH": src.get("PATH") or os.defpath}
    if home is None:
        home = src.get("HOME")
        if not home:
            with contextlib.suppress(KeyError):
                home = pwd.getpwuid(os.getuid()).pw_dir
    if home:
        env["HOME"] = home
    env["LANG"] = src.get("LANG") or "C.UTF-8"
    for name in ("USER", "LOGNAME"):
        if user is not None:
            env[name] = user
        elif src.get(name):
            env[name] = src[name]
    env.update(run_env)
    return env


def find_bash() -> str:
    """Absolute path of bash on the executor's PATH, so a run's own PATH cannot hide it."""
    path = shutil.which("bash")
    if path is None:
        raise RuntimeError("bash not found on PATH")
    return path


class Spawned:
    """A script's bash: its pid, its stdout and stderr as StreamReaders, and its exit (by pidfd).

    Started in a thread (`spawn`), not by asyncio's subprocess machinery: the fork and the wait until the
    child execs (long on a busy machine, and a plain fork on the preexec path) would otherwise stop
    the event loop, and Python 3.11's child watcher would add a thread per child."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        self._popen = popen
        self._pidfd = pidfd
        self.pid = popen.pid
        self.stdout = asyncio.StreamReader(limit=READ_SIZE)
        self.stderr = asyncio.StreamReader(limit=READ_SIZE)
        self._pipes: list[asyncio.ReadTransport] = []
        self._closed: list[asyncio.Future[None]] = []
        self._exit: asyncio.Future[int] | None = None

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        for reader, pipe in ((self.stdout, self._popen.stdout), (self.stderr, self._popen.stderr)):
            closed: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.connect_read_pipe(functools.partial(_PipeProtocol, reader, closed), pipe)
            self._pipes.append(transport)
            self._closed.append(closed)

    async def exited(self, poll_s: float = 0.05) -> int:
        """The exit status (negative: the signal) as soon as bash exits, however long the pipes stay
        open (a background child may hold them)."""
        if self._exit is None:
            self._exit = asyncio.get_running_loop().create_future()
            self._watch(poll_s)
        return await asyncio.shield(self._exit)

    def _watch(self, poll_s: float) -> None:
        loop = asyncio.get_running_loop()
        assert self._exit is not None
        exit_future = self._exit

        def done(code: int) -> None:
            if not exit_future.done():
                exit_future.set_result(code)

        if self._pidfd >= 0:
            fd = self._pidfd

            def readable() -> None:
                loop.remove_reader(fd)
                os.close(fd)
                self._pidfd = -1
                done(self._popen.wait())  # a zombie now: no blocking

            loop.add_reader(fd, readable)
            return

        def poll() -> None:  # no pidfd (Linux < 5.3)
            code = self._popen.poll()
            if code is None:
                loop.call_later(poll_s, poll)
            else:
                done(code)

        poll()

    def close_pipe(self, index: int) -> None:
        """Stop reading stdout (0) or stderr (1) (a process outside the run holds it open). What the pipe
        holds now is read first (at most its size), so only what is written later is not; the reader
        keeps all of it, then sees EOF."""
        transport = self._pipes[index]
        if transport.is_closing():
            return
        fd = transport.get_extra_info("pipe").fileno()  # non-blocking: asyncio made it so
        protocol = transport.get_protocol()
        for _ in range(PIPE_SIZE // _DRAIN_READ + 1):
            try:
                data = os.read(fd, _DRAIN_READ)
            except OSError:  # BlockingIOError: empty for now
                break
            if not data:
                break
            protocol.data_received(data)  # type: ignore[attr-defined]
        transport.close()

    async def wait(self) -> int:
        """The exit status, once both pipes are closed too."""
        code = await self.exited()
        await asyncio.gather(*self._closed)
        return code


class _PipeProtocol(asyncio.StreamReaderProtocol):
    def __init__(self, reader: asyncio.StreamReader, closed: asyncio.Future[None]) -> None:
        super().__init__(reader)
        self._pipe_closed = closed

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._pipe_closed.done():
            self._pipe_closed.set_result(None)


# Names that would change the exec chain's work: LOCPATH makes setpriv's setlocale (root, before bash) parse
# locale files from anywhere; posix mode makes bash skip BASH_ENV, so the cgroup gate. (The loader's own,
# LD_* and GLIBC_TUNABLES among them, and these bash ones are refused for every run anyway.) A run that
# sets one takes the preexec path, where its environment reaches bash alone.
_CHANGE_THE_CHAIN = frozenset(
    {"LOCPATH", "NLSPATH", "POSIXLY_CORRECT", "SHELLOPTS", "BASHOPTS", GATE_ENV, LOCALE_DEFERRED}
)


async def spawn(
    bash: str,
    script: str,
    args: list[str],
    env: Mapping[str, str],
    cwd: Path,
    cgroup_procs: Path | None = None,
    run_as: RunAs | None = None,
    gate: Path | None = None,
) -> Spawned:
    """Start `bash -c script bash args...` as the leader of a new session (so of its own process group),
    stdin from /dev/null, stdout and stderr piped, already in the cgroup whose `cgroup.procs` is given and
    running as `run_as` (when given) at its first instruction. Returns once it is in its cgroup; the
    fork and exec happen in a worker thread.

    Normally an exec chain (`setpriv` changes user and execs bash in the same process, so the pid is
    bash's and its exit status is exact; bash waits at the cgroup `gate` until we have moved it): no
    Python runs in the child, so CPython vforks instead of copying the executor's page tables. Otherwise
    a preexec_fn joins the cgroup and changes user."""
    argv = [bash, "-c", script, "bash", *args]
    chain = run_as.exec_argv(argv) if run_as is not None else argv
    gated = cgroup_procs is None or gate is not None
    if chain is not None and gated and not _CHANGE_THE_CHAIN.intersection(env):
        if cgroup_procs is not None and gate is not None:
            if not gate.exists():
                write_gate(gate.parent)  # bash would go on without a word, before it is in its cgroup
            env = {**env, GATE_ENV: str(gate)}
            if "LC_ALL" not in env:
                env.update({"LC_ALL": "C", LOCALE_DEFERRED: "1"})  # undone at the gate (cgroups.GATE)
        else:
            env = dict(env)
        start = functools.partial(_start, chain, env, cwd, join=cgroup_procs)
        popen, pidfd = await asyncio.to_thread(start)
    else:
        popen, pidfd = await _spawn_preexec(argv, env, cwd, cgroup_procs, run_as)
    proc = Spawned(popen, pidfd)
    try:
        await proc._connect()
    except BaseException:
        for index in range(len(proc._pipes)):
            proc.close_pipe(index)
        raise
    return proc


async def _spawn_preexec(
    argv: list[str], env: Mapping[str, str], cwd: Path, cgroup_procs: Path | None, run_as: RunAs | None
) -> tuple[subprocess.Popen[bytes], int]:
    """The same start with a full fork: the cgroup joined and the user changed by Python in the child."""
    # Opened before the fork: the child only writes to it.
    fd = os.open(cgroup_procs, os.O_WRONLY | os.O_CLOEXEC) if cgroup_procs is not None else -1
    preexec: Callable[[], None] | None = None
    switch: dict[str, Any] = {}
    if fd >= 0:
        # CPython changes the user before it calls preexec_fn; joining a cgroup needs the executor's
        # rights (on kernels before 5.16, which check the writer's, not the opener's), so both go here.
        preexec = functools.partial(join_cgroup, fd)
        if run_as is not None:
            preexec = _then(preexec, run_as.drop)
    elif run_as is not None:
        # Done in C by _posixsubprocess: no Python runs in the child.
        switch = {"user": run_as.uid, "group": run_as.gid, "extra_groups": list(run_as.groups)}
    try:
        return await asyncio.to_thread(_start, argv, dict(env), cwd, preexec, switch)
    finally:
        if fd >= 0:
            os.close(fd)


def _start(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    preexec: Callable[[], None] | None = None,
    switch: dict[str, Any] | None = None,
    join: Path | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    # `join`: the child waits at the cgroup gate (cgroups.py) until it is in the cgroup whose `cgroup.procs`
    # this is.
    how: dict[str, Any] = {
        "bufsize": 0,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "cwd": str(cwd),
        "env": env,
        "start_new_session": True,
        "preexec_fn": preexec,
        **(switch or {}),
    }
    if join is not None:
        popen = start_at_gate(argv, join, **how)
    else:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **how)
    for pipe in (popen.stdout, popen.stderr):
        assert pipe is not None
        _widen_pipe(pipe.fileno())
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        pidfd = -1  # no pidfd support: exits are polled
    return popen, pidfd


def _then(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        first()
        second()

    return both


# Linux's F_SETPIPE_SZ. A 64 KiB pipe makes a fast writer and us trade many small reads; 1 MiB lets each
# wake-up take up to the transport's 256 KiB read, which is most of the executor's CPU on heavy output.
_F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024
_DRAIN_READ = 64 * 1024


def _widen_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size for an unprivileged user: keep the default


async def wait_exit(proc: Spawned, poll_s: float = 0.05) -> int:
    """The exit status of `proc` as soon as it exits (not when its pipes close)."""
    return await proc.exited(poll_s)


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    exit_code: int | None
    signal: int | None


def outcome(returncode: int, cause: StopCause | None, needed_kill: bool) -> Outcome:
    """The run status for a process that ended with `returncode` (negative: killed by that signal),
    given why we signalled it, if we did, and whether our SIGKILL was needed."""
    exit_code = returncode if returncode >= 0 else None
    sig = -returncode if returncode < 0 else None
    if cause is StopCause.TIMEOUT:
        status = RunStatus.TIMED_OUT
    elif cause is not None:
        status = RunStatus.KILLED if needed_kill else RunStatus.STOPPED
    elif returncode == 0:
        status = RunStatus.SUCCEEDED
    elif returncode > 0:
        status = RunStatus.FAILED
    else:
        status = RunStatus.TERMINATED
    return Outcome(status, exit_code, sig)
