"""The script's process: spawning it clean, seeing it exit, and what its ending means as a run status.
(Finding and killing everything it started is `containment.py`.)"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import os
import pwd
import shutil
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scriptbus.events import RunStatus
from scriptbus.executor.run_as import RunAs

# Size of one pipe read, and the StreamReader's buffer limit (it pauses the pipe past twice this).
READ_SIZE = 64 * 1024


def watch_children_by_pidfd() -> None:
    """Learn of our scripts' exits from pidfds on the running loop instead of Python 3.11's default, a
    thread blocked in waitpid per child: a thousand sleeping runs would be a thousand threads. (3.12
    picks pidfds by itself.) Without pidfd support (Linux < 5.3) the default stays."""
    if sys.version_info >= (3, 12):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(watcher)


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


async def spawn(
    bash: str,
    script: str,
    args: list[str],
    env: Mapping[str, str],
    cwd: Path,
    preexec: Callable[[], None] | None = None,
    run_as: RunAs | None = None,
) -> asyncio.subprocess.Process:
    """Start `bash -c script bash args...` as the leader of a new session (so of its own process group),
    stdin from /dev/null, stdout and stderr piped; `preexec` runs in the child before it execs, and
    before it becomes `run_as` (when given)."""
    switch: dict[str, Any] = {}
    if run_as is not None and preexec is not None:
        # CPython changes the user before it calls preexec_fn; joining a cgroup needs the executor's
        # rights (on kernels before 5.16, which check the writer's, not the opener's), so both go here.
        preexec = _then(preexec, run_as.drop)
    elif run_as is not None:
        # Done in C by _posixsubprocess: no Python runs in the child.
        switch = {"user": run_as.uid, "group": run_as.gid, "extra_groups": list(run_as.groups)}
    proc = await asyncio.create_subprocess_exec(
        bash,
        "-c",
        script,
        "bash",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(cwd),
        env=dict(env),
        start_new_session=True,
        preexec_fn=preexec,
        limit=READ_SIZE,
        **switch,
    )
    _widen_pipes(proc)
    return proc


def _then(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        first()
        second()

    return both


# Linux's F_SETPIPE_SZ. A 64 KiB pipe makes a fast writer and us trade many small reads; 1 MiB lets each
# wake-up take up to the transport's 256 KiB read, which is most of the executor's CPU on heavy output.
_F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024


def _widen_pipes(proc: asyncio.subprocess.Process) -> None:
    transport = proc._transport  # type: ignore[attr-defined]  # the public Process hides its transport
    for fd in (1, 2):
        pipe = transport.get_pipe_transport(fd)
        file = pipe.get_extra_info("pipe") if pipe is not None else None
        if file is None:
            continue
        try:
            fcntl.fcntl(file.fileno(), _F_SETPIPE_SZ, PIPE_SIZE)
        except ValueError:
            pass  # a quick script already closed it
        except OSError:
            pass  # over /proc/sys/fs/pipe-max-size for an unprivileged user: keep the default


async def wait_exit(proc: asyncio.subprocess.Process, poll_s: float = 0.05) -> int:
    """The exit status of `proc` as soon as it exits.

    `Process.wait()` in Python 3.11 also waits for the pipes to close, which a background child that
    still holds them can put off forever; a pidfd tells us of the exit itself."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        fd = -1  # already reaped, or no pidfd support: poll
    if fd >= 0:
        ready: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, exited)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        poll_s = 0.002  # the child watcher reaps it any moment now
    while proc.returncode is None:
        await asyncio.sleep(poll_s)
    return proc.returncode


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
