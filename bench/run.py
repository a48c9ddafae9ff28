"""scriptbus beside the designs a team would build instead, and this machine's limits, in one interleaved run.

    pip install -e '.[bench]' && python bench/run.py [--quick] [--runs 2000] [--peer-rounds 3] [--lines-mb 50]
        [--sleeps 500] [--sleep-s 10] [--no-peers] [--no-extras] [--workflows-only]

Starts, on free ports in a temporary folder, a real `scriptbus up`, the toy peer (bench/peers/toy.py) and the
Celery peer (bench/peers/celery_peer.py, at worker concurrency 2 and 8, each with its own redis-server and
PostgreSQL; skipped with a note when redis-server or the `bench` extra is missing). It measures the
machine's limits (raw `bash -c true` spawn rate and its CPU, raw pipe, raw COPY), then every figure of
issue 9 on every system with the same asyncio load generator, in `--peer-rounds` rounds that take the
systems in turn (medians), and prints one table: each figure for each system, the limit, and scriptbus as
a ratio to the best peer and to the limit. The load generator's own CPU is printed too, so a figure it
bounded shows. Then scriptbus alone: unbroken output, live-output latency and the workflow figures
(bench/workflows.py; `--no-extras` skips them). Stops everything it started, on Ctrl-C and errors too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import nats
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import LINE, TERMINAL, Figures, measure, median_figures, wait_all, warm_up
from limits import bash_cpu_per_spawn, bash_spawn_rate, copy_rate, pipe_throughput
from systems import READER_SEED, System, celery_missing, start_celery, start_scriptbus, start_toy
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

MB = 1_000_000


@dataclass(frozen=True)
class Limits:
    spawn: float  # `bash -c true` per second, 32 at a time
    bash_cpu: float  # CPU seconds of one `bash -c true`
    pipe: float  # bytes/s through a pipe
    copy: float  # bytes/s of COPY of random bytes into scriptbus's PostgreSQL
    copy_lines: float  # the same, of the lines figure's own bytes (they compress)


@dataclass(frozen=True)
class Settings:
    runs: int
    rounds: int
    latency_posts: int
    lines_bytes: int
    sleeps: int
    sleep_s: float
    extras: bool


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    return Settings(
        runs=args.runs or (300 if quick else 2000),
        rounds=args.peer_rounds or (1 if quick else 3),
        latency_posts=60 if quick else 200,
        lines_bytes=(args.lines_mb or (20 if quick else 50)) * MB,
        sleeps=args.sleeps or (100 if quick else 500),
        sleep_s=args.sleep_s or (6 if quick else 10),
        extras=not (quick or args.no_extras),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 2 min): fewer runs, one round")
    parser.add_argument("--runs", type=int, help="runs of `true` for runs/s (2000; --quick 300)")
    parser.add_argument("--peer-rounds", type=int, help="interleaved rounds, medians taken (3; --quick 1)")
    parser.add_argument("--lines-mb", type=int, help="MB of 100-byte lines for the output figure (50; --quick 20)")
    parser.add_argument("--sleeps", type=int, help="sleeping runs submitted at once (500; --quick 100)")
    parser.add_argument("--sleep-s", type=float, help="how long each of them sleeps (10; --quick 6)")
    parser.add_argument("--celery-concurrency", type=int, nargs="+", default=[2, 8], help="Celery workers tried")
    parser.add_argument("--no-peers", action="store_true", help="measure scriptbus alone")
    parser.add_argument("--no-extras", action="store_true", help="skip the scriptbus-only and workflow figures")
    parser.add_argument("--output-mb", type=int, default=200, help="MB of unbroken output (scriptbus alone)")
    parser.add_argument("--workflow-steps", type=int, default=20, help="sequential steps of the chained workflow")
    parser.add_argument("--workflow-runs", type=int, default=50, help="concurrent workflow runs")
    parser.add_argument("--workflows-only", action="store_true", help="only the workflow figures")
    args = parser.parse_args()
    settings = settings_from(args)

    with tempfile.TemporaryDirectory(prefix="scriptbus-bench-") as tmp, ExitStack() as stack:
        scriptbus, nats_url, pg_url = start_scriptbus(stack, Path(tmp) / "data")
        if args.workflows_only:
            wf = asyncio.run(workflows_only(scriptbus, nats_url, args.workflow_steps, args.workflow_runs))
            print_workflow_figures(*wf)
            return
        systems = [scriptbus]
        notes: list[str] = []
        if not args.no_peers:
            systems.append(start_toy(stack, Path(tmp) / "toy"))
            missing = celery_missing()
            if missing is None:
                for c in args.celery_concurrency:
                    systems.append(start_celery(stack, Path(tmp) / f"celery-c{c}", c))
            else:
                notes.append(f"Celery peer skipped: {missing}")
        started = time.monotonic()
        limits, figures, cpu, extras = asyncio.run(measure_all(systems, pg_url, nats_url, settings, args))
    print_table(systems, figures, limits, settings)
    print_cpu(cpu)
    for note in notes:
        print(f"note: {note}")
    if extras is not None:
        print_extras(*extras, limits)
    print(f"\n{date.today()}, {time.monotonic() - started:.0f} s of measuring, {os.cpu_count()} cores")


Extras = tuple[float, tuple[float, float], "WorkflowFigures"]


async def measure_all(
    systems: list[System], pg_url: str, nats_url: str, settings: Settings, args: argparse.Namespace
) -> tuple[Limits, dict[str, Figures], dict[str, dict[str, float]], Extras | None]:
    async with AsyncExitStack() as stack:
        clients = {
            s.name: await stack.enter_async_context(httpx.AsyncClient(base_url=s.url, timeout=120)) for s in systems
        }
        for s in systems:
            await warm_up(clients[s.name])
        # The limits once every system has started and settled: measured before, the spawn rate shared the
        # cores with the peers' start (Celery's workers importing): 382/s beside 730-860/s alone, same machine.
        bash_cpu, pipe = await bash_cpu_per_spawn(), await pipe_throughput()
        spawns: list[float] = []
        copies: list[float] = []
        copies_of_lines: list[float] = []
        rounds: dict[str, list[Figures]] = {s.name: [] for s in systems}
        roles: dict[str, list[dict[str, float]]] = {s.name: [] for s in systems}
        for r in range(settings.rounds):
            # The spawn rate in every round too (its median), as the systems' figures are.
            spawns.append(await bash_spawn_rate())
            # COPY too: measured once, a checkpoint or a neighbour's writes set the limit below the figure.
            copies.append(await copy_rate(pg_url))
            copies_of_lines.append(await copy_rate(pg_url, line=LINE))
            # Interleaved and in turn, so a neighbour's load on the shared cores falls on all alike.
            for s in systems[r % len(systems) :] + systems[: r % len(systems)]:
                print(f"round {r + 1}/{settings.rounds}: {s.name}", file=sys.stderr, flush=True)
                figures, by_role = await measure(
                    clients[s.name], s, runs=settings.runs, latency_posts=settings.latency_posts,
                    lines_bytes=settings.lines_bytes, sleeps=settings.sleeps, sleep_s=settings.sleep_s,
                )  # fmt: skip
                rounds[s.name].append(figures)
                roles[s.name].append(by_role)
        limits = Limits(
            spawn=statistics.median(spawns),
            bash_cpu=bash_cpu,
            pipe=pipe,
            copy=statistics.median(copies),
            copy_lines=statistics.median(copies_of_lines),
        )
        medians = {name: median_figures(each) for name, each in rounds.items()}
        cpu = {name: median_roles(each) for name, each in roles.items()}
        extras: Extras | None = None
        if settings.extras:
            client = clients[systems[0].name]
            output = await output_rate(client, args.output_mb * MB)
            live = await live_latency(client, nats_url)
            wf = await workflow_figures(client, nats_url, args.workflow_steps, args.workflow_runs)
            extras = (output, live, wf)
    return limits, medians, cpu, extras


def median_roles(rounds: list[dict[str, float]]) -> dict[str, float]:
    names = {name for r in rounds for name in r}
    return {name: statistics.median(r.get(name, 0.0) for r in rounds) for name in names}


def print_cpu(cpu: dict[str, dict[str, float]]) -> None:
    """Where each system's CPU per run of `true` goes, by process (the scripts are "children of" their runner)."""
    print("\nCPU per run of `true` (ms), by process, medians:")
    for name, by_role in cpu.items():
        parts = sorted(((v, role) for role, v in by_role.items() if v >= 0.05e-3), reverse=True)
        print(f"  {name}: " + ", ".join(f"{role} {v * 1000:.2f}" for v, role in parts))


@dataclass(frozen=True)
class Row:
    label: str
    value: Callable[[Figures], float]
    cell: Callable[[float], str]
    higher_is_better: bool
    limit: str = ""
    to_limit: Callable[[float], float] | None = None


def rows_for(limits: Limits, settings: Settings) -> list[Row]:
    ms = 1000
    mb = settings.lines_bytes / MB
    copy_mbs = limits.copy_lines / MB
    return [
        Row(f"runs of `true`/s, 32 clients, POST → finished and stored, {settings.runs} runs", lambda f: f.runs_per_s,
            lambda v: f"{v:.0f}", True, f"{limits.spawn:.0f} `bash -c true`/s", lambda v: v / limits.spawn),
        Row("CPU per run, all the system's processes (ms)", lambda f: f.cpu_per_run * ms, lambda v: f"{v:.1f}",
            False, f"{limits.bash_cpu * ms:.2f} (bash itself)", lambda v: v / (limits.bash_cpu * ms)),
        Row("POST latency, 1 client, p50 (ms)", lambda f: f.p50_1 * ms, lambda v: f"{v:.1f}", False),
        Row("POST latency, 1 client, p99 (ms)", lambda f: f.p99_1 * ms, lambda v: f"{v:.1f}", False),
        Row("POST latency, 32 clients, p50 (ms)", lambda f: f.p50_32 * ms, lambda v: f"{v:.0f}", False),
        Row("POST latency, 32 clients, p99 (ms)", lambda f: f.p99_32 * ms, lambda v: f"{v:.0f}", False),
        Row(f"{mb:.0f} MB of 100-byte lines, POST → fully stored (s)", lambda f: f.lines_s,
            lambda v: f"{v:.2f} s ({mb / v:.0f} MB/s)", False, f"COPY of those lines {copy_mbs:.0f} MB/s",
            lambda v: (mb / v) / copy_mbs),
        Row(f"{settings.sleeps} × `sleep {settings.sleep_s:g}` submitted at once: running together",
            lambda f: f.together, lambda v: f"{v:.0f}", True, f"{settings.sleeps}", lambda v: v / settings.sleeps),
    ]  # fmt: skip


def print_table(systems: list[System], figures: dict[str, Figures], limits: Limits, settings: Settings) -> None:
    """One markdown table: each figure per system, the limit, and scriptbus / best peer and / limit."""
    ours = systems[0].name
    toy = [s.name for s in systems if s.name == "toy"]
    celery = [s.name for s in systems if s.name.startswith("celery")]
    celery_head = ["celery (best of " + ", ".join(n.split()[1] for n in celery) + ")"] if celery else []
    heads = ["figure", ours, *toy, *celery_head, "machine limit", f"{ours} / best peer", f"{ours} / limit"]
    print(f"\n(medians of {settings.rounds} interleaved round(s); / best peer: above 1 is better for rates and counts,"
          " below 1 for times and CPU)")  # fmt: skip
    print("| " + " | ".join(heads) + " |")
    print("|" + " --- |" * len(heads))
    for row in rows_for(limits, settings):
        mine = row.value(figures[ours])
        cells = [row.label, row.cell(mine)]
        peers: list[float] = []
        if toy:
            peers.append(row.value(figures["toy"]))
            cells.append(row.cell(peers[-1]))
        if celery:
            pick = max if row.higher_is_better else min
            best = pick(celery, key=lambda n: row.value(figures[n]))
            peers.append(row.value(figures[best]))
            cells.append(f"{row.cell(peers[-1])} ({best.split()[1]})")
        cells.append(row.limit)
        best_peer = (max if row.higher_is_better else min)(peers) if peers else None
        cells.append(f"{mine / best_peer:.2f}" if best_peer else "")
        cells.append(f"{row.to_limit(mine):.2f}" if row.to_limit else "")
        print("| " + " | ".join(cells) + " |")
    share = " ".join(f"{s.name} {figures[s.name].loadgen_share:.2f}" for s in systems)
    print(f"\nload generator's own CPU during runs/s, in cores (of {os.cpu_count()}): {share}")


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


def print_extras(output: float, live: tuple[float, float], wf: WorkflowFigures, limits: Limits) -> None:
    print(f"\n{'scriptbus alone':44} {'scriptbus':>12} {'machine limit':>16} {'ratio':>7}")
    label = "unbroken output, pipe to PostgreSQL rows (MB/s)"
    print(f"{label:44} {output / MB:12.1f} {limits.pipe / MB:10.0f} pipe MB/s {output / limits.pipe:7.3f}")
    print(f"{'':44} {'':12} {limits.copy / MB:10.0f} COPY MB/s {output / limits.copy:7.2f}")
    print(f"{'line printed -> on NATS, p50 / p99 (ms)':44} {live[0]:12.1f} / {live[1]:.1f}")
    print()
    print_workflow_figures(*wf)


async def workflows_only(system: System, nats_url: str, steps: int, runs: int) -> WorkflowFigures:
    async with httpx.AsyncClient(base_url=system.url, timeout=60) as client:
        return await workflow_figures(client, nats_url, steps, runs)


if __name__ == "__main__":
    main()
