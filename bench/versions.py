"""scriptbus against another checkout of itself, side by side in one run: did a change make it faster?

    git worktree add /tmp/before <commit> && python bench/versions.py /tmp/before [--runs 1500] [--rounds 3]

Starts a real `scriptbus up` from this checkout and one from the other (its code on PYTHONPATH, this
environment's packages), each on free ports in a temporary folder, and takes them in turn for `--rounds`
rounds: runs of `true` per second at 32 clients (POST to finished and stored) with that figure's CPU per run
of every process, then the 1-client POST latency. Prints the medians and this checkout's over the other's.
On a noisy machine a change shows here, where both versions share the same minutes, better than in two
runs of bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import post_latency, run_rate, wait_all, warm_up
from systems import System, start_scriptbus

HERE = Path(__file__).resolve().parent.parent


async def one_round(system: System, runs: int, latency_posts: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=system.url, timeout=60) as client:
        rate = await run_rate(client, system, runs)
        p50, p99 = await post_latency(client, latency_posts)
        await wait_all(client)
    figures = {
        "runs of `true`/s, 32 clients": rate.runs_per_s,
        "POST p50 at 32 clients (ms)": rate.p50 * 1000,
        "POST p99 at 32 clients (ms)": rate.p99 * 1000,
        "POST p50 at 1 client (ms)": p50 * 1000,
        "CPU per run, all processes (ms)": rate.cpu_per_run * 1000,
    }
    figures.update({f"  {role} (ms)": seconds * 1000 for role, seconds in rate.by_role.items() if seconds > 0})
    return figures


Medians = dict[str, dict[str, float]]  # figure by name, per version


async def compare(systems: dict[str, System], rounds: int, runs: int, latency_posts: int) -> Medians:
    """Medians of each figure per version. One event loop throughout: the load generator keeps its
    connections between rounds."""
    for system in systems.values():
        async with httpx.AsyncClient(base_url=system.url, timeout=60) as client:
            await warm_up(client, 300)
    found: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    for n in range(rounds):
        for name, system in systems.items():
            print(f"round {n + 1}/{rounds}: {name}", flush=True)
            found[name].append(await one_round(system, runs, latency_posts))
    return {
        name: {key: statistics.median(r.get(key, 0.0) for r in each) for key in each[0]} for name, each in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="another checkout of this repository (a git worktree)")
    parser.add_argument("--runs", type=int, default=1500, help="runs of `true` per round (1500)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each version once per round (3)")
    parser.add_argument("--latency-posts", type=int, default=200, help="1-client POSTs per round (200)")
    args = parser.parse_args()
    other = args.other.resolve()
    if not (other / "scriptbus" / "__main__.py").exists():
        raise SystemExit(f"{other} is not a checkout of scriptbus")
    checkouts = {"other": other, "this": None}
    with ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scriptbus-versions-")))
        systems = {name: start_scriptbus(stack, data / name, checkout)[0] for name, checkout in checkouts.items()}
        medians = asyncio.run(compare(systems, args.rounds, args.runs, args.latency_posts))
    print(f"\nmedians of {args.rounds} rounds; this = {HERE}, other = {other}")
    print("| figure | other | this | this / other |\n| --- | --- | --- | --- |")
    for key, before in medians["other"].items():
        after = medians["this"].get(key, 0.0)
        print(f"| {key} | {before:.2f} | {after:.2f} | {after / before if before else float('nan'):.2f} |")


if __name__ == "__main__":
    main()
