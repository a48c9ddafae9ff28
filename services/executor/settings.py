"""Executor settings, read from `SCRIPTBUS_*` environment variables (flags override them)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from scriptbus.events import host_token, valid_token
from scriptbus.events.lifecycle import ServiceSettings
from scriptbus.executor.sizing import default_max_concurrency


def _default_work_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "scriptbus-runs")


# Stopping runs at shutdown takes their grace period, then up to 15 s to publish their ends.
EXECUTOR_SHUTDOWN_TIMEOUT_S = 60.0


class ExecutorSettings(ServiceSettings):
    """Who this executor is, what it serves, and how much it runs at once."""

    model_config = SettingsConfigDict(env_prefix="SCRIPTBUS_", extra="ignore")

    host: str = Field(default_factory=lambda: host_token(socket.gethostname()))
    # `SCRIPTBUS_POOLS=a,b`; the host's own token is always served on top of these.
    pools: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    # `SCRIPTBUS_LABELS=k=v,k2=v2` (or a JSON object).
    labels: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Default: what this machine holds (`sizing.py`), over a thousand sleeping runs on a 24 GiB box.
    max_concurrency: int = Field(default_factory=default_max_concurrency, ge=1)
    heartbeat_interval_s: float = Field(2.0, gt=0)
    work_dir: str = Field(default_factory=_default_work_dir)
    max_output_bytes: int = Field(256 * 1024 * 1024, ge=0)
    # What one run's `artifacts` may upload in all (`SCRIPTBUS_ARTIFACTS_MAX_BYTES`); past it the run's
    # reason says what was left out.
    artifacts_max_bytes: int = Field(1024 * 1024 * 1024, ge=0)
    # Used when a request does not say its own grace period.
    default_stop_grace_s: float = Field(5.0, ge=0)
    # Stopping runs at shutdown takes their grace period, then up to 15 s to publish their ends.
    shutdown_timeout_s: float = Field(default=EXECUTOR_SHUTDOWN_TIMEOUT_S, gt=0)
    # `SCRIPTBUS_EXECUTOR_CGROUPS=off` holds runs by a child subreaper even where cgroup v2 is available.
    executor_cgroups: bool = True
    # The private key that opens the runs' secrets (mode 0600); unset, runs naming secrets fail here.
    secrets_key_file: str = ""
    # `SCRIPTBUS_EXECUTOR_RUN_AS`: who scripts run as when the executor is root (default `scriptbus-run`,
    # made when missing; `root` keeps the executor's rights). Not root: always the executor's own user.
    executor_run_as: str | None = Field(default=None, min_length=1)

    @field_validator("pools", mode="before")
    @classmethod
    def _split_pools(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _split_labels(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            return parse_labels([p for p in text.split(",") if p.strip()])
        return value

    @field_validator("host")
    @classmethod
    def _host_is_token(cls, value: str) -> str:
        if not valid_token(value):
            raise ValueError(f"host {value!r} must match [A-Za-z0-9_-]{{1,128}}")
        return value

    @model_validator(mode="after")
    def _pools_are_tokens(self) -> ExecutorSettings:
        for pool in self.pools:
            if not valid_token(pool):
                raise ValueError(f"pool {pool!r} must match [A-Za-z0-9_-]{{1,128}}")
        return self

    @property
    def targets(self) -> list[str]:
        """The queues this executor pulls: its pools, then its own host token (never twice)."""
        out: list[str] = []
        for target in [*self.pools, self.host]:
            if target not in out:
                out.append(target)
        return out


def parse_labels(items: list[str]) -> dict[str, str]:
    """`["k=v", ...]` as a dict; raises ValueError on an item without `=`."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {item!r} must look like key=value")
        labels[key.strip()] = val.strip()
    return labels
