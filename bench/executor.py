"""The executor alone, on its own nats-server: runs/s of `true`, heavy output, sparse-line latency.

    python bench/executor.py [--runs 500] [--output-mb 50] [--lines 100]

No gateway, recorder or PostgreSQL: requests are published the way the gateway does and results read
from the stream, so the figures are the executor's own. Runs/s is printed as a ratio to this machine's
raw spawn rate (`bash -c true` one after another) measured in the same run; CPU is the executor's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.msg import Msg

from scriptbus.events import (
    OutputChunk,
    RunFinished,
    RunRequested,
    Subjects,
    decode_event,
    ensure_queue,
    ensure_streams,
    new_id,
    publish_event,
)

PREFIX = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_spawn_rate(n: int = 300) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["bash", "-c", "true"], check=True)
    return n / (time.perf_counter() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--output-mb", type=int, default=50)
    ap.add_argument("--lines", type=int, default=100)
    ap.add_argument("--profile", metavar="PATH", help="run the executor under cProfile, stats written to PATH")
    ap.add_argument("--only-runs", action="store_true", help="measure runs/s only")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    port = _free_port()
    server_bin = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    server = subprocess.Popen(
        [server_bin, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    executor: subprocess.Popen[bytes] | None = None
    try:
        url = f"nats://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=10)
        s = Subjects(PREFIX)
        await ensure_streams(js, s)
        await ensure_queue(js, s, "default")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_")}
        env.update(
            SCRIPTBUS_NATS_URL=url,
            SCRIPTBUS_PREFIX=PREFIX,
            SCRIPTBUS_WORK_DIR=str(tmp / "runs"),
            SCRIPTBUS_LOG_LEVEL="WARNING",
        )
        log = (tmp / "executor.log").open("wb")
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        executor = subprocess.Popen(
            [sys.executable, *profile, "-m", "scriptbus", "executor", "--host", "bench"],
            env=env,
            stdout=log,
            stderr=log,
        )

        finished: dict[str, float] = {}
        chunks: dict[str, int] = {}
        waiters: dict[str, asyncio.Future[None]] = {}

        async def on_msg(msg: Msg) -> None:
            run_id = msg.subject.split(".")[2]
            if msg.subject.endswith(".out"):
                chunks[run_id] = chunks.get(run_id, 0) + 1
                return
            event = decode_event(msg.data)
            if isinstance(event, RunFinished):
                finished[run_id] = time.perf_counter()
                w = waiters.pop(run_id, None)
                if w is not None and not w.done():
                    w.set_result(None)

        await nc.subscribe(f"{PREFIX}.runs.*.>", cb=on_msg)

        async def run(script: str) -> str:
            request = RunRequested(run_id=new_id(), script=script)
            waiters[request.run_id] = asyncio.get_running_loop().create_future()
            await publish_event(js, s, request)
            return request.run_id

        # Warm up: the executor is ready once a run goes through.
        rid = await run("true")
        await asyncio.wait_for(waiters.get(rid) or asyncio.sleep(0), 60)

        # Raw spawns just before and just after, so a neighbour's load moving meanwhile skews the ratio less.
        raw_before = await asyncio.to_thread(raw_spawn_rate, 150)
        cpu0 = _cpu_s(executor.pid)
        t0 = time.perf_counter()
        ids = await asyncio.gather(*(run("true") for _ in range(args.runs)))
        await asyncio.wait_for(asyncio.gather(*(w for i, w in list(waiters.items()) if i in set(ids))), 300)
        elapsed = max(finished[i] for i in ids) - t0
        cpu = _cpu_s(executor.pid) - cpu0
        rate = args.runs / elapsed
        raw_after = await asyncio.to_thread(raw_spawn_rate, 150)
        raw = (raw_before + raw_after) / 2
        print(
            f"runs of true: {rate:.0f}/s, {rate / raw:.2f} of raw spawn "
            f"({raw_before:.0f}/s before, {raw_after:.0f}/s after); "
            f"executor CPU {cpu * 1000 / args.runs:.2f} ms/run"
        )

        if args.only_runs:
            return
        size = args.output_mb * 1_000_000
        cpu0 = _cpu_s(executor.pid)
        t0 = time.perf_counter()
        rid = await run(f"yes {'x' * 99} | head -c {size}")
        await asyncio.wait_for(waiters[rid], 300)
        elapsed = finished[rid] - t0
        cpu = _cpu_s(executor.pid) - cpu0
        print(
            f"{args.output_mb} MB of 100-byte lines: {elapsed:.2f} s ({size / elapsed / 1e6:.0f} MB/s), "
            f"{chunks.get(rid, 0)} chunks, executor CPU {cpu:.2f} s"
        )

        latencies: list[float] = []
        run_id = new_id()

        async def on_line(msg: Msg) -> None:
            now = time.time()
            chunk = OutputChunk.from_message(run_id, msg.data, msg.headers)
            for line in chunk.data.decode().split():
                latencies.append((now - float(line)) * 1000)

        sub = await nc.subscribe(s.run_output(run_id), cb=on_line)
        request = RunRequested(
            run_id=run_id, script=f"for i in $(seq {args.lines}); do echo $EPOCHREALTIME; sleep 0.01; done"
        )
        waiters[run_id] = asyncio.get_running_loop().create_future()
        await publish_event(js, s, request)
        await asyncio.wait_for(waiters[run_id], 120)
        await sub.unsubscribe()
        latencies.sort()
        print(
            f"sparse line → subscriber: p50 {statistics.median(latencies):.2f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.2f} ms ({len(latencies)} lines)"
        )
        await nc.close()
    finally:
        if executor is not None:
            executor.terminate()
            executor.wait(30)
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
