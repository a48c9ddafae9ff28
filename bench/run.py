"""scriptbus throughput, as ratios of this machine's own limits measured in the same run.

    python bench/run.py [--runs 500] [--output-mb 200] [--workflow-steps 20] [--workflow-runs 50] [--workflows-only]
                        [--peer-rounds 3] [--no-peers]

Starts a real `scriptbus up` (embedded nats-server and PostgreSQL) in a temporary data dir, measures the
raw limits (bash spawn rate, pipe throughput, PostgreSQL COPY rate), then the same work through
scriptbus, and prints both with their ratio; workflow figures beside plain runs and a local bash loop
doing the same steps (bench/workflows.py). Beside scriptbus it starts the "toy" peer (bench/peers/toy.py,
on its own embedded PostgreSQL) and measures both with the same load generator, interleaved, in
`--peer-rounds` rounds (medians), printing each scriptbus figure also as a ratio to the toy's (`--no-peers`
skips it). Stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from limits import bash_spawn_rate, copy_rate, pipe_throughput
from workflows import (
    Concurrent,
    Endings,
    StepGaps,
    bash_loop_per_step,
    concurrent_runs,
    plain_rate,
    plain_round_trip,
    step_gaps,
)

from scriptbus.embedded import EmbeddedPostgres, free_port

TERMINAL = {"succeeded", "failed", "terminated", "stopped", "killed", "timed_out", "cancelled", "lost"}


READER_SEED = "BENCH_NATS_READER_SEED"


def start_up(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scriptbus", "up", "--data-dir", str(data_dir), "--api-port", str(port),
         "--nats-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = ""
    for line in proc.stdout:
        banner += line
        if line.startswith("Ctrl-C"):
            break
    nats_url = re.search(r"NATS\s+(\S+)", banner)
    pg_url = re.search(r"PostgreSQL\s+(\S+)", banner)
    if not (nats_url and pg_url):
        proc.kill()
        sys.exit(f"scriptbus up did not start:\n{banner}")
    # `up`'s PostgreSQL asks for its password (asyncpg reads the password file PGPASSFILE names) and its
    # NATS for a key: the bench only watches, as the reader.
    os.environ["PGPASSFILE"] = str(data_dir / "credentials" / "pgpass")
    os.environ[READER_SEED] = str(data_dir / "credentials" / "nats-reader.nk")
    return proc, nats_url.group(1), pg_url.group(1)


def start_toy(data_dir: Path, port: int) -> tuple[EmbeddedPostgres, subprocess.Popen[bytes]]:
    """The toy peer on its own embedded PostgreSQL (trusting loopback), ready to take requests."""
    pg = EmbeddedPostgres(data_dir / "postgres", database="toy")
    url = pg.start()
    toy = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "peers" / "toy.py"), "--port", str(port),
         "--database-url", url],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/runs", params={"status": "running"}).raise_for_status()
            return pg, toy
        except httpx.HTTPError:
            if toy.poll() is not None or time.monotonic() > deadline:
                stop_toy(pg, toy)
                sys.exit("the toy peer did not start")
            time.sleep(0.1)


def stop_toy(pg: EmbeddedPostgres, toy: subprocess.Popen[bytes]) -> None:
    toy.terminate()
    toy.wait(30)
    pg.stop()


async def wait_all(client: httpx.AsyncClient, timeout: float = 600) -> None:
    """Until nothing is queued, running or stopping (the bench's instance runs nothing else)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        totals = [
            (await client.get("/api/v1/runs", params={"status": status, "limit": 1})).json()["total"]
            for status in ("queued", "running", "stopping")
        ]
        if not any(totals):
            return
        await asyncio.sleep(0.02)
    raise SystemExit("runs did not finish in time")


async def post_latency(client: httpx.AsyncClient, count: int = 50) -> float:
    """Median milliseconds of one POST at a time, read-your-writes included."""
    latencies = []
    for _ in range(count):
        t = time.perf_counter()
        (await client.post("/api/v1/runs", json={"script": "true"})).raise_for_status()
        latencies.append(time.perf_counter() - t)
    await wait_all(client)
    return statistics.median(latencies)


async def run_rate(client: httpx.AsyncClient, count: int) -> tuple[float, float]:
    """Runs of `true` per second, POST to finished, and the median POST latency (read-your-writes)."""
    gate = asyncio.Semaphore(32)
    latencies: list[float] = []

    async def post() -> str:
        async with gate:
            t = time.perf_counter()
            response = await client.post("/api/v1/runs", json={"script": "true"})
            latencies.append(time.perf_counter() - t)
            response.raise_for_status()
            return str(response.json()["id"])

    start = time.perf_counter()
    await asyncio.gather(*(post() for _ in range(count)))
    await wait_all(client)
    return count / (time.perf_counter() - start), statistics.median(latencies)


async def output_rate(client: httpx.AsyncClient, total: int) -> float:
    """Bytes per second from a script's pipe to committed rows in PostgreSQL."""
    script = f"head -c {total} /dev/zero | tr '\\0' x"
    run = (await client.post("/api/v1/runs", json={"script": script})).json()
    start = time.perf_counter()
    while True:
        current = (await client.get(f"/api/v1/runs/{run['id']}")).json()
        if current["status"] in TERMINAL and current["output_bytes"] >= total:
            break
        if current["status"] in TERMINAL and current["status"] != "succeeded":
            raise SystemExit(f"output run ended {current['status']}")
        await asyncio.sleep(0.02)
    return total / (time.perf_counter() - start)


async def live_latency(client: httpx.AsyncClient, nats_url: str, lines: int = 40) -> tuple[float, float]:
    """Milliseconds from a script printing a line to that line arriving on the NATS output subject."""
    nc = await nats.connect(nats_url, nkeys_seed=os.environ.get(READER_SEED))
    delays: list[float] = []

    async def on_line(msg: Msg) -> None:
        now = time.time()
        for line in msg.data.decode().split():
            delays.append((now - float(line)) * 1000)

    await nc.subscribe("scriptbus.runs.*.out", cb=on_line)
    script = f"for i in $(seq 1 {lines}); do date +%s.%N; sleep 0.05; done"
    (await client.post("/api/v1/runs", json={"script": script})).raise_for_status()
    await wait_all(client)
    await asyncio.sleep(0.2)
    await nc.close()
    delays.sort()
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--output-mb", type=int, default=200)
    parser.add_argument("--workflow-steps", type=int, default=20, help="sequential steps of the chained workflow")
    parser.add_argument("--workflow-runs", type=int, default=50, help="concurrent workflow runs")
    parser.add_argument("--workflows-only", action="store_true", help="skip the plain-run and output figures")
    parser.add_argument("--peer-rounds", type=int, default=3, help="interleaved rounds of scriptbus and the toy peer")
    parser.add_argument("--no-peers", action="store_true", help="measure scriptbus alone (one round)")
    args = parser.parse_args()
    if args.workflows_only:
        await workflows_only(args.workflow_steps, args.workflow_runs)
        return

    with tempfile.TemporaryDirectory(prefix="scriptbus-bench-") as tmp:
        port = free_port()
        up, nats_url, pg_url = start_up(Path(tmp) / "data", port)
        toy_port = free_port()
        toy = None if args.no_peers else start_toy(Path(tmp) / "toy", toy_port)
        try:
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{toy_port}", timeout=60) as toy_client,
            ):
                spawn = await bash_spawn_rate()
                pipe = await pipe_throughput()
                copy = await copy_rate(pg_url)
                # Interleaved, so a neighbour's load on the shared cores falls on both alike.
                ours: list[tuple[float, float, float]] = []
                theirs: list[tuple[float, float, float]] = []
                for _ in range(1 if toy is None else max(args.peer_rounds, 1)):
                    ours.append((await post_latency(client), *await run_rate(client, args.runs)))
                    if toy is not None:
                        theirs.append((await post_latency(toy_client), *await run_rate(toy_client, args.runs)))
                idle_latency, runs, busy_latency = (statistics.median(column) for column in zip(*ours, strict=True))
                peer = tuple(statistics.median(column) for column in zip(*theirs, strict=True)) if theirs else None
                output = await output_rate(client, args.output_mb * 1_000_000)
                p50, p99 = await live_latency(client, nats_url)
                wf = await workflow_figures(client, nats_url, args.workflow_steps, args.workflow_runs)
        finally:
            if toy is not None:
                stop_toy(*toy)
            up.send_signal(signal.SIGTERM)
            up.wait(120)

    mb = 1_000_000
    print(f"{'measure':44} {'scriptbus':>12} {'machine limit':>16} {'ratio':>7}")
    print(f"{'runs of `true`, POST to finished (runs/s)':44} {runs:12.0f} {spawn:12.0f} bash/s {runs / spawn:7.2f}")
    label = "output, pipe to PostgreSQL rows (MB/s)"
    print(f"{label:44} {output / mb:12.1f} {pipe / mb:10.0f} pipe MB/s {output / pipe:7.3f}")
    print(f"{'':44} {'':12} {copy / mb:10.0f} COPY MB/s {output / copy:7.2f}")
    print(f"{'POST /runs latency, one at a time, median (ms)':44} {idle_latency * 1000:12.1f}")
    print(f"{'POST /runs latency, 32 at a time, median (ms)':44} {busy_latency * 1000:12.1f}")
    print(f"{'line printed -> on NATS, p50 / p99 (ms)':44} {p50:12.1f} / {p99:.1f}")
    if peer is not None:
        print_peer_figures((idle_latency, runs, busy_latency), peer, len(ours))
    print_workflow_figures(*wf)


def print_peer_figures(ours: tuple[float, float, float], toy: tuple[float, ...], rounds: int) -> None:
    """Each figure beside the toy peer's; the ratio is scriptbus / toy (above 1 is better for runs/s only)."""
    print(f"{'':44} {'scriptbus':>12} {'toy peer':>16} {'ratio':>7}   (medians of {rounds} interleaved rounds)")
    label = "runs of `true`, POST to finished (runs/s)"
    print(f"{label:44} {ours[1]:12.0f} {toy[1]:16.0f} {ours[1] / toy[1]:7.2f}")
    label = "POST /runs latency, one at a time, p50 (ms)"
    print(f"{label:44} {ours[0] * 1000:12.1f} {toy[0] * 1000:16.1f} {ours[0] / toy[0]:7.2f}")
    label = "POST /runs latency, 32 at a time, p50 (ms)"
    print(f"{label:44} {ours[2] * 1000:12.1f} {toy[2] * 1000:16.1f} {ours[2] / toy[2]:7.2f}")


WorkflowFigures = tuple[StepGaps, tuple[float, float], float, Concurrent, float, float]


async def workflow_figures(client: httpx.AsyncClient, nats_url: str, steps: int, runs: int) -> WorkflowFigures:
    endings = Endings()
    await endings.start(nats_url)
    try:
        trip = await plain_round_trip(client, endings)
        gaps = await step_gaps(client, endings, steps, repeats=5)
        loop = await bash_loop_per_step(steps)
        many = await concurrent_runs(client, endings, runs, steps=3)
        plain = await plain_rate(client, endings, count=runs * 3 * 2, concurrency=runs)
    finally:
        await endings.close()
    return gaps, trip, loop, many, plain, await bash_spawn_rate()


def print_workflow_figures(
    gaps: StepGaps, trip: tuple[float, float], loop: float, many: Concurrent, plain: float, spawn: float
) -> None:
    ms = 1000
    print(f"{'':44} {'workflows':>12} {'simpler design':>16} {'ratio':>7}")
    label = f"step finished -> next started, p50 ({gaps.steps} steps)"
    print(f"{label:44} {gaps.gap_p50 * ms:9.1f} ms {trip[0] * ms:7.1f} ms POST->fin {gaps.gap_p50 / trip[0]:7.2f}")
    label = "step finished -> next started, p99 (ms)"
    print(f"{label:44} {gaps.gap_p99 * ms:9.1f} ms {trip[1] * ms:7.1f} ms POST->fin {gaps.gap_p99 / trip[1]:7.2f}")
    label = "a sequential `true` step, whole run / steps"
    print(f"{label:44} {gaps.per_step * ms:9.1f} ms {loop * ms:7.1f} ms bash loop {gaps.per_step / loop:7.1f}")
    label = f"{many.runs} concurrent workflow runs ({many.steps} steps)"
    print(f"{label:44} {many.wfruns_per_s:8.1f} wf/s")
    label = "  their steps (runs/s), vs plain runs"
    print(f"{label:44} {many.steps_per_s:12.0f} {plain:8.0f} plain/s {many.steps_per_s / plain:7.2f}")
    print(f"{'':44} {'':12} {spawn:9.0f} bash/s {many.steps_per_s / spawn:7.2f}")


async def workflows_only(steps: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="scriptbus-bench-") as tmp:
        port = free_port()
        up, nats_url, _pg_url = start_up(Path(tmp) / "data", port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                wf = await workflow_figures(client, nats_url, steps, runs)
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(120)
    print_workflow_figures(*wf)


if __name__ == "__main__":
    asyncio.run(main())
