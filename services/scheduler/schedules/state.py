"""One schedule's state, folded from its events and the endings of the runs it made; and what a tick does.

Pure: no NATS. The driver feeds it the stream in order and asks `plan(now)` which ticks are due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scriptbus.events.schedules import (
    CatchUp,
    FiredOutcome,
    Overlap,
    ScheduleCreated,
    ScheduleEvent,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSpec,
    ScheduleUpdated,
    tick_run_id,
)


@dataclass(frozen=True)
class Tick:
    """A due tick and how it is handled: `missed` older ticks passed over; `skip_reason` set for a missed
    tick that `catch_up: none` records without running."""

    at: datetime
    missed: int = 0
    skip_reason: str = ""


@dataclass
class ScheduleState:
    schedule_id: str
    generation: int  # the stream sequence of its `created`
    spec: ScheduleSpec
    by: str  # who made (or last changed) it: its runs are requested on their behalf
    since: datetime  # ticks up to this time are not due (its creation, last change or resume)
    last_seq: int
    paused: bool = False
    last_tick: datetime | None = None
    active: str | None = None  # the run (or workflow run) started last, while it runs
    waiting: str | None = None  # overlap `queue`: the run that starts when `active` ends
    ticks: dict[str, datetime] = field(default_factory=dict)  # run id -> its tick
    # (spec, base) -> the first tick after base: asked every round, computed once per change.
    _next: tuple[ScheduleSpec, datetime, datetime] | None = field(default=None, repr=False)

    @classmethod
    def created(cls, event: ScheduleCreated, seq: int) -> ScheduleState:
        return cls(event.schedule_id, seq, event.spec, event.created_by, event.occurred_at, seq)

    def apply(self, event: ScheduleEvent) -> None:
        if isinstance(event, ScheduleUpdated):
            self.spec, self.by, self.since = event.spec, event.updated_by, event.occurred_at
        elif isinstance(event, SchedulePaused):
            self.paused = True
        elif isinstance(event, ScheduleResumed):
            # Ticks that fell while paused never run: the schedule goes on from now.
            self.paused, self.since = False, max(self.since, event.occurred_at)
        elif isinstance(event, ScheduleFired) and event.generation == self.generation:
            self.last_tick = event.tick if self.last_tick is None else max(self.last_tick, event.tick)
            run_id = event.run_id or event.wfrun_id
            if run_id is None:
                return
            self.ticks[run_id] = event.tick
            if event.outcome is FiredOutcome.STARTED:
                self.active = run_id
            elif event.outcome is FiredOutcome.QUEUED:
                self.waiting = run_id

    def run_ended(self, run_id: str) -> str | None:
        """A run it made has finished; returns the waiting run that starts now, if any."""
        self.ticks.pop(run_id, None)
        if run_id == self.waiting:  # cancelled before its turn
            self.waiting = None
            return None
        if run_id != self.active:
            return None
        self.active, self.waiting = self.waiting, None
        return self.active

    def owns(self, run_id: str) -> bool:
        return run_id in self.ticks

    # deciding -----------------------------------------------------------------------------------
    def base(self) -> datetime:
        return self.since if self.last_tick is None else max(self.last_tick, self.since)

    def due(self, now: datetime, late_after_s: float) -> list[Tick]:
        """Ticks to record now, oldest first. Ticks later than `late_after_s` were missed (no scheduler was
        there): `catch_up` runs the most recent of them once (`last`) or records it skipped (`none`)."""
        if self.paused or self.first_after_base() > now:
            return []
        ticks = self.spec.due_ticks(self.base(), now)
        late = now - timedelta(seconds=late_after_s)
        missed = [t for t in ticks if t < late]
        out: list[Tick] = []
        if missed:
            if self.spec.catch_up is CatchUp.LAST:
                out.append(Tick(missed[-1], missed=len(missed) - 1))
            else:
                out.append(Tick(missed[-1], missed=len(missed) - 1, skip_reason="missed: no scheduler was running"))
        out.extend(Tick(t) for t in ticks if t >= late)
        return out

    def first_after_base(self) -> datetime:
        base = self.base()
        if self._next is None or self._next[0] is not self.spec or self._next[1] != base:
            self._next = (self.spec, base, self.spec.ticks_after(base, 1)[0])
        return self._next[2]

    def next_wakeup(self, now: datetime) -> datetime | None:
        """When the next tick is due (now or earlier when one is due already); None while paused."""
        return None if self.paused else self.first_after_base()

    def outcome(self, tick: Tick) -> tuple[FiredOutcome, str | None, str]:
        """What `tick` does given the run still going: (outcome, the run id it makes, why it skips)."""
        if tick.skip_reason:
            return FiredOutcome.SKIPPED, None, tick.skip_reason
        run_id = tick_run_id(self.schedule_id, self.generation, tick.at)
        if self.active is None or self.spec.overlap is Overlap.ALLOW:
            return FiredOutcome.STARTED, run_id, ""
        if self.spec.overlap is Overlap.SKIP:
            return FiredOutcome.SKIPPED, None, f"the previous run {self.active} still runs"
        if self.waiting is None:
            return FiredOutcome.QUEUED, run_id, ""
        return FiredOutcome.SKIPPED, None, f"run {self.waiting} already waits for {self.active} to end"
