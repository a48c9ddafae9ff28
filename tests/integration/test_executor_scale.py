"""Many sleeping runs on one executor with its default cap: all running at once, while the executor's
threads stay put and its memory grows by little per run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.msg import Msg

from scriptbus.events import RunFinished, RunRequested, RunStarted, decode_event, ensure_queue, new_id, publish_event
from tests.helpers.executor import start_executor
from tests.helpers.processes import StartService
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually

RUNS = 300
FIRST = 30


def _status(pid: int) -> dict[str, int]:
    """Threads, resident KiB and open fds of process `pid`."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {
        "threads": int(fields["Threads"]),
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
    }


async def test_hundreds_of_sleeping_runs_at_once_by_default(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    executor = await start_executor(start_service)  # no --max-concurrency: the machine's default
    started: set[str] = set()
    finished: set[str] = set()

    async def seen(msg: Msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event, RunStarted):
            started.add(event.run_id)
        elif isinstance(event, RunFinished):
            finished.add(event.run_id)

    sub = await js.subscribe(f"{s.prefix}.runs.*.*", ordered_consumer=True, cb=seen)
    await ensure_queue(js, s, "default")

    async def submit(n: int) -> None:
        requests = [RunRequested(run_id=new_id(), script="sleep 600") for _ in range(n)]
        await asyncio.gather(*(publish_event(js, s, r) for r in requests))

    await submit(FIRST)
    await eventually(lambda: len(started) == FIRST, 60, what=f"{FIRST} runs started")
    few = _status(executor.pid)
    await submit(RUNS - FIRST)
    await eventually(lambda: len(started) == RUNS, 120, what=f"{RUNS} runs started")
    many = _status(executor.pid)
    await sub.unsubscribe()

    assert not finished, f"{len(finished)} runs ended early"
    # No thread per child: a few more at most (a thread pool that was not full yet), never one per run.
    assert many["threads"] - few["threads"] <= 4, (few, many)
    more = RUNS - FIRST
    # A sleeping run costs the executor a handful of fds and a few KiB, not buffers.
    assert (many["fds"] - few["fds"]) / more <= 6, (few, many)
    assert (many["rss_kib"] - few["rss_kib"]) / more <= 200, (few, many)
