"""`Idempotency-Key` on POSTs: the same key with the same request within 24 h answers with the original
response instead of acting again; the same key with a different request is a 422. Keys are scoped per
token (the anonymous loopback caller has a scope of its own): another token's key never replays.

The idempotency bucket makes it atomic: the first request `create`s a pending record for the key (only
one can), acts, then stores its response there; a duplicate that finds the record pending waits for the
response. Records expire with the bucket's 24 h TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

import nats.errors
import nats.js.errors
from fastapi import Header, Request
from fastapi.responses import JSONResponse, Response
from nats.js.kv import KeyValue
from pydantic import BaseModel

from scriptbus.events.envelope import new_id, utcnow
from scriptbus.gateway import fleet, readmodels
from scriptbus.gateway.auth import Caller
from scriptbus.gateway.errors import (
    CommandNotFound,
    IdempotencyInProgress,
    IdempotencyMismatch,
    RunNotFound,
    bus_errors,
    db_errors,
)
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 200
REPLAYED_HEADER = "Idempotent-Replayed"
# Responses up to this size are kept whole; a larger one is replayed by reading its resource again.
MAX_STORED_BODY_BYTES = 256 * 1024
# A pending record this old belongs to a gateway that died while acting: a duplicate takes over.
STALE_PENDING_S = 60.0
_POLL_S = 0.05

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="Retry-safe POST: the same key with the same request within 24 h answers with the "
        "original response (header `Idempotent-Replayed: true`) and does not act again; the same key "
        "with a different request is a 422.",
    ),
]


@dataclass
class Outcome:
    """What an action answered: its status, body and extra headers, and the resource the body shows
    (`("run" | "command", id)`) so a replay can read it again when the body was too large to keep."""

    status: int
    body: BaseModel | None = None
    headers: dict[str, str] = field(default_factory=dict)
    resource: tuple[str, str] | None = None

    def response(self) -> Response:
        if self.body is None:
            return Response(status_code=self.status, headers=self.headers)
        # pydantic's own encoder: one pass in Rust instead of a dict of Python objects for json.dumps.
        return Response(
            self.body.model_dump_json(), status_code=self.status, headers=self.headers, media_type="application/json"
        )


async def fingerprint(request: Request) -> str:
    """sha256 of method, path and body; a JSON body counts by its content, not its spacing or key order."""
    body = await request.body()
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    h = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), request.url.query.encode(), canonical):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _record(request: str, state: str, **extra: Any) -> bytes:
    return json.dumps({"request": request, "state": state, "at": utcnow().isoformat(), **extra}).encode()


def _done_record(request: str, outcome: Outcome) -> bytes:
    extra: dict[str, Any] = {"status": outcome.status, "headers": outcome.headers}
    if outcome.resource is not None:
        extra["resource"] = list(outcome.resource)
    if outcome.body is not None:
        body = outcome.body.model_dump_json()
        if len(body.encode()) <= MAX_STORED_BODY_BYTES or outcome.resource is None:
            extra["body"] = body
    return _record(request, "done", **extra)


async def _replay(gw: Gateway, record: dict[str, Any]) -> Response:
    headers = {**record.get("headers", {}), REPLAYED_HEADER: "true"}
    status = int(record["status"])
    if "body" in record:
        return Response(record["body"], status_code=status, headers=headers, media_type="application/json")
    if "resource" not in record:
        return Response(status_code=status, headers=headers)
    kind, resource_id = record["resource"]
    body: BaseModel | None
    with db_errors():
        if kind == "run":
            body = await readmodels.get_run(gw.pool, resource_id)
            if body is None:
                raise RunNotFound(resource_id)
            body = await fleet.explain_one(gw, body)
        else:
            body = await readmodels.get_command(gw.pool, resource_id)
            if body is None:
                raise CommandNotFound(resource_id)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _stale(record: dict[str, Any]) -> bool:
    try:
        at = datetime.fromisoformat(record["at"])
    except (KeyError, TypeError, ValueError):
        return True
    return utcnow() - at > timedelta(seconds=STALE_PENDING_S)


async def _act(
    kv: KeyValue, kv_key: str, revision: int, request: str, resource_id: str, action: Action, *, reused: bool = False
) -> Response:
    """Act as the holder of the pending record at `revision`, then store the response (or, when the
    action failed, drop the record so a retry acts afresh). `reused`: the id comes from an earlier attempt."""
    # Runs in the task `asyncio.shield` made, with a copy of the caller's context: the flag stays here.
    _reused_id.set(reused)
    try:
        outcome = await action(resource_id)
    except BaseException:
        try:
            await kv.delete(kv_key, last=revision)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.warning("could not drop the pending idempotency record %s: %s", kv_key, exc)
        raise
    try:
        await kv.update(kv_key, _done_record(request, outcome), last=revision)
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        # The action happened; answering it matters more than remembering it.
        log.warning("could not store the response for idempotency record %s: %s", kv_key, exc)
    return outcome.response()


Action = Callable[[str], Awaitable[Outcome]]

# True while an action runs under an id taken over from a pending record: a gateway that died mid-request
# may already have stored a resource under that id, so the action must read it back rather than answer
# from its own event (the recorder keeps the first).
_reused_id: ContextVar[bool] = ContextVar("reused_id", default=False)


def id_is_fresh() -> bool:
    """False inside an action given an id that an earlier attempt may already have used."""
    return not _reused_id.get()


def bucket_key(scope: str, key: str) -> str:
    """The bucket key of `key` sent by the caller of `scope` (`Caller.scope`): the same key from two
    tokens is two keys."""
    h = hashlib.sha256()
    for part in (scope.encode(), key.encode()):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def scoped_key(request: Request, key: str) -> str:
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        # Every route that takes a key names a role, which identifies the caller first.
        raise RuntimeError("Idempotency-Key on a route without an authenticated caller")
    return bucket_key(caller.scope, key)


async def respond(gw: Gateway, request: Request, key: str | None, action: Action) -> Response:
    """Run `action` once per Idempotency-Key (when one is given) and answer with its response, or with
    the stored response of the first request that used the key.

    `action` gets the id to give what it creates. With a key, that id is chosen when the key is first
    used and kept in its record, so an attempt that takes over from a gateway that died mid-request
    names the run the dead one may already have queued (the recorder and the run's claim keep that one
    run), never a second; once the key expires, the next use gets a fresh id."""
    if key is None:
        return (await action(new_id())).response()
    request_hash = await fingerprint(request)
    kv_key = scoped_key(request, key)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + gw.settings.read_your_writes_timeout_s + 10.0
    with bus_errors("check the Idempotency-Key"):
        kv = await gw.idempotency()
    while True:
        fresh_id = new_id()
        with bus_errors("check the Idempotency-Key"):
            try:
                revision = await kv.create(kv_key, _record(request_hash, "pending", resource_id=fresh_id))
            except nats.js.errors.KeyWrongLastSequenceError:
                revision = 0
            entry = None
            if not revision:
                try:
                    entry = await kv.get(kv_key)
                except nats.js.errors.KeyNotFoundError:
                    continue  # dropped by a failed first attempt: try to be first again
        if entry is None:
            # Shielded: once acting, finish and store the outcome even if the client goes away.
            return await asyncio.shield(_act(kv, kv_key, revision, request_hash, fresh_id, action))
        record = json.loads(entry.value or b"{}")
        if record.get("request") != request_hash:
            raise IdempotencyMismatch(key)
        if record.get("state") == "done":
            log.info("replaying the response for Idempotency-Key %s", kv_key[:12])
            return await _replay(gw, record)
        if _stale(record):
            log.warning("taking over idempotency record %s left pending since %s", kv_key[:12], record.get("at"))
            assert entry.revision is not None
            resource_id = str(record.get("resource_id") or fresh_id)
            with bus_errors("check the Idempotency-Key"):
                try:
                    revision = await kv.update(
                        kv_key, _record(request_hash, "pending", resource_id=resource_id), last=entry.revision
                    )
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue
            return await asyncio.shield(
                _act(kv, kv_key, revision, request_hash, resource_id, action, reused=resource_id != fresh_id)
            )
        if loop.time() >= deadline:
            raise IdempotencyInProgress(key)
        await asyncio.sleep(_POLL_S)
