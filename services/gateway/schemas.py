"""Request and response bodies of the REST API, with the validation every request goes through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from scriptbus.events import run_env
from scriptbus.events.executors import ExecutorState
from scriptbus.events.secrets import MAX_SECRETS_PER_RUN, secret_name_problem
from scriptbus.events.statuses import RunStatus
from scriptbus.gateway.file_schemas import ARTIFACTS_DOC, FILES_DOC, ArtifactPatterns, FileNames

MAX_SCRIPT_BYTES = 1024 * 1024
MAX_ENV_BYTES = 128 * 1024
MAX_ARGS_BYTES = 128 * 1024
MAX_ARGS = 4096
MAX_DESCRIPTION_CHARS = 4096
MAX_HOST_CHARS = 255
MAX_COMMAND_NAME_CHARS = 128
# How much of the combined output `GET /runs/{id}` shows.
OUTPUT_TAIL_BYTES = 64 * 1024
# Timeouts and grace periods past ten years are mistakes, and the executor's clock arithmetic needs bounds.
MAX_SECONDS = 10 * 365 * 24 * 3600.0
# Integers the gateway passes on must fit a PostgreSQL bigint (offsets) and a NATS sequence (event ids).
MAX_BIGINT = 2**63 - 1

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
COMMAND_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# For query and path strings that reach PostgreSQL, which cannot compare with a NUL.
NO_NUL_PATTERN = r"^[^\x00]*$"


def _no_nul(value: str) -> str:
    # Neither argv, the environment of a process nor a PostgreSQL text column can hold a NUL byte.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def text(value: str) -> str:
    """`value` if it can be stored and sent on: no NUL, and no lone surrogate (which no UTF-8 can encode)."""
    _no_nul(value)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text: lone surrogates such as \\ud800 cannot be stored") from None
    return value


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC (a time without a zone is taken as UTC, as every time this API returns is);
    ValueError when that falls outside the years 1 to 9999."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once taken to UTC: years 1 to 9999 only") from None


def _script(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    size = len(value.encode())
    if size > MAX_SCRIPT_BYTES:
        raise ValueError(f"is {size} bytes; at most {MAX_SCRIPT_BYTES} bytes (1 MiB) are accepted")
    return _no_nul(value)


# Every string of a request body goes into an event and a PostgreSQL text or jsonb column.
Text = Annotated[str, AfterValidator(text)]
Script = Annotated[str, Field(min_length=1), AfterValidator(text), AfterValidator(_script)]
Arg = Text
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Timeout = Annotated[FiniteFloat, Field(gt=0, le=MAX_SECONDS)]
Grace = Annotated[FiniteFloat, Field(ge=0, le=MAX_SECONDS)]


def _args(value: list[str]) -> list[str]:
    size = sum(len(a.encode()) + 1 for a in value)
    if size > MAX_ARGS_BYTES:
        raise ValueError(f"total {size} bytes; at most {MAX_ARGS_BYTES} bytes are accepted")
    return value


def _env(value: dict[str, str]) -> dict[str, str]:
    bad = [name for name in value if not run_env.valid_name(name)]
    if bad:
        raise ValueError(f"invalid variable name(s) {bad!r}: names must match {run_env.NAME_PATTERN}")
    refused = run_env.refusal(value)
    if refused is not None:
        raise ValueError(refused)
    size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in value.items())
    if size > MAX_ENV_BYTES:
        raise ValueError(f"total {size} bytes; at most {MAX_ENV_BYTES} bytes are accepted")
    return value


def _secret_names(value: list[str]) -> list[str]:
    problems = [problem for name in value if (problem := secret_name_problem(name)) is not None]
    if problems:
        raise ValueError("; ".join(problems))
    return list(dict.fromkeys(value))


Args = Annotated[list[Arg], Field(max_length=MAX_ARGS), AfterValidator(_args)]
SecretNames = Annotated[list[str], Field(max_length=MAX_SECRETS_PER_RUN), AfterValidator(_secret_names)]
Env = Annotated[dict[Text, Text], AfterValidator(_env)]

_ARGS_DOC = "Positional parameters: `$1`, `$2`, … inside the script."
_ENV_DOC = (
    f"Extra environment variables; names match `{run_env.NAME_PATTERN}`, "
    f"names and values together at most {MAX_ENV_BYTES // 1024} KiB. Names that change how bash or the "
    "loader start (`BASH_ENV`, `ENV`, `LD_*`, `BASH_FUNC_*`, …) are refused; `PATH` and interpreters' "
    "code paths (`PYTHONPATH`, `NODE_OPTIONS`, …) only from admins."
)
_SECRETS_DOC = (
    "Names of secrets (set with `PUT /api/v1/secrets/{name}`) the script gets as environment variables of "
    "the same name; each must be set, and none may also be in `env`."
)
_TIMEOUT_DOC = f"Stop the run after this many seconds (status `timed_out`), at most {MAX_SECONDS:.0f}."
_GRACE_DOC = "Seconds between SIGTERM and SIGKILL when the run is stopped."
_POOL_DOC = "Executor pool to run in: letters, digits, `_`, `-`."
_HOST_DOC = "Run on this executor host only (instead of any executor of the pool)."
_COMMAND_REF_DOC = "A saved command's id or name."


class RunCreate(BaseModel):
    """A request to run a bash script: an inline `script`, or a saved command named by `command_id`
    (exactly one of the two). Unknown fields are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "script": 'echo "hello $1"; sleep 1; echo done >&2',
                    "args": ["world"],
                    "description": "greeting",
                    "env": {"GREETING": "hi"},
                    "timeout_s": 60,
                    "pool": "default",
                },
                {"command_id": "backup", "args": ["/srv/data"], "env": {"LEVEL": "full"}},
            ]
        },
    )

    script: Script | None = Field(None, description="Bash source to run, at most 1 MiB (UTF-8).")
    command_id: Text | None = Field(
        None,
        min_length=1,
        max_length=MAX_COMMAND_NAME_CHARS,
        description=f"{_COMMAND_REF_DOC} The run copies its script; fields left out here take the "
        "command's values, and `env` is merged over the command's.",
    )
    args: Args = Field(default_factory=list, description=_ARGS_DOC)
    description: Text = Field("", max_length=MAX_DESCRIPTION_CHARS, description="Free text shown in lists.")
    env: Env = Field(default_factory=dict, description=_ENV_DOC)
    secrets: SecretNames = Field(default_factory=list, description=_SECRETS_DOC)
    timeout_s: Timeout | None = Field(None, description=_TIMEOUT_DOC)
    stop_grace_s: Grace = Field(5.0, description=_GRACE_DOC)
    pool: str = Field("default", pattern=TOKEN_PATTERN, description=_POOL_DOC)
    host: Text | None = Field(None, min_length=1, max_length=MAX_HOST_CHARS, description=_HOST_DOC)
    files: FileNames = Field(default_factory=list, description=FILES_DOC)
    artifacts: ArtifactPatterns = Field(default_factory=list, description=ARTIFACTS_DOC)

    def source_errors(self) -> list[dict[str, Any]]:
        """Validation errors (FastAPI's shape) unless exactly one of `script` and `command_id` is given."""
        if self.script is None and self.command_id is None:
            return [
                {
                    "type": "missing",
                    "loc": ("body", "script"),
                    "msg": "Field required: give either `script` or `command_id`",
                    "input": None,
                }
            ]
        if self.script is not None and self.command_id is not None:
            return [
                {
                    "type": "value_error",
                    "loc": ("body", "command_id"),
                    "msg": "Value error, give either `script` or `command_id`, not both",
                    "input": self.command_id,
                }
            ]
        return []

    def command_overrides(self) -> CommandRunCreate:
        """The fields this request sets explicitly, as a request to run its command."""
        fields = self.model_fields_set - {"script", "command_id"}
        return CommandRunCreate.model_validate({name: getattr(self, name) for name in fields})


class CommandRunCreate(BaseModel):
    """A request to run a saved command. Fields left out take the command's values; `env` is merged
    over the command's `env`. Unknown fields are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"args": ["/srv/data", "with space"], "env": {"LEVEL": "full"}}]},
    )

    args: Args = Field(default_factory=list, description=_ARGS_DOC)
    env: Env = Field(default_factory=dict, description=_ENV_DOC + " Overrides the command's variables.")
    secrets: SecretNames = Field(default_factory=list, description=_SECRETS_DOC + " Added to the command's secrets.")
    description: Text | None = Field(
        None,
        max_length=MAX_DESCRIPTION_CHARS,
        description="Free text shown in lists (default: the command's).",
    )
    timeout_s: Timeout | None = Field(
        None, description=_TIMEOUT_DOC + " Default: the command's; an explicit null means none."
    )
    stop_grace_s: Grace | None = Field(None, description=_GRACE_DOC + " Default: the command's.")
    pool: str | None = Field(None, pattern=TOKEN_PATTERN, description=_POOL_DOC + " Default: the command's.")
    host: Text | None = Field(None, min_length=1, max_length=MAX_HOST_CHARS, description=_HOST_DOC)
    files: FileNames = Field(default_factory=list, description=FILES_DOC)
    artifacts: ArtifactPatterns = Field(default_factory=list, description=ARTIFACTS_DOC)


class CommandCreate(BaseModel):
    """A saved command: a named script runs can be started from. `PUT` replaces all of it. Unknown fields
    are refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "backup",
                    "description": "copy $1 to the backup host",
                    "script": 'rsync -a "$1" backup:/srv/backups/',
                    "env": {"RSYNC_RSH": "ssh"},
                    "timeout_s": 3600,
                    "stop_grace_s": 5,
                    "pool": "default",
                }
            ]
        },
    )

    name: str = Field(
        pattern=COMMAND_NAME_PATTERN,
        description="Unique name: a letter or digit, then up to 127 letters, digits, `_`, `.`, `-`.",
    )
    description: Text = Field("", max_length=MAX_DESCRIPTION_CHARS, description="Free text.")
    script: Script = Field(description="Bash source, at most 1 MiB (UTF-8); gets the run's `args` as `$1`….")
    env: Env = Field(default_factory=dict, description=_ENV_DOC)
    secrets: SecretNames = Field(default_factory=list, description=_SECRETS_DOC + " Every run of it gets them.")
    files: FileNames = Field(default_factory=list, description=FILES_DOC + " Every run of it gets them.")
    artifacts: ArtifactPatterns = Field(default_factory=list, description=ARTIFACTS_DOC + " For every run of it.")
    timeout_s: Timeout | None = Field(None, description=_TIMEOUT_DOC)
    stop_grace_s: Grace = Field(5.0, description=_GRACE_DOC)
    pool: str = Field("default", pattern=TOKEN_PATTERN, description=_POOL_DOC)


class Command(BaseModel):
    """A saved command as stored."""

    id: str
    name: str
    description: str
    script: str
    env: dict[str, str]
    secrets: list[str] = Field(default_factory=list, description="Names of the secrets its runs get (never values).")
    files: list[str] = Field(default_factory=list, description="Stored files placed in each run's folder.")
    artifacts: list[str] = Field(default_factory=list, description="Artifact patterns of each run.")
    timeout_s: float | None
    stop_grace_s: float
    pool: str
    version: int = Field(description="1 when created, one more on every replace.")
    created_at: datetime
    updated_at: datetime


class CommandList(BaseModel):
    items: list[Command]
    total: int = Field(description="How many commands match `q`, across all pages.")


class RunSummary(BaseModel):
    """A run as lists show it: everything but its output."""

    id: str
    status: RunStatus
    command_id: str | None = Field(None, description="The saved command it was started from, if any.")
    script: str
    args: list[str]
    description: str
    env: dict[str, str]
    secrets: list[str] = Field(
        default_factory=list, description="Names of the secrets in its environment (never their values)."
    )
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
    reason: str = Field(
        description="Why it ended as it did; for a queued run, why it waits (e.g. no live executor serves "
        "its pool), else empty."
    )
    survivors: list[int] = Field(description="Pids of the run's processes still alive after SIGKILL.")
    workflow_run_id: str | None = Field(None, description="The workflow run this run is a step attempt of.")
    workflow_step: str | None = Field(None, description="The step of `workflow_run_id` it runs.")
    attempt: int | None = Field(
        None, description="Which attempt of that step (or of its host in `fanout_id`) it is (1 for the first)."
    )
    fanout_id: str | None = Field(None, description="The fan-out this run is one host's run of.")
    requested_by: str = Field("", description="The name of the token that asked for the run (`local` without tokens).")
    schedule_id: str | None = Field(None, description="The schedule whose tick made this run.")
    stopped_by: str = Field("", description="The name of the token that stopped or cancelled it, if one did.")


class Run(RunSummary):
    """One run, with the end of its output."""

    output: str = Field(
        description=f"The last {OUTPUT_TAIL_BYTES // 1024} KiB of stdout and stderr interleaved as "
        "written, decoded as UTF-8 with undecodable bytes replaced; the exact bytes are at `/output`."
    )


class RunList(BaseModel):
    items: list[RunSummary]
    total: int = Field(description="How many runs match the filters, across all pages.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page. Pages by cursor "
        "stay stable while new runs are added."
    )


class Executor(BaseModel):
    """The latest word from one executor host."""

    host: str
    executor_id: str = Field(description="Fresh for every start of the executor process.")
    pools: list[str]
    labels: dict[str, str]
    version: str
    capacity: int = Field(description="How many runs it takes at once.")
    running: int = Field(description="How many runs it had at its last heartbeat.")
    last_heartbeat: datetime | None
    started_at: datetime | None
    state: ExecutorState = Field(
        description="`lost` also when its last heartbeat is older than SCRIPTBUS_EXECUTOR_LOST_AFTER_S."
    )


class ExecutorList(BaseModel):
    items: list[Executor]


class Message(BaseModel):
    detail: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str] = Field(description="`ok` or what went wrong, per dependency.")
