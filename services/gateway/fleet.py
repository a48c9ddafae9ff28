"""The fleet as the read models last saw it: each executor's state (aged by its heartbeat), and why a
queued run is still waiting."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg

from scriptbus.events.executors import ExecutorState
from scriptbus.events.statuses import RunStatus
from scriptbus.gateway import readmodels
from scriptbus.gateway.errors import db_errors
from scriptbus.gateway.schemas import Executor, RunSummary
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

R = TypeVar("R", bound=RunSummary)


def effective_state(row: dict[str, Any], lost_after_s: float) -> ExecutorState:
    """The stored state, except that an online or draining executor silent for longer than
    `lost_after_s` is `lost`, whether or not the scheduler has said so yet."""
    try:
        state = ExecutorState(row["state"])
    except ValueError:
        return ExecutorState.LOST
    if state in (ExecutorState.ONLINE, ExecutorState.DRAINING):
        last = row["last_heartbeat"]
        if last is None or row["now"] - last > timedelta(seconds=lost_after_s):
            return ExecutorState.LOST
    return state


async def _executor_rows(gw: Gateway) -> list[dict[str, Any]]:
    with db_errors():
        try:
            return await readmodels.executors(gw.pool)
        except asyncpg.UndefinedTableError:
            # A recorder older than the executors read model: no fleet is known.
            return []


async def list_executors(gw: Gateway) -> list[Executor]:
    """Every executor host, by host, with its effective state."""
    lost_after = gw.settings.executor_lost_after_s
    return [Executor(**{**row, "state": effective_state(row, lost_after)}) for row in await _executor_rows(gw)]


@dataclass(frozen=True)
class LiveTargets:
    """The pools and hosts that at least one online executor with a fresh heartbeat serves."""

    pools: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)

    def waiting_reason(self, pool: str, target_host: str | None) -> str:
        """Why a queued run for this target cannot start now, or "" when an executor could take it."""
        if target_host:
            return "" if target_host in self.hosts else f"no live executor on host '{target_host}'"
        return "" if pool in self.pools else f"no live executor serves pool '{pool}'"


def live_from_rows(rows: list[dict[str, Any]], lost_after_s: float) -> tuple[LiveTargets, float]:
    """What the online executors in `rows` serve, and for how many seconds (of the rows' `now`) that
    stays true by age alone: until the stalest of them would count as lost."""
    live = LiveTargets()
    fresh_for = float("inf")
    for row in rows:
        # Draining executors take no new runs.
        if effective_state(row, lost_after_s) is ExecutorState.ONLINE:
            live.hosts.add(row["host"])
            live.pools.update(row["pools"] or [])
            silent = (row["now"] - row["last_heartbeat"]).total_seconds()
            fresh_for = min(fresh_for, lost_after_s - silent)
    return live, fresh_for


async def live_targets(gw: Gateway) -> LiveTargets:
    """What the live part of the fleet serves right now (read now, and kept for `gw.live_cache`)."""
    live, fresh_for = live_from_rows(await _executor_rows(gw), gw.settings.executor_lost_after_s)
    gw.live_cache.keep(live, fresh_for)
    return live


async def explain_queued(gw: Gateway, runs: list[R]) -> list[R]:
    """`runs` with the waiting reason filled in on those queued for a target no live executor serves."""
    waiting = [r for r in runs if r.status is RunStatus.QUEUED and not r.reason]
    if not waiting:
        return runs
    # A target the fleet served a moment ago needs no query (most runs, at most a second old); a reason
    # to wait is always read fresh, so a run never waits on an executor that has just come up.
    cached = gw.live_cache.get()
    if cached is not None and all(not cached.waiting_reason(r.pool, r.target_host) for r in waiting):
        return runs
    live = await live_targets(gw)
    out: list[R] = []
    for run in runs:
        if run.status is RunStatus.QUEUED and not run.reason:
            reason = live.waiting_reason(run.pool, run.target_host)
            if reason:
                run = run.model_copy(update={"reason": reason})
        out.append(run)
    return out


async def explain_one(gw: Gateway, run: R) -> R:
    """`explain_queued` for a single run."""
    return (await explain_queued(gw, [run]))[0]
