"""Failures the gateway's functions report, each mapped to one HTTP status in `app.py`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Iterator
from typing import Any

import asyncpg
import nats.errors
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError

# How much of a refused input a 422 shows: enough to recognise it, never a whole 2 MiB script.
EXCERPT_CHARS = 200
# Messages may quote input too (e.g. a list of bad names).
MESSAGE_CHARS = 1000


class GatewayError(Exception):
    """Base: `detail` is the message the client sees; `status_code` its HTTP status."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RunNotFound(GatewayError):
    status_code = 404

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} not found")


class CommandNotFound(GatewayError):
    status_code = 404

    def __init__(self, ref: str) -> None:
        super().__init__(f"command '{ref}' not found")


class NameTaken(GatewayError):
    status_code = 409

    def __init__(self, name: str) -> None:
        super().__init__(f"command name '{name}' is taken")


class IdempotencyMismatch(GatewayError):
    """The Idempotency-Key was used before for a different request."""

    status_code = 422

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key '{key}' was already used with a different request")


class IdempotencyInProgress(GatewayError):
    """The first request with this Idempotency-Key has not answered yet."""

    status_code = 409

    def __init__(self, key: str) -> None:
        super().__init__(f"a request with Idempotency-Key '{key}' is still in progress; retry shortly")


class RunConflict(GatewayError):
    """The run is in a state that forbids the request (stop a finished run, delete a running one)."""

    status_code = 409


class RequestTooLarge(GatewayError):
    status_code = 413


class UnsupportedMediaType(GatewayError):
    status_code = 415

    def __init__(self, sent: str | None) -> None:
        super().__init__(
            f"request bodies must be JSON: send Content-Type: application/json (got {sent or 'no Content-Type'})"
        )


class BusUnavailable(GatewayError):
    """NATS is not connected or did not confirm: nothing (or possibly nothing) was stored."""

    status_code = 503


class ReadModelUnavailable(GatewayError):
    """PostgreSQL did not answer."""

    status_code = 503


DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError)


@contextlib.contextmanager
def bus_errors(what: str) -> Iterator[None]:
    """Turn NATS failures into a 503 that says what could not be done."""
    try:
        yield
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise BusUnavailable(f"NATS unavailable: could not {what}: {exc or type(exc).__name__}") from exc


@contextlib.contextmanager
def db_errors() -> Iterator[None]:
    """Turn PostgreSQL failures into a 503."""
    try:
        yield
    except DB_ERRORS as exc:
        raise ReadModelUnavailable(f"PostgreSQL unavailable: {exc or type(exc).__name__}") from exc


def invalid_input(loc: tuple[str, ...], msg: str, value: object = None) -> RequestValidationError:
    """A 422 in FastAPI's own shape (`detail` lists the field and why), for checks a model cannot make."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def _clean(value: object) -> Any:
    """`value` made JSON-safe: lone surrogates escaped as text (`\\ud800`), non-finite numbers as text."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, bool | int | None):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return _clean(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return _clean(str(value))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> Any:
    """`value` as an error may echo it: JSON-safe, and when its JSON is longer than `limit` characters,
    the start of it as a string ending in `…`."""
    cleaned = _clean(value)
    if isinstance(cleaned, str):
        return _shorten(cleaned, limit)
    encoded = json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))
    return cleaned if len(encoded) <= limit else _shorten(encoded, limit)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 `detail`, made safe to encode and short: inputs cut to an excerpt."""
    errors: list[dict[str, Any]] = []
    for error in exc.errors():
        item: dict[str, Any] = {
            "type": error.get("type", "value_error"),
            "loc": [excerpt(part) for part in error.get("loc", ())],
            "msg": _shorten(_clean(str(error.get("msg", ""))), MESSAGE_CHARS),
            "input": excerpt(error.get("input")),
        }
        if "ctx" in error:
            try:
                item["ctx"] = excerpt(jsonable_encoder(error["ctx"]), MESSAGE_CHARS)
            except (TypeError, ValueError):
                item["ctx"] = {}
        errors.append(item)
    return errors
