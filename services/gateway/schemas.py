"""Request and response bodies of the REST API, with the validation every request goes through."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from scriptbus.events.statuses import RunStatus

MAX_SCRIPT_BYTES = 1024 * 1024
MAX_ENV_BYTES = 128 * 1024
MAX_ARGS_BYTES = 128 * 1024
MAX_ARGS = 4096
MAX_DESCRIPTION_CHARS = 4096
MAX_HOST_CHARS = 255
# How much of the combined output `GET /runs/{id}` shows.
OUTPUT_TAIL_BYTES = 64 * 1024

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"


def _no_nul(value: str) -> str:
    # Neither argv nor the environment of a process can hold a NUL byte.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _script(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    size = len(value.encode())
    if size > MAX_SCRIPT_BYTES:
        raise ValueError(f"is {size} bytes; at most {MAX_SCRIPT_BYTES} bytes (1 MiB) are accepted")
    return _no_nul(value)


Script = Annotated[str, Field(min_length=1), AfterValidator(_script)]
Arg = Annotated[str, AfterValidator(_no_nul)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class RunCreate(BaseModel):
    """A request to run a bash script. Unknown fields are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "script": 'echo "hello $1"; sleep 1; echo done >&2',
                    "args": ["world"],
                    "description": "greeting",
                    "env": {"GREETING": "hi"},
                    "timeout_s": 60,
                    "pool": "default",
                }
            ]
        },
    )

    script: Script = Field(description="Bash source to run, at most 1 MiB (UTF-8).")
    args: list[Arg] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        description="Positional parameters: `$1`, `$2`, … inside the script.",
    )
    description: str = Field("", max_length=MAX_DESCRIPTION_CHARS, description="Free text shown in lists.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables; names match `^[A-Za-z_][A-Za-z0-9_]*$`, "
        f"names and values together at most {MAX_ENV_BYTES // 1024} KiB.",
    )
    timeout_s: FiniteFloat | None = Field(
        None, gt=0, description="Stop the run after this many seconds (status `timed_out`)."
    )
    stop_grace_s: FiniteFloat = Field(
        5.0, ge=0, description="Seconds between SIGTERM and SIGKILL when the run is stopped."
    )
    pool: str = Field(
        "default", pattern=TOKEN_PATTERN, description="Executor pool to run in: letters, digits, `_`, `-`."
    )
    host: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_HOST_CHARS,
        description="Run on this executor host only (instead of any executor of the pool).",
    )

    @field_validator("args")
    @classmethod
    def _args_size(cls, value: list[str]) -> list[str]:
        size = sum(len(a.encode()) + 1 for a in value)
        if size > MAX_ARGS_BYTES:
            raise ValueError(f"total {size} bytes; at most {MAX_ARGS_BYTES} bytes are accepted")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"invalid variable name(s) {bad!r}: names must match {ENV_NAME.pattern}")
        for name, val in value.items():
            if "\x00" in val:
                raise ValueError(f"value of {name} must not contain NUL characters")
        size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in value.items())
        if size > MAX_ENV_BYTES:
            raise ValueError(f"total {size} bytes; at most {MAX_ENV_BYTES} bytes are accepted")
        return value


class RunSummary(BaseModel):
    """A run as lists show it: everything but its output."""

    id: str
    status: RunStatus
    script: str
    args: list[str]
    description: str
    env: dict[str, str]
    pool: str
    target_host: str | None = Field(None, description="The host the run was asked to run on, if any.")
    timeout_s: float | None
    stop_grace_s: float
    exit_code: int | None
    signal: int | None
    host: str | None = Field(None, description="The executor host that ran it.")
    pid: int | None
    created_at: datetime
    started_at: datetime | None
    stop_requested_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    output_bytes: int = Field(description="Bytes of output stored (stdout and stderr together).")
    output_truncated: bool = Field(description="True when output went past the per-run cap.")
    dropped_bytes: int = Field(description="Bytes of output past the cap, counted but not stored.")
    reason: str
    survivors: list[int] = Field(description="Pids of the run's processes still alive after SIGKILL.")


class Run(RunSummary):
    """One run, with the end of its output."""

    output: str = Field(
        description=f"The last {OUTPUT_TAIL_BYTES // 1024} KiB of stdout and stderr interleaved as "
        "written, decoded as UTF-8 with undecodable bytes replaced; the exact bytes are at `/output`."
    )


class RunList(BaseModel):
    items: list[RunSummary]
    total: int = Field(description="How many runs match the filter, across all pages.")


class Message(BaseModel):
    detail: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str] = Field(description="`ok` or what went wrong, per dependency.")
