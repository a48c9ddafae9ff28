"""One fan-out as its events tell it, and what to decide next. Pure: no I/O, so tests need no server."""

from __future__ import annotations

from dataclasses import dataclass, field

from scriptbus.events.envelope import Event
from scriptbus.events.fanouts import (
    FAILED_RUN_STATUSES,
    FanoutFinished,
    FanoutHostDispatched,
    FanoutHostSkipped,
    FanoutRequested,
    FanoutRetryRequested,
    FanoutStatus,
    FanoutStopRequested,
    fanout_decision_id,
    fanout_run_id,
)
from scriptbus.events.runs import RunFinished
from scriptbus.events.statuses import RunStatus


@dataclass
class HostState:
    host: str
    attempt: int = 0  # the latest dispatched attempt, 0 before the first
    run_id: str | None = None
    outcome: RunStatus | None = None  # how the latest attempt's run ended; None while it runs
    skipped: bool = False
    # In the current round: not dispatched yet and not skipped.
    waiting: bool = True
    # Its run's end is no longer in the stream (the run was deleted after the fan-out finished).
    forgotten: bool = False

    @property
    def active(self) -> bool:
        return self.run_id is not None and self.outcome is None and not self.waiting and not self.forgotten

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_RUN_STATUSES


@dataclass
class FanoutState:
    request: FanoutRequested
    hosts: dict[str, HostState] = field(default_factory=dict)
    round: int = 1
    stop_requested: bool = False
    finished: bool = False
    status: FanoutStatus = FanoutStatus.RUNNING

    @classmethod
    def requested(cls, event: FanoutRequested) -> FanoutState:
        return cls(event, {h: HostState(h) for h in event.hosts})

    @property
    def fanout_id(self) -> str:
        return self.request.fanout_id

    def host_of(self, run_id: str) -> HostState | None:
        for host in self.hosts.values():
            if host.run_id == run_id:
                return host
        return None

    def apply(self, event: Event) -> None:
        if isinstance(event, FanoutHostDispatched):
            host = self.hosts.get(event.host)
            if host is not None and event.attempt > host.attempt:
                host.attempt, host.run_id, host.outcome, host.waiting = event.attempt, event.run_id, None, False
        elif isinstance(event, FanoutHostSkipped):
            host = self.hosts.get(event.host)
            if host is not None and host.waiting:
                host.skipped, host.waiting = True, False
        elif isinstance(event, RunFinished):
            host = self.host_of(event.run_id)
            if host is not None and host.outcome is None:
                host.outcome = event.status
        elif isinstance(event, FanoutStopRequested):
            if not self.finished:
                self.stop_requested = True
        elif isinstance(event, FanoutRetryRequested):
            again = [h for name in event.hosts if (h := self.hosts.get(name)) is not None and self._retryable(h)]
            if again and all(not h.active for h in self.hosts.values()):
                self.round += 1
                self.finished, self.stop_requested, self.status = False, False, FanoutStatus.RUNNING
                for h in again:
                    h.waiting, h.skipped, h.outcome = True, False, None
        elif isinstance(event, FanoutFinished):
            if event.round == self.round:
                self.finished, self.status = True, event.status
                # Every run had ended when this was decided; one whose end we did not read was deleted since.
                for host in self.hosts.values():
                    host.forgotten = host.run_id is not None and host.outcome is None

    @staticmethod
    def _retryable(host: HostState) -> bool:
        return host.skipped or host.failed or host.outcome in (RunStatus.STOPPED, RunStatus.CANCELLED)

    def failures(self) -> int:
        """Hosts whose latest run failed (a skipped host never ran, so it is not a failure). A retry
        clears the outcome of the hosts it reruns, so this counts the current round's failures."""
        return sum(1 for h in self.hosts.values() if h.failed)

    def decide(self) -> list[Event]:
        """The next decisions: hosts to skip, hosts to start (at most `max_parallel` running), or the end."""
        if self.finished:
            return []
        r = self.request
        waiting = [self.hosts[name] for name in r.hosts if self.hosts[name].waiting]
        active = sum(1 for h in self.hosts.values() if h.active)
        events: list[Event] = []
        reason = ""
        if self.stop_requested:
            reason = "the fan-out was stopped"
        elif r.max_failures is not None and self.failures() >= r.max_failures:
            reason = f"{r.max_failures} host(s) failed (max_failures)"
        if reason:
            events.extend(
                FanoutHostSkipped(
                    event_id=fanout_decision_id(self.fanout_id, "skip", h.host, self.round),
                    fanout_id=self.fanout_id,
                    host=h.host,
                    reason=reason,
                )
                for h in waiting
            )
            waiting = []
        else:
            room = len(waiting) if r.max_parallel is None else max(0, r.max_parallel - active)
            for h in waiting[:room]:
                attempt = h.attempt + 1
                events.append(
                    FanoutHostDispatched(
                        event_id=fanout_decision_id(self.fanout_id, "dispatch", h.host, attempt),
                        fanout_id=self.fanout_id,
                        host=h.host,
                        attempt=attempt,
                        run_id=fanout_run_id(self.fanout_id, h.host, attempt),
                    )
                )
            waiting = waiting[room:]
        if not events and not waiting and active == 0:
            events.append(
                FanoutFinished(
                    event_id=fanout_decision_id(self.fanout_id, "finish", attempt=self.round),
                    fanout_id=self.fanout_id,
                    status=self._final_status(),
                    round=self.round,
                )
            )
        return events

    def _final_status(self) -> FanoutStatus:
        if self.stop_requested:
            return FanoutStatus.STOPPED
        # A host whose run was deleted before a retry keeps the verdict of the round it ran in.
        judged = [h for h in self.hosts.values() if not h.forgotten]
        if any(h.skipped or h.outcome is not RunStatus.SUCCEEDED for h in judged):
            return FanoutStatus.FAILED
        return FanoutStatus.SUCCEEDED
