"""Workflow figures for bench/run.py: the delay between one step finishing and the next starting, and how
many concurrent workflow runs one scheduler drives, each beside a simpler design measured in the same run
(a client chaining plain runs itself; a bash loop doing the same steps locally)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from datetime import datetime

import httpx
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

ENDED = {"succeeded", "failed", "stopped", "killed", "timed_out", "cancelled"}
# Runs or workflow runs done before measuring, so first-use costs (connections, caches) stay out.
WARM_UP = 5


@dataclass(frozen=True)
class StepGaps:
    steps: int
    gap_p50: float  # seconds from a step's run finishing to the next step's run starting
    gap_p99: float
    per_step: float  # seconds of a whole workflow run (POST to ended) divided by its steps


@dataclass(frozen=True)
class Concurrent:
    runs: int
    steps: int
    wfruns_per_s: float
    steps_per_s: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Endings:
    """Arrival times of `run.finished` and `wfrun.finished` on NATS, by id: no polling in the figures."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._nc: NATS | None = None

    async def start(self, nats_url: str, prefix: str = "scriptbus") -> None:
        # Under `scriptbus up` NATS asks for a key: bench/run.py names the reader's seed here.
        self._nc = await nats.connect(nats_url, nkeys_seed=os.environ.get("BENCH_NATS_READER_SEED"))
        await self._nc.subscribe(f"{prefix}.runs.*.finished", cb=self._on)
        await self._nc.subscribe(f"{prefix}.wfruns.*.finished", cb=self._on)

    async def _on(self, msg: Msg) -> None:
        key = msg.subject.split(".")[2]
        now = time.perf_counter()
        self.arrived.setdefault(key, now)
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    async def wait(self, key: str, timeout: float = 120) -> float:
        if key in self.arrived:
            return self.arrived[key]
        waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


async def define(client: httpx.AsyncClient, project: str, workflow: str, steps: int) -> None:
    tasks = [{"name": f"s{i}", "place": i, "exec": "await", "script": "true"} for i in range(1, steps + 1)]
    response = await client.put(f"/api/v1/projects/{project}/workflows/{workflow}", json={"tasks": tasks})
    response.raise_for_status()


async def start(client: httpx.AsyncClient, project: str, workflow: str) -> str:
    response = await client.post(f"/api/v1/projects/{project}/workflows/{workflow}/runs", json={})
    response.raise_for_status()
    return str(response.json()["id"])


async def finished_ok(client: httpx.AsyncClient, wfrun_id: str) -> None:
    """The read model catches up after the event; the figures never wait for it, the check does."""
    for _ in range(600):
        wfrun = (await client.get(f"/api/v1/workflow-runs/{wfrun_id}")).json()
        if wfrun.get("status") in ENDED:
            if wfrun["status"] != "succeeded":
                raise SystemExit(f"workflow run {wfrun_id} ended {wfrun['status']}")
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"workflow run {wfrun_id} did not end")


async def gaps_of(client: httpx.AsyncClient, wfrun_id: str) -> list[float]:
    response = await client.get("/api/v1/runs", params={"workflow_run": wfrun_id, "limit": 1000})
    response.raise_for_status()
    runs = sorted(response.json()["items"], key=lambda run: run["started_at"])
    times = [(datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"])) for r in runs]
    return [(nxt[0] - prev[1]).total_seconds() for prev, nxt in zip(times, times[1:], strict=False)]


async def step_gaps(client: httpx.AsyncClient, endings: Endings, steps: int, repeats: int) -> StepGaps:
    """`repeats` runs, one after another, of a workflow of `steps` sequential `true` steps (after one that
    warms up)."""
    await define(client, "bench", "chain", steps)
    gaps: list[float] = []
    totals: list[float] = []
    for i in range(1 + repeats):
        t = time.perf_counter()
        wfrun_id = await start(client, "bench", "chain")
        total = await endings.wait(wfrun_id) - t
        await finished_ok(client, wfrun_id)
        if i > 0:
            totals.append(total)
            gaps.extend(await gaps_of(client, wfrun_id))
    return StepGaps(steps, statistics.median(gaps), percentile(gaps, 0.99), statistics.median(totals) / steps)


async def plain_round_trip(client: httpx.AsyncClient, endings: Endings, count: int = 50) -> tuple[float, float]:
    """Seconds from POST /runs of `true` to its `run.finished` on NATS, one at a time: what a client that
    chains plain runs itself pays per step (p50, p99)."""
    trips: list[float] = []
    for _ in range(WARM_UP + count):
        t = time.perf_counter()
        response = await client.post("/api/v1/runs", json={"script": "true"})
        response.raise_for_status()
        trips.append(await endings.wait(str(response.json()["id"])) - t)
    del trips[:WARM_UP]
    return statistics.median(trips), percentile(trips, 0.99)


async def bash_loop_per_step(steps: int, repeats: int = 5) -> float:
    """Seconds per step of a local bash loop running the same steps (`bash -c true` each, one after another)."""
    script = f"for i in $(seq {steps}); do bash -c true; done"
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("bash", "-c", script)
        await proc.wait()
        best = min(best, time.perf_counter() - t)
    return best / steps


async def concurrent_runs(client: httpx.AsyncClient, endings: Endings, runs: int, steps: int) -> Concurrent:
    """`runs` workflow runs (one per workflow) of `steps` sequential `true` steps, started at once."""
    for i in range(runs):
        await define(client, "bench", f"many{i}", steps)
    t = time.perf_counter()
    ids = await asyncio.gather(*(start(client, "bench", f"many{i}") for i in range(runs)))
    ends = await asyncio.gather(*(endings.wait(wfrun_id, timeout=300) for wfrun_id in ids))
    elapsed = max(ends) - t
    for wfrun_id in ids:
        await finished_ok(client, wfrun_id)
    return Concurrent(runs, steps, runs / elapsed, runs * steps / elapsed)


async def plain_rate(client: httpx.AsyncClient, endings: Endings, count: int, concurrency: int) -> float:
    """Plain runs of `true` per second, POST to `run.finished`, `concurrency` clients each chaining runs."""
    per_client = count // concurrency

    async def chain() -> None:
        for _ in range(per_client):
            response = await client.post("/api/v1/runs", json={"script": "true"})
            response.raise_for_status()
            await endings.wait(str(response.json()["id"]))

    t = time.perf_counter()
    await asyncio.gather(*(chain() for _ in range(concurrency)))
    return per_client * concurrency / (time.perf_counter() - t)
