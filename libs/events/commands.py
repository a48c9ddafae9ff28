"""Events of the saved-command catalogue: named scripts that runs can be started from."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from scriptbus.events.envelope import Event


class CommandEvent(Event):
    command_id: str


class CommandDefinition(CommandEvent):
    """The whole definition: `updated` replaces it (PUT semantics), it never patches."""

    name: str
    description: str = ""
    script: str
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = None
    stop_grace_s: float = 5.0
    pool: str = "default"
    # Names of secrets every run of the command gets in its environment (values never in an event).
    secrets: list[str] = Field(default_factory=list)
    # Stored files every run of it gets in its folder, and artifact patterns every run keeps.
    files: list[str] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list)


class CommandCreated(CommandDefinition):
    type: Literal["command.created"] = "command.created"
    # The name of the caller who made the change (their token's name).
    created_by: str = ""


class CommandUpdated(CommandDefinition):
    type: Literal["command.updated"] = "command.updated"
    updated_by: str = ""


class CommandDeleted(CommandEvent):
    type: Literal["command.deleted"] = "command.deleted"
    name: str
    deleted_by: str = ""


_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def command_name_key(name: str) -> str:
    """The command-names bucket key of a command name: the name itself, unless it has dots a KV key cannot
    hold (at either end, or two in a row); those are hex-encoded behind '=', which no name contains."""
    return name if _SAFE_KEY.match(name) else "=" + name.encode().hex()
