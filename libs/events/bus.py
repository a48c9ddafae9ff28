"""Connecting to NATS: the settings every service shares and one function that wires them."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import nkeys
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scriptbus.events.nats_users import inbox_prefix
from scriptbus.events.streams import MAX_MSG_SIZE, Retention, ensure_streams
from scriptbus.events.subjects import Subjects

log = logging.getLogger(__name__)

# The failures of talking to NATS that services ride out (retrying or logging), as opposed to bugs:
# nats.errors.Error covers the JetStream and KV errors too; OSError the socket underneath.
BUS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, TimeoutError, OSError)

# What a service holds once connected: the connection, its JetStream context, and the subject names.
BusConnection = tuple[Client, JetStreamContext, Subjects]


class BusSettings(BaseSettings):
    """`SCRIPTBUS_NATS_URL`, `SCRIPTBUS_PREFIX`, and optional NATS credentials and TLS.

    `SCRIPTBUS_NATS_CREDS` is a file: an nkey seed (what `scriptbus up` and `scriptbus nats-user` write)
    or a JWT `.creds` file. `SCRIPTBUS_NATS_TLS_CA` (verify the server), `_CERT`/`_KEY` (our client
    certificate, when the server asks for one) switch the connection to TLS."""

    model_config = SettingsConfigDict(env_prefix="SCRIPTBUS_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "scriptbus"
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nats_creds: str | None = None
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
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

    def credential_options(self) -> dict[str, Any]:
        """nats-py `connect` options for the credential: user/password, token, nkey seed or JWT creds."""
        options: dict[str, Any] = {"user": self.nats_user, "password": self.nats_password, "token": self.nats_token}
        if self.nats_creds:
            path = Path(self.nats_creds).expanduser()
            try:
                text = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"SCRIPTBUS_NATS_CREDS: cannot read {path}: {exc.strerror}") from None
            if text.startswith("SU"):
                try:
                    public_key = nkeys.from_seed(bytearray(text.encode())).public_key.decode()
                except nkeys.NkeysError as exc:
                    raise ValueError(f"SCRIPTBUS_NATS_CREDS: {path} is not a valid nkey seed ({exc!r})") from None
                # The server lets this user read only below its own inbox prefix.
                options.update(nkeys_seed=str(path), inbox_prefix=inbox_prefix(public_key))
            else:
                options["user_credentials"] = str(path)
        return options

    def tls_context(self) -> ssl.SSLContext | None:
        """A client TLS context when any of the TLS settings is given, else None (plain TCP)."""
        if not (self.nats_tls_ca or self.nats_tls_cert):
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.nats_tls_ca)
        if self.nats_tls_cert:
            context.load_cert_chain(self.nats_tls_cert, self.nats_tls_key)
        return context


# Executors connect as `scriptbus-executor-<host>`. Under `up` their NATS user may not create or change
# streams: they use what another service made, and make it themselves only where the server lets them.
EXECUTOR_NAME = "scriptbus-executor"
STREAMS_RETRY_S = 2.0
# A create the server refuses is never answered: the try gives up after this.
CREATE_TRY_TIMEOUT_S = 2.0


async def wait_for_streams(nc: Client, s: Subjects, retention: Retention) -> None:
    """Until the events and executors streams and the claims bucket exist: try to create them (refused
    when this user lacks the right), then say what is missing and try again."""
    js = nc.jetstream(timeout=CREATE_TRY_TIMEOUT_S)
    while True:
        missing = []
        for stream in (s.events_stream, s.executors_stream, f"KV_{s.claims_bucket}"):
            try:
                await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                missing.append(stream)
        if not missing:
            return
        try:
            await ensure_streams(js, s, retention)
            return
        except (nats.errors.TimeoutError, nats.js.errors.APIError):
            pass
        log.warning(
            "waiting for the streams %s: this executor may not create them; the gateway, recorder or "
            "scheduler does when it starts; retrying in %gs",
            ", ".join(missing),
            STREAMS_RETRY_S,
        )
        await asyncio.sleep(STREAMS_RETRY_S)


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
    tls = settings.tls_context()
    try:
        await nc.connect(
            settings.nats_url,
            name=name,
            **settings.credential_options(),
            tls=tls,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py takes float seconds; annotated int
            connect_timeout=5,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
        js = nc.jetstream(timeout=10)
        if name.startswith(EXECUTOR_NAME):
            await wait_for_streams(nc, subjects, settings.events_retention())
        else:
            await ensure_streams(js, subjects, settings.events_retention())
    except BaseException:
        # A cancelled connect would otherwise go on retrying in the background.
        await asyncio.shield(nc.close())
        raise
    return nc, js, subjects
