"""The envelope every event shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field


def new_id() -> str:
    """A fresh identifier: a UUID4 in its canonical text form."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of all events: frozen data, unknown fields ignored so old readers survive new writers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str
    schema_version: int = 1
    event_id: str = Field(default_factory=new_id)
    occurred_at: datetime = Field(default_factory=utcnow)
