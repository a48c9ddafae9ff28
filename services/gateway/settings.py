"""Gateway settings, read from `SCRIPTBUS_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from scriptbus.events.lifecycle import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Where the gateway listens, where the read models live, and who may call it."""

    model_config = SettingsConfigDict(env_prefix="SCRIPTBUS_", extra="ignore")

    # `SCRIPTBUS_GATEWAY_HOST`, not `SCRIPTBUS_HOST`: in a shared environment the latter names an
    # executor's host, and the gateway must not try to bind to it.
    host: str = Field("127.0.0.1", validation_alias="SCRIPTBUS_GATEWAY_HOST")
    port: int = Field(8080, validation_alias="SCRIPTBUS_GATEWAY_PORT")
    database_url: str = "postgresql://postgres@127.0.0.1:5432/scriptbus"
    # How long a write waits for the recorder to project its event before answering from the event.
    read_your_writes_timeout_s: float = Field(5.0, ge=0)
    # An executor silent for longer than this shows as `lost` and serves nothing (same variable as the
    # scheduler's, so both agree).
    executor_lost_after_s: float = Field(10.0, gt=0)
    # A command-name reservation older than this that no command in the stream uses (left by a crash
    # between reserving and publishing) is taken over by the next command that wants the name.
    stale_name_reservation_s: float = Field(30.0, ge=0)
    # The public half of the executors' secrets key: the gateway seals values with it and can never open
    # them. Unset: secrets cannot be set through this gateway (`scriptbus up` sets it).
    secrets_public_key_file: str = ""
    # The largest file `PUT /api/v1/files/{name}` takes (`SCRIPTBUS_FILES_MAX_BYTES`); bodies are streamed
    # into the files store, never held whole.
    files_max_bytes: int = Field(1024 * 1024 * 1024, ge=0)
    # Comma-separated bearer tokens; when set, every /api route requires one of them.
    api_tokens: str = ""

    @property
    def tokens(self) -> frozenset[str]:
        """The configured bearer tokens, blanks dropped."""
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())
