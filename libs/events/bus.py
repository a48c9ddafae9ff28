"""Connecting to NATS: the settings every service shares and one function that wires them."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scriptbus.events.streams import MAX_MSG_SIZE, Retention, ensure_streams
from scriptbus.events.subjects import Subjects

log = logging.getLogger(__name__)

# The failures of talking to NATS that services ride out (retrying or logging), as opposed to bugs:
# nats.errors.Error covers the JetStream and KV errors too; OSError the socket underneath.
BUS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, TimeoutError, OSError)

# What a service holds once connected: the connection, its JetStream context, and the subject names.
BusConnection = tuple[Client, JetStreamContext, Subjects]


class BusSettings(BaseSettings):
    """`SCRIPTBUS_NATS_URL`, `SCRIPTBUS_PREFIX`, and optional NATS credentials."""

    model_config = SettingsConfigDict(env_prefix="SCRIPTBUS_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "scriptbus"
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nats_creds: str | None = None
    # Retention of the events stream, applied by every service that starts with it set; unset leaves the
    # stream as it is, and a new stream keeps everything. 0 seconds / -1 bytes: unlimited.
    events_max_age_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    events_max_bytes: int | None = Field(default=None, ge=-1)

    @field_validator("events_max_bytes")
    @classmethod
    def _room_for_one_message(cls, value: int | None) -> int | None:
        if value is not None and 0 <= value < MAX_MSG_SIZE:
            raise ValueError(f"must be -1 (unlimited) or at least {MAX_MSG_SIZE} (one message of the largest size)")
        return value

    def events_retention(self) -> Retention:
        return Retention(max_age_s=self.events_max_age_s, max_bytes=self.events_max_bytes)


async def connect_bus(settings: BusSettings, name: str) -> BusConnection:
    """Connect, retrying forever on reconnects, and create the streams if this is the first service up.
    Cancelling it (see `lifecycle.connect_bus_unless_stopped`) closes the half-made connection."""
    subjects = Subjects(settings.prefix)

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        if nc.is_closed:  # our own close, at shutdown
            log.debug("nats: connection closed")
        else:
            log.warning("nats: disconnected")

    async def on_reconnect() -> None:
        log.info("nats: reconnected")

    nc = Client()
    try:
        await nc.connect(
            settings.nats_url,
            name=name,
            user=settings.nats_user,
            password=settings.nats_password,
            token=settings.nats_token,
            user_credentials=settings.nats_creds,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py takes float seconds; annotated int
            connect_timeout=5,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
        js = nc.jetstream(timeout=10)
        await ensure_streams(js, subjects, settings.events_retention())
    except BaseException:
        # A cancelled connect would otherwise go on retrying in the background.
        await asyncio.shield(nc.close())
        raise
    return nc, js, subjects
