"""A workflow run's events as Server-Sent Events: every message under `<prefix>.wfruns.<id>.>`, in stream
order, each with its stream sequence as the SSE id (resumable as a run's `/events`), up to
`wfrun.finished`. The step runs' own events and output are at `/api/v1/runs/{run_id}/events`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from scriptbus.events.workflows import WfRunFinished
from scriptbus.gateway import workflow_readmodels
from scriptbus.gateway.actions import require_bus
from scriptbus.gateway.errors import bus_errors, db_errors
from scriptbus.gateway.events_sse import first_seq, sse_frames
from scriptbus.gateway.run_messages import CONSUMER_INACTIVE_S, RunMessages
from scriptbus.gateway.state import Gateway
from scriptbus.gateway.workflow_actions import WorkflowRunNotFound

FINISHED: str = WfRunFinished.model_fields["type"].default


async def open_events(gw: Gateway, wfrun_id: str, last_event_id: int | None) -> AsyncIterator[bytes] | None:
    """SSE frames of the workflow run from just after `last_event_id`; None when the client has already
    seen its `wfrun.finished`."""
    with db_errors():
        status = await workflow_readmodels.run_status(gw.pool, wfrun_id)
    require_bus(gw)
    s = gw.subjects
    start = (last_event_id or 0) + 1
    finished = s.wfrun_event(wfrun_id, FINISHED.removeprefix("wfrun."))
    with bus_errors("read the workflow run's events"):
        if status is None and await first_seq(gw, s.wfrun_all(wfrun_id)) is None:
            raise WorkflowRunNotFound(wfrun_id)
        end = await first_seq(gw, finished)
        if end is not None and end < start:
            return None
        sub = await gw.js.subscribe(
            s.wfrun_all(wfrun_id),
            stream=s.events_stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start > 1 else DeliverPolicy.ALL,
            config=ConsumerConfig(opt_start_seq=start) if start > 1 else None,
            inactive_threshold=CONSUMER_INACTIVE_S,
        )
    return sse_frames(RunMessages(gw, wfrun_id, sub), _describe, {FINISHED})


def _describe(msg: Msg) -> tuple[str, str]:
    """(SSE event name, JSON data) of a workflow run's message: its event type, its JSON as stored."""
    data = msg.data.decode("utf-8", errors="replace")
    try:
        kind = str(json.loads(data).get("type", "message"))
    except (ValueError, AttributeError):
        kind = "message"
    return kind, data
