"""What the claims bucket holds: who took a run. `create` of a run's key is the one atomic claim; the value
says whether an executor instance took it (and will start it) or a stop took it (and nobody ever will).

Executor claims carry a prefix no cancel has, so no host name or executor id can write a cancel."""

from __future__ import annotations

import uuid

# The claim a stop takes on a run no executor holds: no executor will ever start it.
CANCELLED_CLAIM = b"cancelled"
CANCEL_REASON = "stopped before it started"
_EXECUTOR_PREFIX = b"executor:"


def executor_claim(executor_id: str) -> bytes:
    """The value an executor instance writes when it takes a run."""
    return _EXECUTOR_PREFIX + executor_id.encode()


def is_cancel(value: bytes | None) -> bool:
    """True when the claim was taken by a stop before any executor started the run."""
    return value == CANCELLED_CLAIM


def claim_holder(value: bytes | None) -> str | None:
    """The executor id that holds the run, or None (a cancel, or a claim of an older version)."""
    if value is None or not value.startswith(_EXECUTOR_PREFIX):
        return None
    return value[len(_EXECUTOR_PREFIX) :].decode(errors="replace")


def cancel_event_id(run_id: str) -> str:
    """The `run.finished` (cancelled) of a run stopped before it started: the same id for every attempt
    to cancel it, whoever makes it, so JetStream keeps only the first."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"scriptbus:run:{run_id}:cancelled"))
