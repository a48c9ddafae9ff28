"""A run's events as Server-Sent Events: live while it runs, resumable with Last-Event-ID with every
output byte exactly once, waiting for a run not yet started, replaying a finished one and closing."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from scriptbus.events import OutputChunk, OutputStream, RunFinished, RunStarted, RunStatus, publish_event
from tests.helpers.api import wait_for_status
from tests.helpers.gateway import Api, create
from tests.helpers.processes import ServiceProcess
from tests.helpers.waiting import eventually


@dataclass
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


async def read_events(
    client: httpx.AsyncClient,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    outputs_before_leaving: int | None = None,
    received: list[SseEvent] | None = None,
) -> tuple[list[SseEvent], bool]:
    """The events of one connection, and whether the server ended the stream (rather than us leaving
    after `outputs_before_leaving` output events)."""
    events = received if received is not None else []
    fields: dict[str, str] = {}
    data: list[str] = []
    async with client.stream(
        "GET", f"/api/v1/runs/{run_id}/events", headers=headers, params=params, timeout=60
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
                continue
            if not fields and not data:
                continue  # the end of a comment-only block (a keepalive)
            events.append(SseEvent(int(fields["id"]), fields["event"], json.loads("\n".join(data))))
            fields, data = {}, []
            outputs = sum(e.event == "output" for e in events)
            if outputs_before_leaving is not None and outputs >= outputs_before_leaving:
                return events, False
    return events, True


def output_bytes(events: list[SseEvent]) -> bytes:
    return b"".join(base64.b64decode(e.data["data"]) for e in events if e.event == "output")


async def test_resuming_mid_run_yields_every_byte_once_and_a_finished_run_replays(
    api: Api, start_service: Callable[..., ServiceProcess]
) -> None:
    start_service("executor", "--host", "sse-host")
    script = "for i in $(seq 1 40); do echo \"line $i\"; sleep 0.05; done; printf '\\xff\\xfe end'"
    expected = b"".join(f"line {i}\n".encode() for i in range(1, 41)) + b"\xff\xfe end"
    run = await create(api, script=script)

    first, ended = await read_events(api.client, run["id"], outputs_before_leaving=5)
    assert not ended
    assert [e.event for e in first[:2]] == ["run.requested", "run.started"]
    assert first[0].data["run_id"] == run["id"] and first[0].data["script"] == script
    assert first[1].data["host"] == "sse-host"
    # Resume where the first connection left off, as EventSource would.
    rest, ended = await read_events(api.client, run["id"], headers={"Last-Event-ID": str(first[-1].id)})
    assert ended, "the stream closes after run.finished"
    events = first + rest
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "ids strictly increase: nothing twice"
    assert rest[0].id > first[-1].id
    assert events[-1].event == "run.finished" and events[-1].data["status"] == "succeeded"
    assert output_bytes(events) == expected
    offset = 0
    for e in events:
        if e.event == "output":
            chunk = base64.b64decode(e.data["data"])
            assert e.data["offset"] == offset and e.data["stream"] == "stdout"
            assert e.data["text"] == chunk.decode("utf-8", errors="replace")
            offset += len(chunk)

    # A finished run replays whole and closes.
    replay, ended = await read_events(api.client, run["id"])
    assert ended and [(e.id, e.event) for e in replay] == [(e.id, e.event) for e in events]
    # Resuming by query parameter (the header wins when both are given).
    started_id = events[1].id
    after_start, ended = await read_events(api.client, run["id"], params={"last_event_id": started_id})
    assert ended and [e.id for e in after_start] == ids[2:]
    header_wins, _ = await read_events(
        api.client, run["id"], params={"last_event_id": 0}, headers={"Last-Event-ID": str(started_id)}
    )
    assert [e.id for e in header_wins] == ids[2:]
    # Past the end nothing more will come: 204, which tells an EventSource to stop reconnecting.
    past_end = await api.client.get(f"/api/v1/runs/{run['id']}/events", headers={"Last-Event-ID": str(ids[-1])})
    assert past_end.status_code == 204 and past_end.content == b""

    # A deleted run is gone: its events are not served any more, from anywhere.
    assert (await api.client.delete(f"/api/v1/runs/{run['id']}")).status_code == 204
    for headers in ({}, {"Last-Event-ID": str(ids[-1])}):
        gone = await api.client.get(f"/api/v1/runs/{run['id']}/events", headers=headers)
        assert gone.status_code == 404 and gone.json() == {"detail": f"run {run['id']} not found"}


async def test_a_run_not_started_yet_is_waited_for(api: Api, start_service: Callable[..., ServiceProcess]) -> None:
    run = await create(api, pool="later", script="echo started late")
    received: list[SseEvent] = []
    reader = asyncio.create_task(read_events(api.client, run["id"], received=received))
    await eventually(lambda: received or reader.done(), 60, what="the first event")
    assert received, reader
    assert [e.event for e in received] == ["run.requested"]
    start_service("executor", "--host", "late-host", "--pool", "later")
    events, ended = await asyncio.wait_for(reader, 60)
    assert ended
    assert [e.event for e in events] == ["run.requested", "run.started", "output", "run.finished"]
    assert output_bytes(events) == b"started late\n"


async def test_a_cancelled_run_ends_its_stream_and_unknown_runs_are_404(api: Api) -> None:
    run = await create(api, pool="nobody")
    received: list[SseEvent] = []
    reader = asyncio.create_task(read_events(api.client, run["id"], received=received))
    await eventually(lambda: received, 60, what="the first event")
    assert (await api.client.post(f"/api/v1/runs/{run['id']}/stop")).status_code == 202
    events, ended = await asyncio.wait_for(reader, 30)
    assert ended and [e.event for e in events] == ["run.requested", "run.finished"]
    assert events[1].data["status"] == "cancelled"
    await wait_for_status(api.client, run["id"], "cancelled")

    unknown = str(uuid.uuid4())
    missing = await api.client.get(f"/api/v1/runs/{unknown}/events")
    assert missing.status_code == 404 and missing.json() == {"detail": f"run {unknown} not found"}
    bad = await api.client.get("/api/v1/runs/not-a-uuid/events")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "run_id"]
    negative = await api.client.get(f"/api/v1/runs/{run['id']}/events", headers={"Last-Event-ID": "-1"})
    assert negative.status_code == 422


async def test_a_first_connection_racing_the_finish_still_gets_every_event(api: Api) -> None:
    # The run ends while the gateway is deciding whether the client has already seen its end: a client
    # that has seen nothing must get the whole stream, never "204: you are past the end". Many at once,
    # so the gateway's look-ups and the finishes interleave.
    async def finish_after(delay: float, finish: RunFinished) -> None:
        await asyncio.sleep(delay)
        await publish_event(api.js, api.subjects, finish)

    async def one(delay: float) -> None:
        run_id = (await create(api))["id"]
        await publish_event(api.js, api.subjects, RunStarted(run_id=run_id, host="h", pid=1, executor_id="e"))
        chunk = OutputChunk(run_id, OutputStream.STDOUT, 0, 0, b"fine\n", "h")
        await api.js.publish(api.subjects.run_output(run_id), chunk.data, headers=chunk.headers())
        finish = RunFinished(run_id=run_id, status=RunStatus.SUCCEEDED, exit_code=0, output_bytes=5)
        (events, ended), _ = await asyncio.gather(read_events(api.client, run_id), finish_after(delay, finish))
        assert ended and output_bytes(events) == b"fine\n"
        assert events[-1].event == "run.finished"

    # Finishes spread over the few milliseconds the gateway takes to open the stream.
    for _ in range(4):
        await asyncio.gather(*(one(i * 0.001) for i in range(15)))
