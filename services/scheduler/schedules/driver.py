"""The scheduler's schedule driver: it follows the stream, and records each due tick once, then acts on it.

Like the workflow driver, state comes from the stream only: one ordered consumer reads schedule events
(`schedules.>`) and the endings of runs and workflow runs from the first message; nothing is decided
before the fold has reached the stream's position at start.

A tick fires exactly once, however many schedulers run and whenever one dies:
- its decision, `schedule.fired`, is appended with an expected last sequence on the schedule's subjects
  (`schedules.<id>.>`): a second scheduler deciding the same tick from the same state is refused (and its
  consumer then brings the first one's decision), and its event id is derived from the tick, so a publish
  retried after a lost ack is dropped as a duplicate;
- the run it makes has an id derived from the schedule, its generation and the tick, and is requested only
  after the decision is stored. A scheduler that dies in between leaves a decision without its request:
  every scheduler checks, a little after it sees another's decision (and at start for every unfinished
  one), that the request is in the stream, and publishes it if not: the same event id (dropped if already
  stored) and run id (an executor's claim on it makes it run once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
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
    Holders,
    claim_active_run,
    release_active_run,
)
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.codec import decode_event, encode_event, event_headers
from scriptbus.events.commands import CommandDefinition
from scriptbus.events.envelope import Event, utcnow
from scriptbus.events.publishing import publish_event, publish_request, subject_for
from scriptbus.events.runs import RunRequested
from scriptbus.events.schedules import (
    DEFAULT_LATE_AFTER_S,
    FiredOutcome,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleEvent,
    ScheduleFired,
    fired_event_id,
    request_event_id,
)
from scriptbus.events.streams import wfactive_bucket
from scriptbus.events.subjects import Subjects
from scriptbus.events.workflows import WfRunRequested, WorkflowDefined, workflow_id
from scriptbus.scheduler.following import RETRY_S, drive, follow, unfollow
from scriptbus.scheduler.schedules.state import ScheduleState, Tick

log = logging.getLogger(__name__)

EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
TICK_S = 0.5
BATCH = 2000
# How long after another scheduler's decision we look for its run request before making it ourselves.
REDO_AFTER_S = 3.0
# A workflow's active-run claim this old whose request is not in the stream was left by a dead starter.
STALE_CLAIM_S = 30.0


class StaleDecision(Exception):
    """The schedule has events the decision did not see."""


class ScheduleDriver:
    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        late_after_s: float = DEFAULT_LATE_AFTER_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._js = js
        self._s = subjects
        self._late_after_s = late_after_s
        self._clock = clock
        self._schedules: dict[str, ScheduleState] = {}
        self._owner: dict[str, str] = {}  # run or workflow run id -> schedule id
        self._inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues: set[str] = set()
        self._mine: set[str] = set()  # event ids of decisions this driver stored
        self._checks: dict[str, datetime] = {}  # run id -> when to make sure it was requested
        self._retry_at: dict[str, datetime] = {}  # schedule id -> not before (after a failure)
        self._mark = 0
        self._caught_up = False
        self._sub: JetStreamContext.PushSubscription | None = None
        self._active: KeyValue | None = None

    async def start(self) -> None:
        s = self._s
        self._active = await wfactive_bucket(self._js, s)
        filters = [f"{s.prefix}.schedules.>", s.all_run_finishes, s.wfrun_event("*", "finished")]
        self._mark, self._sub = await follow(self._js, s, filters, self._inbox)

        log.info("schedule driver: folding the stream up to sequence %d", self._mark)
        if self._mark == 0:
            self._became_caught_up(0)

    async def close(self) -> None:
        await unfollow(self._sub)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self._fold(await asyncio.wait_for(self._inbox.get(), self._sleep_s()))
            except TimeoutError:
                if not self._caught_up:
                    await self._check_caught_up()
            for _ in range(BATCH):
                if self._inbox.empty():
                    break
                self._fold(self._inbox.get_nowait())
            if self._caught_up:
                # Decided even while messages keep coming: a decision that missed one is refused, not wrong.
                await self._decide_due()

    def _sleep_s(self) -> float:
        if not self._caught_up:
            return TICK_S
        now = self._clock()
        times = [w for s in self._schedules.values() if (w := s.next_wakeup(now)) is not None]
        times += list(self._checks.values())
        if not times:
            return TICK_S
        return max(0.01, min(TICK_S, (min(times) - now).total_seconds()))

    # folding ----------------------------------------------------------------------------------------
    def _fold(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        tokens = msg.subject.split(".")
        if len(tokens) >= 4:
            if tokens[1] == "schedules":
                self._fold_schedule(tokens[2], seq, msg)
            elif tokens[1] in ("runs", "wfruns") and tokens[2] in self._owner:
                self._ended(tokens[2])
        if not self._caught_up and (seq >= self._mark or msg.metadata.num_pending == 0):
            self._became_caught_up(seq)

    async def _check_caught_up(self) -> None:
        assert self._sub is not None
        try:
            info = await self._sub.consumer_info()
        except BUS_ERRORS:
            return
        if info.num_pending == 0 and self._inbox.empty():
            self._became_caught_up(0)

    def _became_caught_up(self, seq: int) -> None:
        self._caught_up = True
        now = self._clock()
        # Decisions stored before we started may lack their effect (a scheduler died between the two).
        for state in self._schedules.values():
            for run_id in (state.active, state.waiting if state.active is None else None):
                if run_id is not None:
                    self._checks[run_id] = now
        log.info("schedule driver: caught up at sequence %d, %d schedule(s)", seq, len(self._schedules))

    def _fold_schedule(self, sched_id: str, seq: int, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable event on %s: %s", msg.subject, exc)
            return
        if not isinstance(event, ScheduleEvent) or event.schedule_id != sched_id:
            return
        if isinstance(event, ScheduleCreated):
            self._schedules[sched_id] = ScheduleState.created(event, seq)
            return
        state = self._schedules.get(sched_id)
        if state is None:
            return
        state.last_seq = max(state.last_seq, seq)
        if isinstance(event, ScheduleDeleted):
            self._forget(state)
            return
        state.apply(event)
        if isinstance(event, ScheduleFired) and event.generation == state.generation:
            made = event.run_id or event.wfrun_id
            if made is not None:
                self._owner[made] = sched_id
                if event.outcome is FiredOutcome.STARTED and event.event_id not in self._mine:
                    self._checks[made] = self._clock() + timedelta(seconds=REDO_AFTER_S)
        self._mine.discard(event.event_id)  # read back: no longer needed

    def _ended(self, run_id: str) -> None:
        sched_id = self._owner.pop(run_id)
        self._checks.pop(run_id, None)
        state = self._schedules.get(sched_id)
        if state is None:
            return
        starts = state.run_ended(run_id)
        if starts is not None:
            # The queued run's turn: every scheduler requests it (the same message, dropped when repeated).
            self._checks[starts] = self._clock()

    def _forget(self, state: ScheduleState) -> None:
        self._schedules.pop(state.schedule_id, None)
        for run_id in list(state.ticks):
            self._owner.pop(run_id, None)
            self._checks.pop(run_id, None)

    # deciding ---------------------------------------------------------------------------------------
    async def _decide_due(self) -> None:
        now = self._clock()
        for run_id, at in sorted(self._checks.items(), key=lambda kv: kv[1]):
            if at > now:
                continue
            sched_id = self._owner.get(run_id)
            state = self._schedules.get(sched_id) if sched_id else None
            try:
                if state is not None:
                    await self._ensure_requested(state, run_id)
                self._checks.pop(run_id, None)
            except BUS_ERRORS as exc:
                log.warning("schedule run %s: %s; trying again", run_id, exc)
                self._checks[run_id] = now + timedelta(seconds=RETRY_S)
        for sched_id, state in list(self._schedules.items()):
            if self._retry_at.get(sched_id, now) > now:
                continue
            try:
                for tick in state.due(now, self._late_after_s):
                    await self._fire(state, tick)
                self._retry_at.pop(sched_id, None)
            except StaleDecision:
                log.info("schedule %s: decision stale, deciding again", state.spec.name)
                self._retry_at[sched_id] = now + timedelta(seconds=0.2)
            except BUS_ERRORS as exc:
                log.warning("schedule %s: %s; trying again in %.0fs", state.spec.name, exc, RETRY_S)
                self._retry_at[sched_id] = now + timedelta(seconds=RETRY_S)
            except Exception:
                log.exception("schedule %s: firing failed; trying again in %.0fs", state.spec.name, RETRY_S)
                self._retry_at[sched_id] = now + timedelta(seconds=RETRY_S)

    async def _fire(self, state: ScheduleState, tick: Tick) -> None:
        outcome, run_id, reason = state.outcome(tick)
        claimed: str | None = None
        wf = state.spec.workflow
        if run_id is not None:
            problem = await self._target_problem(state)
            if problem is None and wf is not None and outcome is FiredOutcome.STARTED:
                problem = await self._claim_workflow(state, run_id)
                claimed = None if problem else run_id
            if problem is not None:
                outcome, run_id, reason = FiredOutcome.SKIPPED, None, problem
        event = ScheduleFired(
            event_id=fired_event_id(state.schedule_id, state.generation, tick.at),
            schedule_id=state.schedule_id,
            generation=state.generation,
            tick=tick.at,
            outcome=outcome,
            run_id=run_id if wf is None else None,
            wfrun_id=run_id if wf is not None else None,
            reason=reason,
            missed=tick.missed,
        )
        try:
            seq = await self._append(event, state.last_seq)
        except StaleDecision:
            if claimed is not None:
                await self._release_workflow(state, claimed)
            raise
        self._mine.add(event.event_id)
        state.last_seq = max(state.last_seq, seq)
        state.apply(event)
        if run_id is not None:
            self._owner[run_id] = state.schedule_id
        log.info("schedule %s: tick %s %s %s", state.spec.name, tick.at.isoformat(), outcome.value, reason)
        if outcome is FiredOutcome.STARTED and run_id is not None:
            try:
                await self._request(state, run_id)
            except BUS_ERRORS:
                self._checks[run_id] = self._clock() + timedelta(seconds=RETRY_S)
                raise

    async def _append(self, event: ScheduleFired, seen_seq: int) -> int:
        headers = {
            **event_headers(event),
            Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(seen_seq),
            EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: self._s.schedule_event(event.schedule_id, ">"),
        }
        try:
            ack = await self._js.publish(subject_for(self._s, event), encode_event(event), headers=headers, timeout=5)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise StaleDecision(f"schedule {event.schedule_id} has events after sequence {seen_seq}") from exc
            raise
        return ack.seq

    # acting -----------------------------------------------------------------------------------------
    async def _target_problem(self, state: ScheduleState) -> str | None:
        spec = state.spec
        if spec.command_id is not None:
            return None if await self._command(spec.command_id) else f"command {spec.command_id} no longer exists"
        assert spec.workflow is not None
        if await self._workflow(state) is None:
            return f"workflow {spec.workflow.project}/{spec.workflow.workflow} no longer exists"
        return None

    async def _last(self, subject: str) -> Event | None:
        try:
            msg = await self._js.get_last_msg(self._s.events_stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        return decode_event(msg.data or b"{}")

    async def _command(self, command_id: str) -> CommandDefinition | None:
        event = await self._last(self._s.command_event(command_id, "*"))
        return event if isinstance(event, CommandDefinition) else None

    async def _workflow(self, state: ScheduleState) -> WorkflowDefined | None:
        wf = state.spec.workflow
        assert wf is not None
        event = await self._last(self._s.workflow_event(workflow_id(wf.project, wf.workflow), "*"))
        return event if isinstance(event, WorkflowDefined) else None

    async def _exists(self, subject: str) -> bool:
        return await self._last(subject) is not None

    async def _ensure_requested(self, state: ScheduleState, run_id: str) -> None:
        if state.spec.workflow is not None:
            if await self._exists(self._s.wfrun_event(run_id, "requested")):
                return
            if await self._claim_workflow(state, run_id) is not None:
                self._checks[run_id] = self._clock() + timedelta(seconds=RETRY_S)
                return
        elif await self._exists(self._s.run_requested(run_id, "*")):
            return
        log.info("schedule %s: run %s requested again", state.spec.name, run_id)
        await self._request(state, run_id)

    async def _request(self, state: ScheduleState, run_id: str) -> None:
        spec = state.spec
        tick = state.ticks.get(run_id)
        what = f"schedule {spec.name}" + (f" tick {tick.isoformat()}" if tick else "")
        if spec.workflow is not None:
            wf = await self._workflow(state)
            if wf is None:
                return
            await publish_event(
                self._js,
                self._s,
                WfRunRequested(
                    event_id=request_event_id(run_id),
                    wfrun_id=run_id,
                    project=spec.workflow.project,
                    workflow=spec.workflow.workflow,
                    workflow_id=wf.workflow_id,
                    version=wf.version,
                    steps=wf.steps,
                    requested_by=state.by,
                    schedule_id=state.schedule_id,
                ),
            )
            return
        assert spec.command_id is not None
        command = await self._command(spec.command_id)
        if command is None:
            return
        request = RunRequested(
            event_id=request_event_id(run_id),
            run_id=run_id,
            script=command.script,
            args=list(spec.args),
            env={**command.env, **spec.env},
            description=what,
            timeout_s=command.timeout_s,
            stop_grace_s=command.stop_grace_s,
            pool=command.pool,
            command_id=command.command_id,
            secrets=list(dict.fromkeys([*command.secrets, *spec.secrets])),
            requested_by=state.by,
            schedule_id=state.schedule_id,
        )
        await publish_request(self._js, self._s, request, self._queues)

    async def _claim_workflow(self, state: ScheduleState, wfrun_id: str) -> str | None:
        """Take one of the workflow's active-run places (`max_active_runs`), as the gateway's start does;
        why not when it is full."""
        assert self._active is not None and state.spec.workflow is not None
        wf = await self._workflow(state)
        if wf is None:
            return "the workflow no longer exists"
        try:
            active = await claim_active_run(
                self._active, wf.workflow_id, wfrun_id, wf.settings.max_active_runs, self._still_active
            )
        except ActiveRunsBusy:
            return "the workflow is being started by another request"
        if active:
            return f"the workflow already has {len(active)} active run(s): {', '.join(active[:5])}"
        return None

    async def _release_workflow(self, state: ScheduleState, wfrun_id: str) -> None:
        assert self._active is not None and state.spec.workflow is not None
        wf = state.spec.workflow
        with contextlib.suppress(ActiveRunsBusy, *BUS_ERRORS):
            await release_active_run(self._active, workflow_id(wf.project, wf.workflow), wfrun_id)

    async def _still_active(self, holders: Holders, revision: int) -> Collection[str]:
        """Which holders of a workflow's active-run key still run, judged from the stream alone."""
        active: set[str] = set()
        for wfrun_id, claimed_at in holders.items():
            if await self._exists(self._s.wfrun_event(wfrun_id, "finished")):
                continue
            if await self._exists(self._s.wfrun_event(wfrun_id, "requested")):
                active.add(wfrun_id)
            elif claimed_at is None or time.time() - claimed_at < STALE_CLAIM_S:
                active.add(wfrun_id)
        return active


async def drive_schedules(
    js: JetStreamContext, subjects: Subjects, stop: asyncio.Event, late_after_s: float = DEFAULT_LATE_AFTER_S
) -> None:
    """Drive schedules until `stop` is set; a stream that cannot be read is followed again from scratch."""
    await drive(lambda: ScheduleDriver(js, subjects, late_after_s), "schedule driver", stop)


def start_schedule_driver(
    js: JetStreamContext, subjects: Subjects, stop: asyncio.Event, late_after_s: float
) -> asyncio.Task[None]:
    """The scheduler's schedule task; if it dies the scheduler stops, rather than look healthy and fire nothing."""

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("schedule driver died", exc_info=task.exception())
            stop.set()

    task = asyncio.create_task(drive_schedules(js, subjects, stop, late_after_s), name="schedule-driver")
    task.add_done_callback(ended)
    return task
