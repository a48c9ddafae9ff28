"""The figures of issue 9's table, measured the same way on every system by one asyncio load generator that
drives the paths they share (`POST /api/v1/runs`, `GET /api/v1/runs/{id}`, `GET /api/v1/runs?status=`)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, fields

import httpx
from loadgen import Poster
from systems import System, cpu_by_role, cpu_seconds
from workflows import percentile

TERMINAL = {"succeeded", "failed", "terminated", "stopped", "killed", "timed_out", "cancelled", "lost"}
WAITING = ("queued", "running", "stopping")
POLL = 0.05


@dataclass(frozen=True)
class Figures:
    runs_per_s: float  # runs of `true`, 32 clients, POST to finished and stored
    cpu_per_run: float  # seconds of CPU of all the system's processes per run of that figure
    p50_1: float  # POST latency, one client (seconds)
    p99_1: float
    p50_32: float  # POST latency, 32 clients, during the runs/s figure
    p99_32: float
    lines_s: float  # seconds from POST to fully stored for the lines figure
    together: float  # sleeping runs running at the same time, at the peak
    loadgen_share: float  # the load generator's own CPU during the runs/s figure, in cores


def median_figures(rounds: list[Figures]) -> Figures:
    return Figures(*(statistics.median(getattr(r, f.name) for r in rounds) for f in fields(Figures)))


async def wait_all(client: httpx.AsyncClient, timeout: float = 900) -> None:
    """Until nothing is queued, running or stopping (each system runs only the bench's work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        totals = [
            (await client.get("/api/v1/runs", params={"status": status, "limit": 1})).json()["total"]
            for status in WAITING
        ]
        if not any(totals):
            return
        await asyncio.sleep(POLL)
    raise SystemExit(f"runs on {client.base_url} did not finish in time")


_posters: dict[str, Poster] = {}


async def post(client: httpx.AsyncClient, script: str) -> tuple[str, float]:
    """POST a run of `script` to `client`'s server through the lean `Poster` (see loadgen.py): its id and
    the seconds the POST took."""
    poster = _posters.setdefault(str(client.base_url), Poster(str(client.base_url)))
    status, data, elapsed = await poster.post("/api/v1/runs", {"script": script})
    if status >= 400:
        raise SystemExit(f"POST /api/v1/runs on {client.base_url} answered {status}: {data[:200]!r}")
    return str(json.loads(data)["id"]), elapsed


async def post_latency(client: httpx.AsyncClient, count: int) -> tuple[float, float]:
    """p50 and p99 seconds of one POST at a time (read-your-writes included where the system has it)."""
    latencies = [(await post(client, "true"))[1] for _ in range(count)]
    await wait_all(client)
    return statistics.median(latencies), percentile(latencies, 0.99)


@dataclass(frozen=True)
class Rate:
    runs_per_s: float
    p50: float
    p99: float
    cpu_per_run: float
    loadgen_share: float
    by_role: dict[str, float]  # CPU seconds per run, per process role


async def run_rate(client: httpx.AsyncClient, system: System, count: int, clients: int = 32) -> Rate:
    """Runs of `true` per second, `clients` POSTing at a time, until all are finished and stored."""
    gate = asyncio.Semaphore(clients)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            latencies.append((await post(client, "true"))[1])

    cpu, roles = cpu_seconds(system.pids), cpu_by_role(system.pids)
    own = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    await wait_all(client)
    elapsed = time.perf_counter() - start
    after = cpu_by_role(system.pids)
    return Rate(
        runs_per_s=count / elapsed,
        p50=statistics.median(latencies),
        p99=percentile(latencies, 0.99),
        cpu_per_run=(cpu_seconds(system.pids) - cpu) / count,
        loadgen_share=(time.process_time() - own) / elapsed,
        by_role={role: (after[role] - roles.get(role, 0.0)) / count for role in after},
    )


# What the lines figure's script prints, over and over: what bench/limits.copy_rate copies for its limit.
LINE = b"0" * 99 + b"\n"


async def lines_stored(client: httpx.AsyncClient, total: int) -> float:
    """Seconds from POSTing a script that prints `total` bytes of 100-byte lines (`LINE`) to all of them stored."""
    script = f"yes \"$(printf '%099d' 0)\" | head -c {total}"
    start = time.perf_counter()
    run_id, _ = await post(client, script)
    while True:
        current = (await client.get(f"/api/v1/runs/{run_id}")).json()
        if current["status"] in TERMINAL:
            if current["status"] != "succeeded":
                raise SystemExit(f"the lines run on {client.base_url} ended {current['status']}")
            if current["output_bytes"] >= total:
                return time.perf_counter() - start
        await asyncio.sleep(POLL / 2)


async def running_together(client: httpx.AsyncClient, system: System, count: int, seconds: float) -> int:
    """`count` runs of `sleep <seconds>` POSTed at once: the most seen running at the same time. Then the
    runs still waiting are cancelled (a queue of 500 sleeps behind 8 workers would take minutes)."""
    gate = asyncio.Semaphore(64)

    async def one() -> str:
        async with gate:
            return (await post(client, f"sleep {seconds}"))[0]

    ids = await asyncio.gather(*(one() for _ in range(count)))
    peak = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        running = (await client.get("/api/v1/runs", params={"status": "running", "limit": 1})).json()["total"]
        peak = max(peak, int(running))
        await asyncio.sleep(0.2)
    if system.cancel == "stop":
        stops = asyncio.Semaphore(32)

        async def stop(run_id: str) -> None:
            async with stops:
                response = await client.post(f"/api/v1/runs/{run_id}/stop")
                if response.status_code not in (202, 409):  # 409: it had finished already
                    response.raise_for_status()

        await asyncio.gather(*(stop(run_id) for run_id in ids))
    elif system.cancel == "purge":
        (await client.post("/api/v1/runs/cancel-queued")).raise_for_status()
    await wait_all(client)
    return peak


async def measure(
    client: httpx.AsyncClient, system: System, *, runs: int, latency_posts: int, lines_bytes: int, sleeps: int,
    sleep_s: float,
) -> tuple[Figures, dict[str, float]]:  # fmt: skip
    """One round of every figure on one system, and the CPU per run of the runs/s figure by process role."""
    p50_1, p99_1 = await post_latency(client, latency_posts)
    rate = await run_rate(client, system, runs)
    lines = await lines_stored(client, lines_bytes)
    together = await running_together(client, system, sleeps, sleep_s)
    return Figures(
        runs_per_s=rate.runs_per_s, cpu_per_run=rate.cpu_per_run, p50_1=p50_1, p99_1=p99_1, p50_32=rate.p50,
        p99_32=rate.p99, lines_s=lines, together=together, loadgen_share=rate.loadgen_share,
    ), rate.by_role  # fmt: skip


async def warm_up(client: httpx.AsyncClient, count: int = 20) -> None:
    """A few runs first, so connections and first-use costs stay out of the figures (and a Celery worker
    that is still starting is ready)."""
    for _ in range(count):
        await post(client, "true")
    await wait_all(client)
