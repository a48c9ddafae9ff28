"""The read side: answers straight from the read models."""

from __future__ import annotations

from scriptbus.events.statuses import RunStatus
from scriptbus.gateway import readmodels
from scriptbus.gateway.errors import RunNotFound, db_errors
from scriptbus.gateway.schemas import Run, RunList
from scriptbus.gateway.state import Gateway


async def get_run(gw: Gateway, run_id: str) -> Run:
    """One run with the tail of its output; `RunNotFound` when the read model does not know it."""
    with db_errors():
        run = await readmodels.get_run(gw.pool, run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


async def list_runs(gw: Gateway, status: RunStatus | None, limit: int, offset: int) -> RunList:
    """A page of runs, newest first."""
    with db_errors():
        items, total = await readmodels.list_runs(gw.pool, status, limit, offset)
    return RunList(items=items, total=total)
