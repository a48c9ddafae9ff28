"""Named secrets: which names are allowed, the events that record who set or removed one (never its
value), and the bucket that holds each value sealed for the executors (`secret_box.py`).

A secret's name is the environment variable the script gets it in, so names follow the rules of
variable names and may not be one that changes how bash or the loader starts.
"""

from __future__ import annotations

import re
from typing import Literal

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from scriptbus.events import run_env
from scriptbus.events.envelope import Event
from scriptbus.events.subjects import Subjects

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A value is an environment variable's: kept well under what one exec may carry.
MAX_SECRET_BYTES = 64 * 1024
# How many secrets one run or command may name.
MAX_SECRETS_PER_RUN = 64

# Beyond the names no run's `env` may set (run_env), a secret may not stand in for what the executor
# itself gives every script, nor for the services' own settings, nor for the admin-only code paths.
_NOT_A_SECRET = frozenset({"HOME", "USER", "LOGNAME", "LANG"})
_NOT_A_SECRET_PREFIX = "SCRIPTBUS_"


def secret_name_problem(name: str) -> str | None:
    """Why `name` cannot name a secret, or None when it can."""
    if not SECRET_NAME.match(name):
        return f"{name!r} is not a valid secret name: an environment variable name matching {SECRET_NAME.pattern}"
    upper = name.upper()
    if (
        run_env.is_refused(upper)
        or upper in run_env.ADMIN_ONLY_NAMES
        or upper in _NOT_A_SECRET
        or upper.startswith(_NOT_A_SECRET_PREFIX)
    ):
        return f"{name!r} cannot be a secret: that variable changes how the script's shell or loader starts"
    return None


def secret_value_problem(value: str) -> str | None:
    """Why `value` cannot be stored as a secret, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters: an environment variable cannot hold one"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_SECRET_BYTES:
        return f"is {size} bytes; at most {MAX_SECRET_BYTES} bytes (64 KiB) are accepted"
    if value and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "must be valid Unicode text: lone surrogates cannot be stored"
    return None


class SecretEvent(Event):
    """Only the name and who acted: the value never enters the stream."""

    name: str


class SecretSet(SecretEvent):
    """A secret was given a (new) value, which the secrets bucket now holds sealed."""

    type: Literal["secret.set"] = "secret.set"
    set_by: str = ""


class SecretRemoved(SecretEvent):
    type: Literal["secret.removed"] = "secret.removed"
    removed_by: str = ""


async def secrets_bucket(js: JetStreamContext, s: Subjects) -> KeyValue:
    """Secret name -> its value sealed for the executors' key. One revision is kept: a replaced or
    removed value leaves no older copy to read. Created by the gateway, its only writer."""
    try:
        return await js.key_value(s.secrets_bucket)
    except nats.js.errors.BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(KeyValueConfig(bucket=s.secrets_bucket, history=1, storage=StorageType.FILE))
    except nats.js.errors.BadRequestError:
        return await js.key_value(s.secrets_bucket)
