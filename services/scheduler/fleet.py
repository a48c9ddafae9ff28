"""What the scheduler knows of each executor, and which of them have gone silent.

Pure state, fed by executor events, asked by the clock: testable without NATS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from scriptbus.events import ExecutorHeartbeat, ExecutorLost, ExecutorStopped
from scriptbus.events.envelope import Event


class ExecutorState(StrEnum):
    ONLINE = "online"
    STOPPED = "stopped"
    LOST = "lost"


@dataclass
class Executor:
    host: str
    executor_id: str
    last_seen: float  # monotonic seconds, by this scheduler's clock
    state: ExecutorState = ExecutorState.ONLINE
    running_run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Loss:
    """An executor instance that is gone while it may still have had runs."""

    host: str
    executor_id: str
    silent_for_s: float
    run_ids: tuple[str, ...]
    reason: str


class Fleet:
    def __init__(self, lost_after_s: float) -> None:
        self.lost_after_s = lost_after_s
        self.executors: dict[str, Executor] = {}

    def observe(self, event: Event, now: float) -> Loss | None:
        """Apply one executor event; returns a loss when a host came back as a new process
        (its previous instance died without reporting its runs)."""
        if isinstance(event, ExecutorHeartbeat):
            known = self.executors.get(event.host)
            loss = None
            if known and known.executor_id != event.executor_id and known.state is ExecutorState.ONLINE:
                loss = Loss(
                    known.host,
                    known.executor_id,
                    now - known.last_seen,
                    tuple(known.running_run_ids),
                    f"executor {known.host} restarted (instance {known.executor_id[:8]} gone)",
                )
            self.executors[event.host] = Executor(
                event.host, event.executor_id, now, ExecutorState.ONLINE, list(event.running_run_ids)
            )
            return loss
        if isinstance(event, (ExecutorStopped, ExecutorLost)):
            known = self.executors.get(event.host)
            if known and known.executor_id == event.executor_id:
                known.state = ExecutorState.STOPPED if isinstance(event, ExecutorStopped) else ExecutorState.LOST
            elif known is None:
                state = ExecutorState.STOPPED if isinstance(event, ExecutorStopped) else ExecutorState.LOST
                self.executors[event.host] = Executor(event.host, event.executor_id, now, state)
        return None

    def silent(self, now: float) -> list[Loss]:
        """Online executors not heard from for longer than the timeout; each is marked lost once."""
        losses = []
        for ex in self.executors.values():
            silent_for = now - ex.last_seen
            if ex.state is ExecutorState.ONLINE and silent_for > self.lost_after_s:
                ex.state = ExecutorState.LOST
                losses.append(
                    Loss(
                        ex.host,
                        ex.executor_id,
                        silent_for,
                        tuple(ex.running_run_ids),
                        f"executor {ex.host} lost: no heartbeat for {silent_for:.1f}s",
                    )
                )
        return losses

    def excuse(self, now: float) -> None:
        """We could not hear the fleet until `now` (our own connection was down): silence until then is
        no evidence, so every online executor counts as seen now."""
        for ex in self.executors.values():
            if ex.state is ExecutorState.ONLINE:
                ex.last_seen = max(ex.last_seen, now)
