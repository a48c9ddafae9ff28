"""Reading one stored event back by its subject."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext

from scriptbus.events.codec import decode_event
from scriptbus.events.runs import RunFinished
from scriptbus.events.subjects import Subjects


async def run_finish(js: JetStreamContext, s: Subjects, run_id: str) -> RunFinished | None:
    """The run's stored `run.finished` (the last one; the first one wins, but any means it ended), or None."""
    try:
        raw = await js.get_last_msg(s.events_stream, s.run_event(run_id, "finished"))
    except nats.js.errors.NotFoundError:
        return None
    event = decode_event(raw.data or b"{}")
    return event if isinstance(event, RunFinished) else None
