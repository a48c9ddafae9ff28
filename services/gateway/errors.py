"""Failures the gateway's functions report, each mapped to one HTTP status in `app.py`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
import nats.errors
from fastapi.exceptions import RequestValidationError


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
