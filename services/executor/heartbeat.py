"""Liveness reports: an `executor.heartbeat` every interval, so the scheduler can tell a live executor
from a lost one and the API can show the fleet."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from nats.js import JetStreamContext

from scriptbus.events import ExecutorHeartbeat, Subjects, publish_event, utcnow
from scriptbus.events.bus import BUS_ERRORS

log = logging.getLogger(__name__)


def scriptbus_version() -> str:
    try:
        return version("scriptbus")
    except PackageNotFoundError:
        return "unknown"


class Heartbeat:
    """Publishes this executor's state; `running_run_ids` and `draining` are read at each beat."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        host: str,
        executor_id: str,
        pools: list[str],
        labels: dict[str, str],
        capacity: int,
        interval_s: float,
        running_run_ids: Callable[[], list[str]],
        draining: Callable[[], bool],
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._host = host
        self._executor_id = executor_id
        self._pools = pools
        self._labels = labels
        self._capacity = capacity
        self.interval_s = interval_s
        self._running_run_ids = running_run_ids
        self._draining = draining
        self._version = scriptbus_version()
        self.started_at: datetime = utcnow()

    def event(self) -> ExecutorHeartbeat:
        """The heartbeat as of now."""
        run_ids = self._running_run_ids()
        return ExecutorHeartbeat(
            host=self._host,
            executor_id=self._executor_id,
            pools=self._pools,
            labels=self._labels,
            version=self._version,
            capacity=self._capacity,
            running=len(run_ids),
            running_run_ids=run_ids,
            started_at=self.started_at,
            interval_s=self.interval_s,
            draining=self._draining(),
        )

    async def beat(self) -> bool:
        """Publish one heartbeat now; False (logged) if NATS did not take it."""
        try:
            await publish_event(self._js, self._subjects, self.event(), timeout=max(self.interval_s, 1.0))
            return True
        except BUS_ERRORS as exc:
            log.warning("heartbeat not published: %s", exc)
            return False

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every interval until `stop` is set."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            await self.beat()
            # Keep the period steady: a slow publish does not push the next beat back.
            next_at = max(next_at + self.interval_s, loop.time())
            try:
                await asyncio.wait_for(stop.wait(), timeout=next_at - loop.time())
            except TimeoutError:
                pass
