"""Event values as the read models store them: the conversions every projection module shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def aware(t: datetime) -> datetime:
    """`t` with a timezone: a naive time from an event is UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def uuid_or_none(value: str | None) -> uuid.UUID | None:
    """An id nothing upstream checked (a command's, a workflow run's, a fan-out's): None if not a UUID."""
    try:
        return strict_uuid(value)
    except ValueError:
        return None


def strict_uuid(value: str | None) -> uuid.UUID | None:
    """An id the event names, or None; ValueError for one that is not a UUID (the message is then skipped)."""
    return uuid.UUID(value) if value else None
