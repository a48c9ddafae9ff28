"""Workflow runs as the stream tells them: requested the way the gateway will, read back event by event."""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

import nats.js.errors
from nats.js import JetStreamContext

from scriptbus.events import Event, RunStarted, Subjects, decode_event, new_id, publish_event
from scriptbus.events.workflows import StepSpec, WfRunFinished, WfRunRequested, workflow_id

E = TypeVar("E", bound=Event)


async def stored(js: JetStreamContext, s: Subjects, subject: str) -> list[tuple[int, Event]]:
    """Every event stored on `subject` (wildcards allowed), in stream order, with its sequence."""
    found: list[tuple[int, Event]] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(s.events_stream, seq=seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return found
        # Output chunks are raw bytes, not events.
        event = None if (msg.subject or "").endswith(".out") else decode_event(msg.data or b"{}")
        if event is not None:
            found.append((msg.seq or 0, event))
        seq = (msg.seq or 0) + 1


def of(events: list[tuple[int, Event]], cls: type[E]) -> list[E]:
    return [e for _, e in events if isinstance(e, cls)]


async def wfrun_events(js: JetStreamContext, s: Subjects, wfrun_id: str) -> list[tuple[int, Event]]:
    return await stored(js, s, s.wfrun_all(wfrun_id))


async def finished(js: JetStreamContext, s: Subjects, wfrun_id: str) -> WfRunFinished | None:
    """The workflow run's `wfrun.finished`, if it has one (asserting it has at most one)."""
    ends = of(await wfrun_events(js, s, wfrun_id), WfRunFinished)
    assert len(ends) <= 1, ends
    return ends[0] if ends else None


async def starts(js: JetStreamContext, s: Subjects) -> Counter[str]:
    """How many times each run was started, counted from the stream."""
    return Counter(e.run_id for e in of(await stored(js, s, s.run_event("*", "started")), RunStarted))


async def request_wfrun(
    js: JetStreamContext, s: Subjects, steps: list[StepSpec], project: str = "pr1", workflow: str = "wf1"
) -> WfRunRequested:
    """Publish a `wfrun.requested` as the gateway will (its REST routes come later)."""
    event = WfRunRequested(
        wfrun_id=new_id(),
        project=project,
        workflow=workflow,
        workflow_id=workflow_id(project, workflow),
        version=1,
        steps=steps,
    )
    await publish_event(js, s, event)
    return event
