"""One run on this host, from spawn to its `run.finished`: output, timeout, stops, leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from nats.js import JetStreamContext

from scriptbus.events import (
    OutputStream,
    RunFinished,
    RunRequested,
    RunStarted,
    RunStatus,
    Subjects,
    publish_event,
)
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.run_env import refusal
from scriptbus.events.runs import HOLD_FILE_ENV
from scriptbus.events.workflows import WfRunStepHeld, WfRunStepReleased
from scriptbus.executor.containment import Containment, RunProcesses, terminate
from scriptbus.executor.journal import Entry, Journal
from scriptbus.executor.masking import OutputMask
from scriptbus.executor.output import OutputPublisher, Pump
from scriptbus.executor.process import StopCause, clean_env, outcome, spawn, wait_exit
from scriptbus.executor.procfs import boot_id, read_stat
from scriptbus.executor.run_as import RunAs
from scriptbus.executor.run_files import Collected, FileMissing, collect_artifacts, place_files
from scriptbus.executor.secrets import SecretReader, SecretUnavailable

log = logging.getLogger(__name__)

# After the script exits and its processes are killed, how long a pipe may stay open (held by a process
# that survived) before we stop reading it.
PIPE_LINGER_S = 1.0
SHUTDOWN_REASON = "executor shutting down"
# The run's hold file, in its own folder: while it exists a stop waits (at most the request's hold_max_s).
HOLD_FILE_NAME = ".hold"
# How often a held stop looks whether the hold file is gone.
HOLD_POLL_S = 0.1
# What keeps a run from starting (it then fails, saying why), rather than the executor.
_START_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    subprocess.SubprocessError,
    SecretUnavailable,
    FileMissing,
    *BUS_ERRORS,
)


@dataclass(frozen=True)
class ExecutorIdentity:
    """What every run needs to know about the executor running it."""

    host: str
    executor_id: str
    bash: str
    work_dir: Path
    max_output_bytes: int
    default_stop_grace_s: float
    # How the runs' processes are held, and the record of them for the next instance.
    containment: Containment
    journal: Journal
    secrets: SecretReader
    # Who scripts run as; None: the executor's own user.
    run_as: RunAs | None = None
    # What one run's artifacts may upload in all.
    artifacts_max_bytes: int = 1024 * 1024 * 1024


class Execution:
    """Runs one claimed request and reports it: `run.started`, output chunks, then `run.finished`."""

    def __init__(
        self,
        request: RunRequested,
        me: ExecutorIdentity,
        js: JetStreamContext,
        subjects: Subjects,
        publisher: OutputPublisher,
    ) -> None:
        self.request = request
        self.run_id = request.run_id
        self._me = me
        self._js = js
        self._subjects = subjects
        self._publisher = publisher
        # The request's own grace when it states one, else this executor's default.
        self.grace_s = request.stop_grace_s if "stop_grace_s" in request.model_fields_set else me.default_stop_grace_s
        self._procs: RunProcesses | None = None
        self._exited = asyncio.Event()
        self._cause: StopCause | None = None
        self._reason = ""
        self._needed_kill = False
        self._stopper: asyncio.Task[None] | None = None
        self._hold_file: Path | None = None
        self._hold_cut = False  # a timeout or a shutdown does not wait for a hold
        # Set by the worker from the workflow run's `step_held` / `step_released` made through the API.
        self.api_held = False
        self._exit_task: asyncio.Task[int] | None = None

    @property
    def ended(self) -> bool:
        """The script has exited (what it left may still be being killed)."""
        return self._exited.is_set()

    def request_stop(self, cause: StopCause, reason: str, grace_s: float | None = None) -> None:
        """TERM every process of the run, KILL them after the grace period (the run's own unless
        `grace_s` says). The first stop wins; a stop after the script ended changes nothing."""
        if cause is not StopCause.STOP or grace_s is not None:
            self._hold_cut = True
        if self._cause is not None or self._exited.is_set():
            return
        self._cause = cause
        self._reason = reason
        if grace_s is not None:
            self.grace_s = grace_s
        if self._procs is not None:
            self._stopper = asyncio.create_task(self._stop_sequence(self._procs))

    async def _stop_sequence(self, procs: RunProcesses) -> None:
        if self._cause is StopCause.STOP and self._holding():
            await self._wait_for_hold()
            if self._exited.is_set():
                return
        log.info("run %s: SIGTERM to its processes (%s), grace %.1fs", self.run_id, self._reason, self.grace_s)
        procs.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._exited.wait(), timeout=self.grace_s)
        except TimeoutError:
            if self._exit_task is not None and self._exit_task.done():
                return  # it did end on our TERM, just as the grace ran out
            self._needed_kill = True
            log.info("run %s: still running after %.1fs, SIGKILL to all its processes", self.run_id, self.grace_s)
            procs.signal(signal.SIGKILL)

    def _holding(self) -> bool:
        """Seed 004's `waiting`: the script's hold file exists, or the step is held through the API."""
        return self.api_held or (self._hold_file is not None and self._hold_file.exists())

    async def _wait_for_hold(self) -> None:
        """Hold off a stop while the step is held, at most the request's hold_max_s."""
        limit = self.request.hold_max_s
        # A hold through the API is already an event of the workflow run; a hold file becomes one here.
        by_file = not self.api_held
        log.info("run %s: stop held (%s), waiting at most %.1fs", self.run_id, "file" if by_file else "API", limit)
        if by_file:
            await self._report_hold(True)
        deadline = asyncio.get_running_loop().time() + limit
        while self._holding() and not self._exited.is_set() and not self._hold_cut:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.info("run %s: hold not released within %.1fs, stopping anyway", self.run_id, limit)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exited.wait(), timeout=min(HOLD_POLL_S, left))
        if by_file:
            await self._report_hold(False)

    async def _report_hold(self, held: bool) -> None:
        """A workflow step's hold and release as events of its workflow run (where its status shows `waiting`)."""
        req = self.request
        if req.workflow_run_id is None or req.workflow_step is None:
            return
        who = f"hold file on {self._me.host}"
        event = (
            WfRunStepHeld(wfrun_id=req.workflow_run_id, step=req.workflow_step, attempt=req.attempt, held_by=who)
            if held
            else WfRunStepReleased(
                wfrun_id=req.workflow_run_id, step=req.workflow_step, attempt=req.attempt, released_by=who
            )
        )
        try:
            await publish_event(self._js, self._subjects, event)
        except BUS_ERRORS as exc:
            log.warning("run %s: could not report %s: %s", self.run_id, event.type, exc)

    async def run(self) -> RunFinished:
        """Spawn, stream, wait, clean up, and publish the finish (returned too)."""
        req = self.request
        me = self._me
        cwd = me.work_dir / self.run_id
        boot = boot_id()
        procs: RunProcesses | None = None
        # The gateway refuses these; a request published some other way must not get them through either.
        refused = refusal(req.env)
        if refused is not None:
            log.warning("run %s: refused: env %s", self.run_id, refused)
            return await self._finish(
                RunFinished(run_id=self.run_id, status=RunStatus.FAILED, host=me.host, reason=f"refused: env {refused}")
            )
        try:
            # Disk work (a cgroup's mkdir is slow) in one thread: the loop serves the other runs meanwhile.
            procs = await asyncio.to_thread(self._prepare, Entry(run_id=self.run_id, boot_id=boot), cwd)
            if me.run_as is None:
                env = clean_env(req.env)
            else:
                env = clean_env(req.env, user=me.run_as.name, home=str(cwd))
            if req.files:
                await place_files(self._js, self._subjects, req.files, cwd, me.run_as)
            # Last, so no `env` entry (the gateway refuses clashes) can stand in for a secret.
            secret_values = await me.secrets.environment(req.secrets)
            env.update(secret_values)
            if req.hold_max_s > 0:
                self._hold_file = cwd / HOLD_FILE_NAME
                env[HOLD_FILE_ENV] = str(self._hold_file)
            with me.containment.spawning():
                # From before the fork: the script may run for a while before spawn() returns.
                started = time.monotonic()
                proc = await spawn(
                    me.bash, req.script, req.args, env, cwd, procs.cgroup_procs(), me.run_as, me.containment.gate
                )
        except _START_ERRORS as exc:
            if procs is not None:
                await procs.close()
            await _remove_folder(cwd)
            log.warning("run %s: could not start: %s", self.run_id, exc)
            return await self._finish(
                RunFinished(
                    run_id=self.run_id,
                    status=RunStatus.FAILED,
                    host=me.host,
                    reason=f"could not start: {exc}",
                )
            )
        stat = read_stat(proc.pid)
        start_time = stat.start_time if stat is not None else 0
        procs.started(proc.pid, start_time)
        self._procs = procs
        # On the loop: an append costs less than the hop to a thread (journal.py).
        self._journal(Entry(self.run_id, boot, proc.pid, start_time, procs.cgroup_path))
        procs.on_new_members(
            lambda known: self._journal(
                Entry(self.run_id, boot, proc.pid, start_time, None, [[pid, t] for pid, t in known])
            )
        )
        exit_task = self._exit_task = asyncio.create_task(wait_exit(proc))
        assert proc.stdout is not None and proc.stderr is not None
        out = self._publisher.run_output(
            self._subjects.run_output(self.run_id), self.run_id, self._me.host, self._me.max_output_bytes
        )
        try:
            await publish_event(
                self._js,
                self._subjects,
                RunStarted(run_id=self.run_id, host=self._me.host, pid=proc.pid, executor_id=self._me.executor_id),
            )
        except BUS_ERRORS as exc:
            # The run is claimed and running; its finish will still say what happened.
            log.error("run %s: could not publish run.started: %s", self.run_id, exc)
        log.info("run %s: started pid %d", self.run_id, proc.pid)
        pumps = [
            Pump(
                pipe,
                stream,
                out,
                OutputMask(secret_values.values()) if secret_values else None,
                functools.partial(proc.close_pipe, index),
            )
            for index, (pipe, stream) in enumerate(
                ((proc.stdout, OutputStream.STDOUT), (proc.stderr, OutputStream.STDERR))
            )
        ]
        for pump in pumps:
            pump.start()

        timer = None
        if req.timeout_s is not None and req.timeout_s > 0:
            timer = asyncio.get_running_loop().call_later(
                req.timeout_s, self.request_stop, StopCause.TIMEOUT, f"timed out after {req.timeout_s:g}s"
            )
        if self._cause is not None and self._stopper is None:
            # A stop arrived while we were spawning.
            self._stopper = asyncio.create_task(self._stop_sequence(procs))

        returncode = await exit_task
        duration = time.monotonic() - started
        self._exited.set()
        if timer is not None:
            timer.cancel()
        if self._stopper is not None:
            await self._stopper
        # Whatever it left running dies with the run, however it daemonized (TERM, grace, KILL; at once
        # if the stop already needed KILL); whoever survives SIGKILL is reported.
        survivors = await terminate(procs, 0.0 if self._needed_kill else self.grace_s)
        await procs.close()
        if survivors:
            log.warning("run %s: processes survived SIGKILL: %s", self.run_id, survivors)
        await self._wait_pumps(pumps)
        await out.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=PIPE_LINGER_S)
        # Whatever the status: a failed run's logs are often what is wanted most.
        kept = await self._collect_artifacts(cwd)
        await _remove_folder(cwd)

        result = outcome(returncode, self._cause, self._needed_kill)
        return await self._finish(
            RunFinished(
                run_id=self.run_id,
                status=result.status,
                exit_code=result.exit_code,
                signal=result.signal,
                host=self._me.host,
                duration_s=round(duration, 6),
                output_bytes=out.offset,
                output_truncated=out.truncated,
                dropped_bytes=out.dropped_bytes,
                survivors=survivors,
                reason="; ".join(r for r in (self._reason, kept.note) if r),
                artifacts=kept.artifacts,
            )
        )

    async def _collect_artifacts(self, cwd: Path) -> Collected:
        if not self.request.artifacts:
            return Collected()
        try:
            return await collect_artifacts(
                self._js,
                self._subjects,
                self.run_id,
                self.request.artifacts,
                cwd,
                self._me.artifacts_max_bytes,
                self._me.run_as,
            )
        except BUS_ERRORS as exc:
            log.warning("run %s: artifacts not uploaded: %s", self.run_id, exc)
            return Collected(notes=[f"artifacts not uploaded: {exc or type(exc).__name__}"])

    def _prepare(self, entry: Entry, cwd: Path) -> RunProcesses:
        """Journal the run, then make its folder (so the next instance removes only folders no journal
        names; when scripts run as another user the folder, their HOME, is theirs alone), then what will
        hold its processes."""
        self._me.journal.record(entry)
        cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._me.run_as is not None:
            os.chown(cwd, self._me.run_as.uid, self._me.run_as.gid)
        return self._me.containment.for_run(self.run_id)

    def _journal(self, entry: Entry) -> None:
        try:
            self._me.journal.record(entry)
        except OSError as exc:
            log.error("run %s: not journaled (a restart could not reap it): %s", self.run_id, exc)

    async def _wait_pumps(self, pumps: list[Pump]) -> None:
        """Wait for the pumps to reach EOF. One whose pipe brought nothing for `PIPE_LINGER_S` after the
        run's processes are gone is held open by a process outside the group, and would wait forever:
        its pipe is closed (what was read still goes out). A busy or a late-scheduled pump is never cut."""
        pending = {p.task for p in pumps if p.task is not None}
        while pending:
            _, pending = await asyncio.wait(pending, timeout=PIPE_LINGER_S)
            for pump in pumps:
                if pump.task in pending and pump.idle_s() >= PIPE_LINGER_S and pump.abandon():
                    log.warning("run %s: a process outside the group holds its output open", self.run_id)

    async def _finish(self, finished: RunFinished) -> RunFinished:
        delay = 0.1
        while True:
            try:
                await publish_event(self._js, self._subjects, finished)
                break
            except BUS_ERRORS as exc:
                # The finish must land: without it the run looks alive until its executor is declared
                # lost. Only a shutdown that cannot reach NATS gives up (the run then ends as lost, and
                # its journal entry stays for the next instance to report).
                if self._publisher.gave_up:
                    log.error("run %s: run.finished (%s) not published: %s", self.run_id, finished.status, exc)
                    return finished
                log.warning("run %s: could not publish run.finished (%s); retrying", self.run_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._me.journal.forget(self.run_id)
        log.info(
            "run %s: finished %s exit_code=%s signal=%s output=%dB",
            self.run_id,
            finished.status.value,
            finished.exit_code,
            finished.signal,
            finished.output_bytes,
        )
        return finished


async def _remove_folder(cwd: Path) -> None:
    """Remove a run's folder: on the loop when the script left it empty (most do), else in a thread, where a
    tree of any size cannot hold up the other runs."""
    try:
        os.rmdir(cwd)
    except FileNotFoundError:
        pass
    except OSError:
        await asyncio.to_thread(shutil.rmtree, cwd, ignore_errors=True)
