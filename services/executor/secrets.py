"""The values of a run's secrets, fetched from the secrets bucket and opened with this executor's private
key just before its script starts, so a value set or removed after the request still counts."""

from __future__ import annotations

import logging
from pathlib import Path

import nats.js.errors
from nacl.public import PrivateKey
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.secret_box import SecretKeyError, load_private_key, unseal
from scriptbus.events.secrets import secret_name_problem
from scriptbus.events.subjects import Subjects

log = logging.getLogger(__name__)


class SecretUnavailable(Exception):
    """A secret the run names cannot be given to it; the message says which and why."""


def load_key(key_file: str) -> PrivateKey | None:
    """The private key in `key_file` ("" for none); SecretKeyError when the file is unusable."""
    if not key_file:
        log.info("no SCRIPTBUS_SECRETS_KEY_FILE: runs naming secrets will fail on this executor")
        return None
    return load_private_key(Path(key_file))


class SecretReader:
    """Opens secrets for runs. Without a key (`SCRIPTBUS_SECRETS_KEY_FILE` unset) runs naming secrets fail."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, key: PrivateKey | None) -> None:
        self._js = js
        self._subjects = subjects
        self._key = key
        self._kv: KeyValue | None = None

    async def environment(self, names: list[str]) -> dict[str, str]:
        """Each secret of `names` by its value; SecretUnavailable when one cannot be had."""
        if not names:
            return {}
        if self._key is None:
            raise SecretUnavailable(
                "this executor has no secrets key, so it cannot give the run its secrets: "
                "set SCRIPTBUS_SECRETS_KEY_FILE to the private key file"
            )
        values: dict[str, str] = {}
        for name in names:
            problem = secret_name_problem(name)
            if problem is not None:
                raise SecretUnavailable(problem)
            values[name] = await self._open(name)
        return values

    async def _open(self, name: str) -> str:
        assert self._key is not None
        try:
            if self._kv is None:
                self._kv = await self._js.key_value(self._subjects.secrets_bucket)
            entry = await self._kv.get(name)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.KeyNotFoundError):
            raise SecretUnavailable(f"secret {name!r} is not set (removed after the run was requested)") from None
        except BUS_ERRORS as exc:
            raise SecretUnavailable(f"could not fetch secret {name!r}: {exc or type(exc).__name__}") from exc
        try:
            return unseal(self._key, name, entry.value or b"")
        except SecretKeyError as exc:
            raise SecretUnavailable(str(exc)) from exc
