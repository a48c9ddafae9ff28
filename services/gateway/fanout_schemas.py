"""Request and response bodies of the fan-out routes (`/api/v1/fanouts`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from scriptbus.events.fanouts import FanoutStatus
from scriptbus.gateway.schemas import (
    MAX_COMMAND_NAME_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_HOST_CHARS,
    TOKEN_PATTERN,
    Args,
    Env,
    Grace,
    SecretNames,
    Text,
    Timeout,
)
from scriptbus.gateway.schemas import Script as ScriptText

# More hosts than this in one fan-out is a mistake, and the request must fit one NATS message.
MAX_FANOUT_HOSTS = 1000
Host = Annotated[Text, Field(min_length=1, max_length=MAX_HOST_CHARS)]
Label = Annotated[Text, Field(min_length=1, max_length=128)]


class FanoutCreate(BaseModel):
    """One script on every live executor matching the filter: `pool` (any when left out), all of
    `labels`, and only the `hosts` named (when given). Exactly one of `script` and `command_id`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"script": "uptime", "labels": {"role": "web"}, "max_parallel": 2}]},
    )

    script: ScriptText | None = Field(None, description="Bash source to run on each host.")
    command_id: Text | None = Field(
        None, min_length=1, max_length=MAX_COMMAND_NAME_CHARS, description="A saved command's id or name."
    )
    args: Args = Field(default_factory=list, description="`$1`, `$2`, … inside the script.")
    description: Text = Field("", max_length=MAX_DESCRIPTION_CHARS)
    env: Env = Field(default_factory=dict, description="Extra environment variables, as for a run.")
    secrets: SecretNames = Field(default_factory=list, description="Secrets each host's run gets, as for a run.")
    timeout_s: Timeout | None = Field(None, description="Each host's run is stopped after this many seconds.")
    stop_grace_s: Grace = Field(5.0, description="Seconds between SIGTERM and SIGKILL when a run is stopped.")
    pool: str | None = Field(None, pattern=TOKEN_PATTERN, description="Only executors serving this pool.")
    labels: dict[Label, Label] = Field(default_factory=dict, description="Only executors with all these labels.")
    hosts: list[Host] = Field(
        default_factory=list, max_length=MAX_FANOUT_HOSTS, description="Only these executor hosts (each must be live)."
    )
    max_parallel: int | None = Field(None, ge=1, le=10_000, description="At most this many hosts run at once.")
    max_failures: int | None = Field(
        None, ge=1, le=10_000, description="After this many hosts failed, start no more (the rest are `skipped`)."
    )

    def source_errors(self) -> list[dict[str, Any]]:
        if (self.script is None) == (self.command_id is None):
            return [
                {
                    "type": "value_error",
                    "loc": ("body", "script"),
                    "msg": "Value error, give exactly one of `script` and `command_id`",
                    "input": None,
                }
            ]
        return []


class FanoutHostRun(BaseModel):
    """One host of a fan-out and its latest run."""

    host: str
    status: str = Field(description="`pending` (not started yet), `skipped`, or the run's status.")
    attempt: int = Field(description="0 before its first run; a retry adds one.")
    run_id: str | None
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    reason: str = ""


class Fanout(BaseModel):
    id: str
    status: FanoutStatus
    script: str
    command_id: str | None
    args: list[str]
    description: str
    pool: str | None
    labels: dict[str, str]
    max_parallel: int | None
    max_failures: int | None
    timeout_s: float | None
    requested_by: str
    round: int = Field(description="1, then one more for each retry.")
    created_at: datetime
    stop_requested_at: datetime | None
    finished_at: datetime | None
    hosts: list[str] = Field(description="The live executors that matched when it was requested, in start order.")
    runs: list[FanoutHostRun]
    counts: dict[str, int] = Field(description="How many hosts are in each status.")


class FanoutList(BaseModel):
    items: list[Fanout]
    total: int
    next_cursor: str | None
