"""A run's events as Server-Sent Events: every JetStream message of the run, in stream order, each with
its stream sequence as the SSE id so a client resumes exactly after the last one it saw."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Collection
from functools import partial

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from scriptbus.events.output import OutputChunk
from scriptbus.events.publishing import run_ending_subjects
from scriptbus.events.runs import RUN_ENDING_TYPES, RunDeleted
from scriptbus.gateway import readmodels
from scriptbus.gateway.actions import require_bus
from scriptbus.gateway.errors import RunNotFound, bus_errors, db_errors
from scriptbus.gateway.run_messages import RunMessages
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

OUTPUT_EVENT = "output"
RUN_DELETED: str = RunDeleted.model_fields["type"].default
# A comment line this often keeps proxies and clients from timing out an idle stream.
KEEPALIVE_S = 15.0


async def first_seq(gw: Gateway, subject: str, start: int = 1) -> int | None:
    """The stream sequence of the first message at or after `start` on `subject` (wildcards allowed)."""
    try:
        msg = await gw.js.get_msg(gw.subjects.events_stream, seq=start, subject=subject, next=True)
    except nats.js.errors.NotFoundError:
        return None
    return msg.seq


async def _ended_before(gw: Gateway, run_id: str, start: int) -> bool:
    """True when the run's stream has ended (finished or deleted) before `start` and nothing that ends
    it comes at or after `start`: a client resuming there has seen all it will ever get."""
    ends = sorted(run_ending_subjects(gw.subjects, run_id))
    # "Before `start`" must be checked as such: the run may end between these look-ups, and an end
    # that lands after `start` is one the client has not seen (a first connection, start=1, never has).
    earlier = [await first_seq(gw, subject) for subject in ends]
    if not any(seq is not None and seq < start for seq in earlier):
        return False
    later = [await first_seq(gw, subject, start) for subject in ends]
    return all(seq is None for seq in later)


async def open_events(gw: Gateway, run_id: str, last_event_id: int | None) -> AsyncIterator[bytes] | None:
    """Check that the run exists (in the read model, or in the stream for a run not projected yet), then return an
    iterator of SSE frames from just after `last_event_id` up to the next event that ends the run's
    stream (`run.finished` or `run.deleted`); None when the client has already seen the last one."""
    with db_errors():
        status = await readmodels.get_status(gw.pool, run_id)
    require_bus(gw)
    s = gw.subjects
    start = (last_event_id or 0) + 1
    with bus_errors("read the run's events"):
        # Unknown to the read model but in the stream: a run not projected yet, unless it was deleted
        # (the recorder purges all of it but the `run.deleted`, which stays as a tombstone).
        if status is None and (
            await first_seq(gw, s.run_all(run_id)) is None
            or await first_seq(gw, s.run_event(run_id, RUN_DELETED.removeprefix("run."))) is not None
        ):
            raise RunNotFound(run_id)
        if await _ended_before(gw, run_id, start):
            return None
    messages = await RunMessages.open(gw, run_id, start, "read the run's events")
    return sse_frames(messages, partial(describe, s.prefix, run_id), RUN_ENDING_TYPES)


def frame(seq: int, kind: str, data: str) -> bytes:
    """One SSE event; every line of `data` becomes a `data:` line."""
    lines = [f"id: {seq}", f"event: {kind}", *(f"data: {line}" for line in data.split("\n"))]
    return ("\n".join(lines) + "\n\n").encode()


def describe(prefix: str, run_id: str, msg: Msg) -> tuple[str, str]:
    """(SSE event name, JSON data) of one message of a run."""
    # <prefix>.runs.<id>.<name>[.<target>]
    name = msg.subject[len(f"{prefix}.runs.{run_id}.") :].split(".")[0]
    if name == "out":
        chunk = OutputChunk.from_message(run_id, msg.data, msg.headers)
        data = {
            "stream": chunk.stream.value,
            "offset": chunk.offset,
            "data": base64.b64encode(chunk.data).decode(),
            "text": chunk.data.decode("utf-8", errors="replace"),
        }
        return OUTPUT_EVENT, json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"run.{name}", msg.data.decode("utf-8", errors="replace")


async def sse_frames(
    messages: RunMessages, describe_msg: Callable[[Msg], tuple[str, str]], last_kinds: Collection[str]
) -> AsyncIterator[bytes]:
    """SSE frames of `messages` (each described as (event name, data)), keepalive comments while quiet,
    up to and including the first event whose name is in `last_kinds`."""
    quiet_since = anyio.current_time()
    async with messages:
        async for msg in messages:
            if msg is None:
                if anyio.current_time() - quiet_since >= KEEPALIVE_S:
                    quiet_since = anyio.current_time()
                    yield b": keepalive\n\n"
                continue
            quiet_since = anyio.current_time()
            kind, data = describe_msg(msg)
            yield frame(msg.metadata.sequence.stream, kind, data)
            if kind in last_kinds:
                return
