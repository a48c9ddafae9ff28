"""The scheduler's workflow driver: it follows the stream, decides, records each decision, then acts on it.

State comes from the stream, never from PostgreSQL (which lags): one ordered consumer reads the events
stream from its first message, filtered to workflow-run events (`wfruns.>`) and run endings
(`runs.*.finished`). An ordered consumer, not a durable one: the driver keeps no position of its own
because its state is not stored anywhere but in memory, so after every start it must fold everything
again, in stream order. Stream order is what makes that fold simple: a step run's `run.finished` always
comes after the `wfrun.step_dispatched` that names the run (the dispatch is stored before the request),
so an ending whose run no unfinished workflow run owns can be dropped unread. Finished workflow runs are
forgotten as soon as their `wfrun.finished` is read, so memory holds only the unfinished ones.

Nothing is decided before the fold has reached the stream's position at start; then the effects of
decisions stored before a crash are re-done (a dispatched attempt without a run request gets its
request, an issued stop is sent again): re-doing is a no-op thanks to derived ids (JetStream's dedupe
and the executors' claim on the run id).

Each decision is appended with an expected last sequence on its workflow run's subjects
(`Nats-Expected-Last-Subject-Sequence` with `-Subject: <prefix>.wfruns.<id>.>`): a decision computed
before some other event of that run (a stop, a hold) was stored fails, and is computed again once the
consumer has brought that event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.kv import KeyValue
from pydantic import ValidationError

from scriptbus.events.active_runs import (
    WRONG_LAST_SEQUENCE,
    ActiveRunsBusy,
    release_active_run,
    release_active_runs,
)
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.claims import CANCEL_REASON, CANCELLED_CLAIM, cancel_event_id
from scriptbus.events.codec import decode_event, encode_event, event_headers
from scriptbus.events.envelope import Event, utcnow
from scriptbus.events.fanouts import FanoutRequested, FanoutStopRequested
from scriptbus.events.publishing import publish_event, publish_request, subject_for
from scriptbus.events.runs import RunFinished, RunStopRequested
from scriptbus.events.statuses import RunStatus
from scriptbus.events.streams import claims_bucket, command_names_bucket, wfactive_bucket
from scriptbus.events.subjects import Subjects
from scriptbus.events.workflows import (
    WfRunEvent,
    WfRunRequested,
    WfRunStepDispatched,
    WfRunStepStopIssued,
    decision_id,
    step_fanout_id,
)
from scriptbus.scheduler.fleet import Fleet
from scriptbus.scheduler.following import RETRY_S, drive, follow, unfollow
from scriptbus.scheduler.workflows.decide import decide
from scriptbus.scheduler.workflows.state import StepState, WorkflowRunState
from scriptbus.scheduler.workflows.step_fanouts import FleetNotHeard, attempt_event, fanout_step_request
from scriptbus.scheduler.workflows.step_runs import find_command, step_request

log = logging.getLogger(__name__)

EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
# The longest the loop sleeps without looking at the stop signal and the timers.
TICK_S = 0.5
# Trouble that passes: NATS, or a fleet not heard yet; the driver retries after RETRY_S.
_RETRIED: tuple[type[BaseException], ...] = (*BUS_ERRORS, FleetNotHeard)
# Messages folded between two rounds of decisions, so a burst never starves the timers.
BATCH = 2000


@dataclass
class _Run:
    state: WorkflowRunState
    # The stream sequence of the run's latest `wfruns.<id>.*` message we know of: the expected last
    # sequence of our next append.
    last_seq: int = 0
    wakeup: datetime | None = None
    # Effects of decisions stored earlier (before a crash, or whose effect failed) still to re-do.
    redo: bool = False


class StaleDecision(Exception):
    """The workflow run has events the decision did not see."""


class WorkflowDriver:
    """Drives every unfinished workflow run of one installation. `start`, then `run` until stopped."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        clock: Callable[[], datetime] = utcnow,
        fleet: Fleet | None = None,
    ) -> None:
        self._js = js
        self._s = subjects
        self._clock = clock
        # The live executors a `fan_out` step's attempt matches (the scheduler's view of heartbeats).
        self._fleet = fleet
        self._runs: dict[str, _Run] = {}
        self._owner: dict[str, str] = {}  # step run id -> workflow run id
        self._fanout_owner: dict[str, tuple[str, str]] = {}  # fan-out id -> (workflow run id, step run id)
        self._inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self._dirty: set[str] = set()
        self._queues: set[str] = set()
        # Until the fold reaches this stream sequence (the last matching message at start), nothing is decided.
        self._mark = 0
        self._caught_up = False
        self._folded_seq = 0
        # Workflow id -> runs that finished during the fold: their active-run keys may still be held.
        self._finished_in_fold: dict[str, set[str]] = {}
        self._sub: JetStreamContext.PushSubscription | None = None
        self._claims: KeyValue | None = None
        self._names: KeyValue | None = None
        self._active: KeyValue | None = None

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    def active_runs(self) -> list[str]:
        return sorted(self._runs)

    async def start(self) -> None:
        s = self._s
        self._claims = await claims_bucket(self._js, s)
        self._names = await command_names_bucket(self._js, s)
        self._active = await wfactive_bucket(self._js, s)
        # A fan-out step's attempt starts and ends with its fan-out (see step_fanouts.py).
        fanouts = [s.fanout_event("*", "host_dispatched"), s.fanout_event("*", "finished")]
        filters = [s.all_wfruns(), s.all_run_finishes, *fanouts]
        self._mark, self._sub = await follow(self._js, s, filters, self._inbox)
        self._caught_up = self._mark == 0

        log.info("workflow driver: folding the stream up to sequence %d", self._mark)

    async def close(self) -> None:
        await unfollow(self._sub)

    async def run(self, stop: asyncio.Event) -> None:
        """Fold, decide, record and act until `stop` is set."""
        while not stop.is_set():
            sleep_s = self._sleep_s()
            if self._inbox.empty() and sleep_s > 0:
                try:
                    self._fold(await asyncio.wait_for(self._inbox.get(), sleep_s))
                except TimeoutError:
                    if not self._caught_up:
                        await self._check_caught_up()
            for _ in range(BATCH):
                if self._inbox.empty():
                    break
                self._fold(self._inbox.get_nowait())
            if self._caught_up:
                await self._decide_due()

    def _sleep_s(self) -> float:
        """How long to wait for the next message: until the earliest timer, if we may decide at all."""
        if not self._caught_up:
            return TICK_S
        if self._dirty:
            return 0.0
        wakeups = [r.wakeup for r in self._runs.values() if r.wakeup is not None]
        if not wakeups:
            return TICK_S
        return max(0.0, min(TICK_S, (min(wakeups) - self._clock()).total_seconds()))

    # folding -----------------------------------------------------------------------------------
    def _fold(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        tokens = msg.subject.split(".")
        if len(tokens) >= 4:
            if tokens[1] == "runs":
                self._fold_run_event(tokens[2], msg)
            elif tokens[1] == "wfruns":
                self._fold_wfrun_event(tokens[2], seq, msg)
            elif tokens[1] == "fanouts":
                self._fold_fanout_event(tokens[2], msg)
        self._folded_seq = max(self._folded_seq, seq)
        if not self._caught_up and (seq >= self._mark or msg.metadata.num_pending == 0):
            self._caught_up = True
            self._became_caught_up(seq)

    async def _check_caught_up(self) -> None:
        """Caught up without reaching the mark: the messages up to it were purged (a deleted run's, or by
        retention) after we looked, so the consumer has nothing more to deliver."""
        assert self._sub is not None
        try:
            info = await self._sub.consumer_info()
        except BUS_ERRORS as exc:
            log.debug("consumer info: %s", exc)
            return
        delivered = info.delivered.stream_seq if info.delivered is not None else None
        if info.num_pending == 0 and self._inbox.empty() and (delivered or 0) <= self._folded_seq:
            self._caught_up = True
            self._became_caught_up(self._folded_seq)

    def _became_caught_up(self, seq: int) -> None:
        self._dirty.update(self._runs)
        for run in self._runs.values():
            run.redo = True
        log.info("workflow driver: caught up at sequence %d, %d unfinished workflow run(s)", seq, len(self._runs))

    def _decode(self, msg: Msg) -> Event | None:
        try:
            return decode_event(msg.data)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable event on %s: %s", msg.subject, exc)
            return None

    def _fold_run_event(self, run_id: str, msg: Msg) -> None:
        wfrun_id = self._owner.get(run_id)
        if wfrun_id is None:
            return  # not a step run, or its workflow run has finished
        event = self._decode(msg)
        run = self._runs.get(wfrun_id)
        if isinstance(event, RunFinished) and run is not None:
            run.state.apply(event)
            self._dirty.add(wfrun_id)

    def _fold_fanout_event(self, fanout_id: str, msg: Msg) -> None:
        owner = self._fanout_owner.get(fanout_id)
        if owner is None:
            return  # not a step's fan-out, or its workflow run has finished
        run = self._runs.get(owner[0])
        event = attempt_event(self._decode(msg), owner[1])
        if run is not None and event is not None:
            run.state.apply(event)
            self._dirty.add(owner[0])

    def _fold_wfrun_event(self, wfrun_id: str, seq: int, msg: Msg) -> None:
        run = self._runs.get(wfrun_id)
        if run is None:
            event = self._decode(msg)
            if not isinstance(event, WfRunRequested) or event.wfrun_id != wfrun_id:
                return  # a finished run's late event, or one whose request the stream no longer has
            run = self._runs[wfrun_id] = _Run(WorkflowRunState.requested(event), last_seq=seq)
            log.info("workflow run %s: %s/%s requested", wfrun_id, event.project, event.workflow)
        else:
            run.last_seq = max(run.last_seq, seq)
            event = self._decode(msg)
            if event is None:
                return
            if isinstance(event, WfRunStepDispatched | WfRunStepStopIssued) and event.event_id not in run.state.applied:
                # A decision we did not apply when we stored it (a previous scheduler's, or one whose
                # publish we thought failed): its effect may be missing.
                run.redo = True
            self._apply(run, event)
        self._dirty.add(wfrun_id)
        if run.state.finished and not self._caught_up:
            self._finished_in_fold.setdefault(run.state.workflow_id, set()).add(wfrun_id)
            self._forget(run)

    def _apply(self, run: _Run, event: Event) -> None:
        run.state.apply(event)
        if isinstance(event, WfRunStepDispatched) and event.wfrun_id == run.state.wfrun_id:
            self._owner[event.run_id] = event.wfrun_id
            step = run.state.steps.get(event.step)
            if step is not None and step.spec.fan_out is not None:
                fanout_id = step_fanout_id(event.wfrun_id, event.step, event.attempt)
                self._fanout_owner[fanout_id] = (event.wfrun_id, event.run_id)

    def _forget(self, run: _Run) -> None:
        state = run.state
        self._runs.pop(state.wfrun_id, None)
        self._dirty.discard(state.wfrun_id)
        for run_id, (step, attempt) in state.run_ids.items():
            self._owner.pop(run_id, None)
            self._fanout_owner.pop(step_fanout_id(state.wfrun_id, step, attempt), None)

    # deciding ------------------------------------------------------------------------------------
    async def _decide_due(self) -> None:
        if self._finished_in_fold:
            try:
                await self._release_folded()
            except BUS_ERRORS as exc:
                log.warning("workflow driver: could not free active-run keys yet: %s", exc)
        now = self._clock()
        due = set(self._dirty)
        due.update(i for i, r in self._runs.items() if r.wakeup is not None and r.wakeup <= now)
        self._dirty.clear()
        for wfrun_id in sorted(due):
            run = self._runs.get(wfrun_id)
            if run is None:
                continue
            try:
                await self._advance(run)
            except _RETRIED as exc:
                log.warning("workflow run %s: %s; trying again in %.0fs", wfrun_id, exc, RETRY_S)
                run.wakeup = self._clock() + timedelta(seconds=RETRY_S)
            except Exception:
                # One run's trouble must not stop the others.
                log.exception("workflow run %s: deciding failed; trying again in %.0fs", wfrun_id, RETRY_S)
                run.wakeup = self._clock() + timedelta(seconds=RETRY_S)

    async def _advance(self, run: _Run) -> None:
        state = run.state
        if run.redo:
            await self._redo_effects(run)
        if state.finished:
            await self._finish(run)
            return
        decision = decide(state, self._clock())
        run.wakeup = decision.next_wakeup
        for event in decision.events:
            try:
                await self._append(run, event)
            except StaleDecision:
                # The consumer brings what we missed, and with it the next decision; the wakeup is a backstop.
                log.info("workflow run %s: decision stale, deciding again", state.wfrun_id)
                run.wakeup = self._clock() + timedelta(seconds=RETRY_S)
                return
            self._apply(run, event)
            try:
                await self._act(state, event)
            except _RETRIED:
                run.redo = True
                raise
        if state.finished:
            await self._finish(run)

    async def _append(self, run: _Run, event: WfRunEvent) -> None:
        seq = await append_decision(self._js, self._s, event, run.last_seq)
        run.last_seq = max(run.last_seq, seq)
        log.info("workflow run %s: %s %s", run.state.wfrun_id, event.type, getattr(event, "step", ""))

    # acting --------------------------------------------------------------------------------------
    async def _act(self, state: WorkflowRunState, event: WfRunEvent) -> None:
        if isinstance(event, WfRunStepDispatched):
            await self._request(state, state.steps[event.step], event.attempt, event.run_id)
        elif isinstance(event, WfRunStepStopIssued):
            await self._stop(state, event.step, event.attempt, event.run_id, event.reason)

    async def _request(self, state: WorkflowRunState, step: StepState, attempt: int, run_id: str) -> None:
        assert self._names is not None
        spec = step.spec
        command = None
        if spec.function is not None:
            command = await find_command(self._js, self._s, self._names, spec.function)
        if spec.fan_out is not None:
            event = fanout_step_request(state, spec, attempt, run_id, command, self._fleet, time.monotonic())
            if isinstance(event, FanoutRequested):
                log.info("workflow run %s: step %s attempt %d fans out over %s", state.wfrun_id, spec.name,
                         attempt, ", ".join(event.hosts))  # fmt: skip
            else:
                log.info("workflow run %s: step %s attempt %d: %s", state.wfrun_id, spec.name, attempt, event.reason)
            await publish_event(self._js, self._s, event)
            return
        request = step_request(state, spec, attempt, run_id, command)
        await publish_request(self._js, self._s, request, self._queues)

    async def _fanout_requested(self, fanout_id: str) -> bool:
        try:
            await self._js.get_last_msg(self._s.events_stream, self._s.fanout_event(fanout_id, "requested"))
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def _stop(self, state: WorkflowRunState, step: str, attempt: int, run_id: str, reason: str) -> None:
        """Cancel the run if no executor holds it (and then none ever will), else ask its executor to stop it.
        A fan-out step's attempt: stop its fan-out (or, never requested, end the attempt as cancelled)."""
        assert self._claims is not None
        if state.steps[step].spec.fan_out is not None:
            await self._stop_fanout(state, step, attempt, run_id)
            return
        try:
            await self._claims.create(run_id, CANCELLED_CLAIM)
            cancelled = True
        except nats.js.errors.KeyWrongLastSequenceError:
            try:
                cancelled = (await self._claims.get(run_id)).value == CANCELLED_CLAIM
            except nats.js.errors.KeyNotFoundError:
                cancelled = False  # an executor handed it back just now; the stop request still reaches its next taker
        event: RunFinished | RunStopRequested
        if cancelled:
            event = RunFinished(
                event_id=cancel_event_id(run_id), run_id=run_id, status=RunStatus.CANCELLED, reason=CANCEL_REASON
            )
        else:
            event = RunStopRequested(
                event_id=decision_id(state.wfrun_id, "run.stop_requested", step, attempt), run_id=run_id, reason=reason
            )
        await publish_event(self._js, self._s, event)

    async def _stop_fanout(self, state: WorkflowRunState, step: str, attempt: int, run_id: str) -> None:
        fanout_id = step_fanout_id(state.wfrun_id, step, attempt)
        event: FanoutStopRequested | RunFinished
        if await self._fanout_requested(fanout_id):
            event = FanoutStopRequested(
                event_id=decision_id(state.wfrun_id, "fanout.stop_requested", step, attempt),
                fanout_id=fanout_id,
                requested_by=state.requested_by,
            )
        else:
            # Only this driver requests it, and it decides one thing at a time: it will not come later.
            event = RunFinished(
                event_id=cancel_event_id(run_id), run_id=run_id, status=RunStatus.CANCELLED, reason=CANCEL_REASON
            )
        await publish_event(self._js, self._s, event)

    async def _redo_effects(self, run: _Run) -> None:
        """Re-do what decisions stored earlier call for and may not have happened: an unfinished attempt's
        run request, or its stop."""
        state = run.state
        for step in state.steps.values():
            attempt = step.current
            if attempt is None or attempt.finished:
                continue
            if attempt.stop_issued:
                await self._stop(state, step.name, attempt.attempt, attempt.run_id, "workflow run stopped")
                continue
            if step.spec.fan_out is not None:
                if not await self._fanout_requested(step_fanout_id(state.wfrun_id, step.name, attempt.attempt)):
                    log.info("workflow run %s: step %s attempt %d: its fan-out requested again", state.wfrun_id,
                             step.name, attempt.attempt)  # fmt: skip
                    await self._request(state, step, attempt.attempt, attempt.run_id)
                continue
            try:
                await self._js.get_last_msg(self._s.events_stream, self._s.run_requested(attempt.run_id, "*"))
            except nats.js.errors.NotFoundError:
                log.info(
                    "workflow run %s: step %s attempt %d requested again", state.wfrun_id, step.name, attempt.attempt
                )
                await self._request(state, step, attempt.attempt, attempt.run_id)
        run.redo = False

    async def _finish(self, run: _Run) -> None:
        assert self._active is not None
        state = run.state
        try:
            await release_active_run(self._active, state.workflow_id, state.wfrun_id)
        except ActiveRunsBusy as exc:
            # The next start that finds the workflow full sees this run finished and takes its place.
            log.warning("workflow run %s: its active-run place is not released: %s", state.wfrun_id, exc)
        log.info("workflow run %s: finished %s", state.wfrun_id, state.status.value)
        self._forget(run)

    async def _release_folded(self) -> None:
        """Free the places in active-run keys that runs finished before our start may still hold (a crash
        between their `wfrun.finished` and the release)."""
        assert self._active is not None
        for workflow_id, finished in list(self._finished_in_fold.items()):
            await release_active_runs(self._active, workflow_id, finished)
            del self._finished_in_fold[workflow_id]


async def append_decision(js: JetStreamContext, s: Subjects, event: WfRunEvent, seen_seq: int) -> int:
    """Store a decision about a workflow run, only if `seen_seq` is the stream sequence of that run's latest
    event (the decision saw all of them); returns the decision's sequence. `StaleDecision` otherwise."""
    headers = {
        **event_headers(event),
        Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(seen_seq),
        EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: s.wfrun_all(event.wfrun_id),
    }
    try:
        ack = await js.publish(subject_for(s, event), encode_event(event), headers=headers, timeout=5)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            raise StaleDecision(f"workflow run {event.wfrun_id} has events after sequence {seen_seq}") from exc
        raise
    return ack.seq


async def drive_workflows(
    js: JetStreamContext, subjects: Subjects, stop: asyncio.Event, fleet: Fleet | None = None
) -> None:
    """Drive workflow runs until `stop` is set. While the stream cannot be read (NATS down, the stream not
    there yet) keep trying, each time from a fresh state: state comes from the stream, so starting late
    loses nothing, and one NATS outage must not take the scheduler down."""
    await drive(lambda: WorkflowDriver(js, subjects, fleet=fleet), "workflow driver", stop)


def start_workflow_driver(
    js: JetStreamContext, subjects: Subjects, stop: asyncio.Event, fleet: Fleet | None = None
) -> asyncio.Task[None]:
    """The scheduler's workflow task. If it dies, the whole scheduler stops (sets `stop`): a scheduler that
    watches executors but drives no workflow would look healthy while every workflow run hangs."""

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("workflow driver died", exc_info=task.exception())
            stop.set()

    task = asyncio.create_task(drive_workflows(js, subjects, stop, fleet), name="workflow-driver")
    task.add_done_callback(ended)
    return task
