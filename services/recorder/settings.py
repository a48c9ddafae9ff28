"""Recorder settings, read from `SCRIPTBUS_*` environment variables."""

from __future__ import annotations

from pydantic import Field

from scriptbus.events.lifecycle import ServiceSettings


class RecorderSettings(ServiceSettings):
    """`SCRIPTBUS_DATABASE_URL`, batch sizing, plus the bus settings every service shares."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/scriptbus"
    # Messages applied in one transaction at most.
    batch_size: int = Field(default=1000, ge=1)
    # A batch also ends at about this many bytes (never below the largest message the stream accepts):
    # nats-server drops a client it has more than 64 MiB (its default max_pending) queued for.
    batch_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # How long one idle long-poll for the next message lasts; bounds how fast an idle recorder
    # notices that its consumer is gone.
    idle_wait_s: float = Field(default=1.0, gt=0)
