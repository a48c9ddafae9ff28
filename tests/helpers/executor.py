"""The executor as a real process, driven the way the gateway drives it: run requests published to
NATS, and each run's record read back from the events stream as the recorder and users see it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from scriptbus.events import (
    Event,
    OutputChunk,
    OutputStream,
    RunFinished,
    RunRequested,
    RunStarted,
    Subjects,
    decode_event,
    ensure_queue,
    new_id,
    publish_event,
)
from tests.helpers.processes import ServiceProcess, StartService

E = TypeVar("E", bound=Event)


@dataclass
class RunRecord:
    """Everything the events stream holds about one run, in stream order."""

    events: list[Event] = field(default_factory=list)
    chunks: list[OutputChunk] = field(default_factory=list)
    # ("event", type) or ("out", offset), in stream order: to check the finish comes after all output.
    order: list[tuple[str, str | int]] = field(default_factory=list)

    def of(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    @property
    def started(self) -> RunStarted:
        (started,) = self.of(RunStarted)
        return started

    @property
    def finished(self) -> RunFinished:
        (finished,) = self.of(RunFinished)
        return finished

    def output(self, stream: OutputStream | None = None) -> bytes:
        return b"".join(c.data for c in self.chunks if stream is None or c.stream == stream)


async def start_executor(start_service: StartService, *args: str, env: dict[str, str] | None = None) -> ServiceProcess:
    proc: ServiceProcess = start_service("executor", *args, env=env)
    await asyncio.to_thread(proc.wait_for_log, r"executor ready", 60)
    return proc


async def request_run(js: JetStreamContext, s: Subjects, script: str, **fields: Any) -> RunRequested:
    """Publish a run request the way the gateway does: the target's queue first, then the event."""
    request = RunRequested(run_id=new_id(), script=script, **fields)
    await ensure_queue(js, s, request.target)
    await publish_event(js, s, request)
    return request


async def follow(js: JetStreamContext, subject: str) -> JetStreamContext.PushSubscription:
    return await js.subscribe(subject, ordered_consumer=True)


def _take(record: RunRecord, msg: Msg) -> None:
    if msg.subject.endswith(".out"):
        run_id = msg.subject.split(".")[-2]
        chunk = OutputChunk.from_message(run_id, msg.data, msg.headers)
        record.chunks.append(chunk)
        record.order.append(("out", chunk.offset))
    else:
        event = decode_event(msg.data)
        assert event is not None
        record.events.append(event)
        record.order.append(("event", event.type))


async def wait_run(
    js: JetStreamContext, s: Subjects, run_id: str, *, until: type[Event] = RunFinished, timeout: float = 60
) -> RunRecord:
    """Read the run's events from the start of the stream until an event of type `until` arrives."""
    record = RunRecord()
    sub = await follow(js, s.run_all(run_id))
    deadline = time.monotonic() + timeout
    try:
        while not record.of(until):
            left = deadline - time.monotonic()
            assert left > 0, f"no {until.__name__} for {run_id} within {timeout}s: {record.events}"
            _take(record, await sub.next_msg(timeout=left))
    finally:
        await sub.unsubscribe()
    return record


async def wait_runs(js: JetStreamContext, s: Subjects, run_ids: set[str], timeout: float = 120) -> dict[str, RunRecord]:
    """Every record of the given runs, once each of them has finished."""
    records = {run_id: RunRecord() for run_id in run_ids}
    open_runs = set(run_ids)
    sub = await follow(js, f"{s.prefix}.runs.>")
    deadline = time.monotonic() + timeout
    try:
        while open_runs:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(open_runs)} runs still unfinished after {timeout}s"
            msg = await sub.next_msg(timeout=left)
            run_id = msg.subject.split(".")[2]
            if run_id not in records:
                continue
            _take(records[run_id], msg)
            if records[run_id].of(RunFinished):
                open_runs.discard(run_id)
    finally:
        await sub.unsubscribe()
    return records


def assert_output_consistent(record: RunRecord) -> None:
    """Offsets count the run's bytes in publish order; stream offsets count each stream alone; the
    finish comes after every chunk and counts them all."""
    offset = 0
    per_stream = {OutputStream.STDOUT: 0, OutputStream.STDERR: 0}
    for chunk in record.chunks:
        assert chunk.offset == offset
        assert chunk.stream_offset == per_stream[chunk.stream]
        assert 0 < len(chunk.data) <= 64 * 1024
        offset += len(chunk.data)
        per_stream[chunk.stream] += len(chunk.data)
    assert record.finished.output_bytes == offset
    assert record.order[-1] == ("event", "run.finished")
