"""The write side: a validated request becomes an event in JetStream, then the gateway waits until the
recorder has projected it so the answer (and the caller's next read) shows the change."""

from __future__ import annotations

import logging
import uuid

import nats.errors
import nats.js.errors
from scriptbus.events.codec import encode_event, event_headers
from scriptbus.events.envelope import Event, new_id
from scriptbus.events.publishing import publish_event
from scriptbus.events.runs import RunDeleted, RunFinished, RunRequested, RunStopRequested
from scriptbus.events.statuses import TERMINAL_STATUSES, RunStatus
from scriptbus.events.streams import MAX_MSG_SIZE, ensure_queue
from scriptbus.events.subjects import host_token
from scriptbus.gateway import readmodels
from scriptbus.gateway.errors import (
    DB_ERRORS,
    BusUnavailable,
    RequestTooLarge,
    RunConflict,
    RunNotFound,
    bus_errors,
    db_errors,
)
from scriptbus.gateway.schemas import Run, RunCreate
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

CANCELLED_CLAIM = b"cancelled"
CANCEL_REASON = "stopped before it started"
# Room for the headers JetStream stores with the payload.
_HEADER_ROOM = 512


def _require_bus(gw: Gateway) -> None:
    # While reconnecting, nats-py would buffer the publish and the caller would wait for nothing.
    if not gw.nc.is_connected:
        raise BusUnavailable("NATS is not connected; nothing was stored, try again shortly")


async def _publish(gw: Gateway, event: Event, what: str) -> int:
    """Store `event`; returns its stream sequence."""
    _require_bus(gw)
    try:
        ack = await publish_event(gw.js, gw.subjects, event)
    except nats.errors.TimeoutError as exc:
        raise BusUnavailable(
            f"NATS did not confirm the event of run {getattr(event, 'run_id', '?')} in time; "
            "it may or may not have been stored"
        ) from exc
    except (nats.errors.Error, OSError) as exc:
        raise BusUnavailable(f"NATS unavailable: could not {what}: {exc or type(exc).__name__}") from exc
    return ack.seq


async def _readable(gw: Gateway, seq: int) -> bool:
    """Wait (bounded) until the recorder has applied `seq`."""
    reached = await gw.watcher.wait_for(seq, gw.settings.read_your_writes_timeout_s)
    if not reached:
        log.warning(
            "projection did not reach seq %d within %.1fs; answering from the event",
            seq,
            gw.settings.read_your_writes_timeout_s,
        )
    return reached


async def _read_back(gw: Gateway, run_id: str, seq: int) -> Run | None:
    """The run from the read model once it shows `seq`; None if it could not be read in time."""
    if not await _readable(gw, seq):
        return None
    try:
        return await readmodels.get_run(gw.pool, run_id)
    except DB_ERRORS as exc:
        log.warning("reading run %s back failed: %s", run_id, exc)
        return None


def _from_request(event: RunRequested) -> Run:
    return Run(
        id=event.run_id,
        status=RunStatus.QUEUED,
        script=event.script,
        args=event.args,
        description=event.description,
        env=event.env,
        pool=event.pool,
        target_host=event.host,
        timeout_s=event.timeout_s,
        stop_grace_s=event.stop_grace_s,
        exit_code=None,
        signal=None,
        host=None,
        pid=None,
        created_at=event.occurred_at,
        started_at=None,
        stop_requested_at=None,
        finished_at=None,
        duration_s=None,
        output_bytes=0,
        output_truncated=False,
        dropped_bytes=0,
        reason="",
        survivors=[],
        output="",
    )


async def create_run(gw: Gateway, body: RunCreate) -> Run:
    """Queue a run: publish `run.requested` to its pool's (or host's) queue and return the run."""
    event = RunRequested(
        run_id=new_id(),
        script=body.script,
        args=body.args,
        env=body.env,
        description=body.description,
        timeout_s=body.timeout_s,
        stop_grace_s=body.stop_grace_s,
        pool=body.pool,
        host=host_token(body.host) if body.host else None,
    )
    size = len(encode_event(event)) + sum(len(k) + len(v) + 4 for k, v in event_headers(event).items())
    limit = min(gw.nc.max_payload or MAX_MSG_SIZE, MAX_MSG_SIZE) - _HEADER_ROOM
    if size > limit:
        raise RequestTooLarge(
            f"script, args, env and description together encode to {size} bytes; "
            f"one run request may take at most {limit} bytes"
        )
    _require_bus(gw)
    target = event.target
    if target not in gw.queues:
        # The queue must exist before the request is published, or no executor would ever see it.
        with bus_errors(f"create the request queue for {target!r}"):
            await ensure_queue(gw.js, gw.subjects, target)
        gw.queues.add(target)
    seq = await _publish(gw, event, "queue the run")
    log.info("run %s requested on %s (seq %d)", event.run_id, target, seq)
    return await _read_back(gw, event.run_id, seq) or _from_request(event)


async def _status(gw: Gateway, run_id: str) -> RunStatus:
    with db_errors():
        status = await readmodels.get_status(gw.pool, run_id)
    if status is None:
        raise RunNotFound(run_id)
    return status


def _cancel_event_id(run_id: str) -> str:
    # The same id for every attempt to cancel a run, so JetStream keeps only the first.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"scriptbus:run:{run_id}:cancelled"))


async def _claim_for_cancel(gw: Gateway, run_id: str) -> bool:
    """True when no executor holds the run and none ever will: the claim is ours (now or from an earlier
    stop whose finish may not have been stored)."""
    with bus_errors("claim the run"):
        kv = await gw.claims()
        try:
            await kv.create(run_id, CANCELLED_CLAIM)
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(run_id)
        except nats.js.errors.KeyNotFoundError:
            return False
        return entry.value == CANCELLED_CLAIM


async def stop_run(gw: Gateway, run_id: str) -> Run:
    """Stop a run: cancel it if it has not started, else ask its executor to stop it."""
    status = await _status(gw, run_id)
    if status in TERMINAL_STATUSES:
        raise RunConflict(f"run {run_id} already finished ({status})")
    _require_bus(gw)
    event: RunFinished | RunStopRequested
    if await _claim_for_cancel(gw, run_id):
        event = RunFinished(
            event_id=_cancel_event_id(run_id),
            run_id=run_id,
            status=RunStatus.CANCELLED,
            reason=CANCEL_REASON,
        )
    else:
        event = RunStopRequested(run_id=run_id)
    seq = await _publish(gw, event, "stop the run")
    log.info("run %s: %s (seq %d)", run_id, event.type, seq)
    run = await _read_back(gw, run_id, seq)
    if run is not None:
        return run
    with db_errors():
        run = await readmodels.get_run(gw.pool, run_id)
    if run is None:
        raise RunNotFound(run_id)
    if isinstance(event, RunFinished):
        return run.model_copy(update={"status": RunStatus.CANCELLED, "reason": CANCEL_REASON})
    return run


async def delete_run(gw: Gateway, run_id: str) -> None:
    """Forget a finished run (its row and its output)."""
    status = await _status(gw, run_id)
    if status not in TERMINAL_STATUSES:
        raise RunConflict(f"run {run_id} is {status}; stop it and let it finish before deleting it")
    seq = await _publish(gw, RunDeleted(run_id=run_id), "delete the run")
    log.info("run %s deleted (seq %d)", run_id, seq)
    await _readable(gw, seq)
