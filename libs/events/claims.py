"""What the claims bucket's values mean beyond an executor's host, shared by whoever cancels runs."""

from __future__ import annotations

import uuid

# The claim a stop takes on a run no executor holds: no executor will ever start it.
CANCELLED_CLAIM = b"cancelled"
CANCEL_REASON = "stopped before it started"


def cancel_event_id(run_id: str) -> str:
    """The `run.finished` (cancelled) of a run stopped before it started: the same id for every attempt
    to cancel it, whoever makes it, so JetStream keeps only the first."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"scriptbus:run:{run_id}:cancelled"))
