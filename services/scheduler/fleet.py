"""What the scheduler knows of each executor instance, and which of them have gone silent.

Pure state, fed by executor events, asked by the clock: testable without NATS. Instances are told apart
by `executor_id`, never by host: two live instances under one host name are two executors, and a
host's runs are lost only when the instance that started them falls silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scriptbus.events import ExecutorHeartbeat, ExecutorLost, ExecutorState, ExecutorStopped
from scriptbus.events.envelope import Event

# Stopped and lost instances are forgotten after this long (a restart makes a new one each time).
FORGET_AFTER_S = 24 * 3600.0


@dataclass
class Executor:
    host: str
    executor_id: str
    last_seen: float  # monotonic seconds, by this scheduler's clock
    state: ExecutorState = ExecutorState.ONLINE
    running_run_ids: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Loss:
    """An executor instance that is gone while it may still have had runs."""

    host: str
    executor_id: str
    silent_for_s: float
    run_ids: tuple[str, ...]
    reason: str


# How long after we start listening the replay of the executors stream is taken to be complete.
HEARD_AFTER_S = 2.0


class Fleet:
    def __init__(self, lost_after_s: float) -> None:
        self.lost_after_s = lost_after_s
        self.executors: dict[str, Executor] = {}  # by executor_id
        self.listening_since: float | None = None  # monotonic; set by whoever feeds it

    def heard(self, now: float) -> bool:
        """We have listened long enough to know the whole fleet (its replay has come in)."""
        return self.listening_since is not None and now - self.listening_since >= HEARD_AFTER_S

    def observe(self, event: Event, now: float) -> None:
        """Apply one executor event."""
        if isinstance(event, ExecutorHeartbeat):
            state = ExecutorState.DRAINING if event.draining else ExecutorState.ONLINE
            self.executors[event.executor_id] = Executor(
                event.host, event.executor_id, now, state, list(event.running_run_ids), event.pools, event.labels
            )
        elif isinstance(event, (ExecutorStopped, ExecutorLost)):
            state = ExecutorState.STOPPED if isinstance(event, ExecutorStopped) else ExecutorState.LOST
            known = self.executors.get(event.executor_id)
            if known is None:
                self.executors[event.executor_id] = Executor(event.host, event.executor_id, now, state)
            else:
                known.state = state

    def matching(self, pool: str | None, labels: dict[str, str], hosts: list[str]) -> tuple[list[str], list[str]]:
        """(hosts matching, named hosts not live): the online executors in `pool` (any when None) with all
        `labels`, among `hosts` when given, in host order; as `POST /api/v1/fanouts` matches them."""
        live = {ex.host: ex for ex in self.executors.values() if ex.state is ExecutorState.ONLINE}
        missing = [h for h in dict.fromkeys(hosts) if h not in live]
        matched = [
            host
            for host, ex in sorted(live.items())
            if (not hosts or host in hosts)
            and (pool is None or pool in ex.pools)
            and all(ex.labels.get(k) == v for k, v in labels.items())
        ]
        return matched, missing

    def silent(self, now: float) -> list[Loss]:
        """Live instances not heard from for longer than the timeout; each is declared lost once."""
        losses = []
        for ex in list(self.executors.values()):
            silent_for = now - ex.last_seen
            if ex.state in (ExecutorState.ONLINE, ExecutorState.DRAINING) and silent_for > self.lost_after_s:
                ex.state = ExecutorState.LOST
                losses.append(
                    Loss(
                        ex.host,
                        ex.executor_id,
                        silent_for,
                        tuple(ex.running_run_ids),
                        f"executor {ex.host} lost (instance {ex.executor_id[:8]}): no heartbeat for {silent_for:.1f}s",
                    )
                )
            elif ex.state in (ExecutorState.STOPPED, ExecutorState.LOST) and silent_for > FORGET_AFTER_S:
                del self.executors[ex.executor_id]
        return losses

    def excuse(self, now: float) -> None:
        """We could not hear the fleet until `now` (our own connection was down): silence until then is
        no evidence, so every online executor counts as seen now."""
        for ex in self.executors.values():
            if ex.state in (ExecutorState.ONLINE, ExecutorState.DRAINING):
                ex.last_seen = max(ex.last_seen, now)
