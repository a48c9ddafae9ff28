"""Executor events as an executor would publish them."""

from __future__ import annotations

from datetime import UTC, datetime

from scriptbus.events import ExecutorHeartbeat


def heartbeat(host: str, executor_id: str, running: list[str] | None = None) -> ExecutorHeartbeat:
    return ExecutorHeartbeat(
        host=host,
        executor_id=executor_id,
        pools=["default", host],
        version="test",
        capacity=4,
        running=len(running or []),
        running_run_ids=running or [],
        started_at=datetime.now(UTC),
        interval_s=0.5,
    )
