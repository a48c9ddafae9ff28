"""The write side: a validated request becomes an event in JetStream, then the gateway waits until the
recorder has projected it so the answer (and the caller's next read) shows the change."""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors

from scriptbus.events.claims import CANCEL_REASON, CANCELLED_CLAIM, cancel_event_id, is_cancel
from scriptbus.events.codec import encode_event, event_headers
from scriptbus.events.envelope import Event
from scriptbus.events.publishing import publish_event, publish_request
from scriptbus.events.runs import RunDeleted, RunFinished, RunRequested, RunStopRequested
from scriptbus.events.statuses import TERMINAL_STATUSES, RunStatus
from scriptbus.events.streams import MAX_MSG_SIZE
from scriptbus.events.subjects import host_token
from scriptbus.events.workflows import ACTIVE_WORKFLOW_RUN_STATUSES
from scriptbus.gateway import (
    artifacts,
    fanout_readmodels,
    files,
    fleet,
    idempotency,
    queries,
    readmodels,
    secret_names,
    workflow_readmodels,
)
from scriptbus.gateway.errors import (
    DB_ERRORS,
    BusUnavailable,
    GatewayError,
    RequestTooLarge,
    RunConflict,
    RunNotFound,
    bus_errors,
    db_errors,
)
from scriptbus.gateway.schemas import CommandRunCreate, Run, RunCreate
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

# Room for the headers JetStream stores with the payload.
_HEADER_ROOM = 512


def require_bus(gw: Gateway) -> None:
    """A 503 unless NATS is connected."""
    # While reconnecting, nats-py would buffer the publish and the caller would wait for nothing.
    if not gw.nc.is_connected:
        raise BusUnavailable("NATS is not connected; nothing was stored, try again shortly")


async def publish(gw: Gateway, event: Event, what: str) -> int:
    """Store `event`; returns its stream sequence."""
    require_bus(gw)
    try:
        ack = await publish_event(gw.js, gw.subjects, event)
    except nats.errors.TimeoutError as exc:
        raise BusUnavailable(
            f"NATS did not confirm the {event.type} event in time; it may or may not have been stored"
        ) from exc
    except (nats.errors.Error, OSError) as exc:
        raise BusUnavailable(f"NATS unavailable: could not {what}: {exc or type(exc).__name__}") from exc
    return ack.seq


async def readable(gw: Gateway, seq: int) -> bool:
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
    if not await readable(gw, seq):
        return None
    try:
        run = await readmodels.get_run(gw.pool, run_id)
    except DB_ERRORS as exc:
        log.warning("reading run %s back failed: %s", run_id, exc)
        return None
    if run is None:
        return None
    try:
        return await fleet.explain_one(gw, run)
    except GatewayError as exc:
        # The run is stored: a reason that cannot be read must not fail the request.
        log.warning("could not tell why run %s waits: %s", run_id, exc)
        return run


def _jsonb_order(d: dict[str, str]) -> dict[str, str]:
    """`d` in the key order PostgreSQL's jsonb gives back (shorter keys first, then by bytes)."""
    return dict(sorted(d.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode())))


def _from_request(event: RunRequested) -> Run:
    """The run as the recorder projects `event` into a new row (`run_requested`), before anything else
    happens to it."""
    return Run(
        id=event.run_id,
        status=RunStatus.QUEUED,
        command_id=event.command_id,
        script=event.script,
        args=event.args,
        description=event.description,
        env=_jsonb_order(event.env),
        secrets=event.secrets,
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
        requested_by=event.requested_by,
    )


def check_size(gw: Gateway, event: Event) -> None:
    """A 413 unless `event` fits in one NATS message."""
    size = len(encode_event(event)) + sum(len(k) + len(v) + 4 for k, v in event_headers(event).items())
    limit = min(gw.nc.max_payload or MAX_MSG_SIZE, MAX_MSG_SIZE) - _HEADER_ROOM
    if size > limit:
        raise RequestTooLarge(
            f"script, args, env and description together encode to {size} bytes; "
            f"one {event.type.split('.')[0]} event may take at most {limit} bytes"
        )


async def create_run(gw: Gateway, body: RunCreate, run_id: str, by: str) -> Run:
    """Queue run `run_id` of an inline script, or of a saved command when `body.command_id` names one;
    `by` is the caller's name."""
    if body.command_id is not None:
        return await create_command_run(gw, body.command_id, body.command_overrides(), run_id, by)
    assert body.script is not None  # the route checked that exactly one of the two is given
    event = RunRequested(
        run_id=run_id,
        script=body.script,
        args=body.args,
        env=body.env,
        secrets=body.secrets,
        description=body.description,
        timeout_s=body.timeout_s,
        stop_grace_s=body.stop_grace_s,
        pool=body.pool,
        host=host_token(body.host) if body.host else None,
        requested_by=by,
        files=body.files,
        artifacts=body.artifacts,
    )
    return await _request(gw, event)


async def create_command_run(gw: Gateway, ref: str, body: CommandRunCreate, run_id: str, by: str) -> Run:
    """Queue a run of a saved command: its script (copied, so later edits do not change this run) with
    `body.args`; `body.env` over the command's env; fields `body` leaves out take the command's values."""
    command = await queries.get_command(gw, ref)
    given = body.model_fields_set
    event = RunRequested(
        run_id=run_id,
        script=command.script,
        args=body.args,
        env={**command.env, **body.env},
        secrets=list(dict.fromkeys([*command.secrets, *body.secrets])),
        description=command.description if body.description is None else body.description,
        # An explicit null timeout means "none", overriding the command's.
        timeout_s=body.timeout_s if "timeout_s" in given else command.timeout_s,
        stop_grace_s=command.stop_grace_s if body.stop_grace_s is None else body.stop_grace_s,
        pool=body.pool or command.pool,
        host=host_token(body.host) if body.host else None,
        command_id=command.id,
        requested_by=by,
        files=list(dict.fromkeys([*command.files, *body.files])),
        artifacts=list(dict.fromkeys([*command.artifacts, *body.artifacts])),
    )
    return await _request(gw, event)


async def _request(gw: Gateway, event: RunRequested) -> Run:
    """Publish `run.requested` to its pool's (or host's) queue and return the run."""
    check_size(gw, event)
    await secret_names.check_usable(gw, event.secrets, event.env)
    await files.check_stored(gw, event.files)
    require_bus(gw)
    try:
        ack = await publish_request(gw.js, gw.subjects, event, gw.queues)
    except nats.errors.TimeoutError as exc:
        raise BusUnavailable(
            f"NATS did not confirm the {event.type} event in time; it may or may not have been stored"
        ) from exc
    except (nats.errors.Error, OSError) as exc:
        raise BusUnavailable(f"NATS unavailable: could not queue the run: {exc or type(exc).__name__}") from exc
    seq = ack.seq
    log.info("run %s requested on %s (seq %d)", event.run_id, event.target, seq)
    if idempotency.id_is_fresh():
        # A fresh id names no earlier row, so once the projection has applied `seq` the row is the event's
        # (what GET shows as of that sequence): no read-back query.
        await readable(gw, seq)
    else:
        run = await _read_back(gw, event.run_id, seq)
        if run is not None:
            return run
    try:
        return await fleet.explain_one(gw, _from_request(event))
    except GatewayError as exc:
        # The run is stored: a reason that cannot be read must not fail the request.
        log.warning("could not tell why run %s waits: %s", event.run_id, exc)
        return _from_request(event)


async def _status(gw: Gateway, run_id: str) -> RunStatus:
    with db_errors():
        status = await readmodels.get_status(gw.pool, run_id)
    if status is None:
        raise RunNotFound(run_id)
    return status


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
        return is_cancel(entry.value)


async def stop_run(gw: Gateway, run_id: str, by: str) -> Run:
    """Stop a run: cancel it if it has not started, else ask its executor to stop it."""
    status = await _status(gw, run_id)
    if status in TERMINAL_STATUSES:
        raise RunConflict(f"run {run_id} already finished ({status})")
    require_bus(gw)
    event: RunFinished | RunStopRequested
    if await _claim_for_cancel(gw, run_id):
        event = RunFinished(
            event_id=cancel_event_id(run_id),
            run_id=run_id,
            status=RunStatus.CANCELLED,
            reason=CANCEL_REASON,
            stopped_by=by,
        )
    else:
        event = RunStopRequested(run_id=run_id, stopped_by=by)
    seq = await publish(gw, event, "stop the run")
    log.info("run %s: %s (seq %d)", run_id, event.type, seq)
    run = await _read_back(gw, run_id, seq)
    if run is not None:
        return run
    with db_errors():
        run = await readmodels.get_run(gw.pool, run_id)
    if run is None:
        raise RunNotFound(run_id)
    if isinstance(event, RunFinished):
        return run.model_copy(update={"status": RunStatus.CANCELLED, "reason": CANCEL_REASON, "stopped_by": by})
    return run.model_copy(update={"stopped_by": run.stopped_by or by})


async def delete_run(gw: Gateway, run_id: str, by: str) -> None:
    """Forget a finished run (its row and its output)."""
    status = await _status(gw, run_id)
    if status not in TERMINAL_STATUSES:
        raise RunConflict(f"run {run_id} is {status}; stop it and let it finish before deleting it")
    await _not_a_step_of_an_active_workflow_run(gw, run_id)
    await _not_a_run_of_an_unfinished_fanout(gw, run_id)
    kept = await artifacts.listed(gw, run_id)
    seq = await publish(gw, RunDeleted(run_id=run_id, deleted_by=by), "delete the run")
    log.info("run %s deleted (seq %d)", run_id, seq)
    await artifacts.delete_all(gw, run_id, kept)
    await readable(gw, seq)


async def _not_a_step_of_an_active_workflow_run(gw: Gateway, run_id: str) -> None:
    """A step's run stays while its workflow run is active: deleting purges its `run.finished`, which a
    restarted scheduler folds from the stream to know the step ended (it would wait for it forever)."""
    with db_errors():
        wfrun_id = await readmodels.workflow_run_of(gw.pool, run_id)
        if wfrun_id is None:
            return
        wfrun_status = await workflow_readmodels.run_status(gw.pool, wfrun_id)
    # Unknown (not projected yet) counts as active: a step's run never comes before its workflow run.
    if wfrun_status is None or wfrun_status in ACTIVE_WORKFLOW_RUN_STATUSES:
        raise RunConflict(f"run {run_id} is a step of active workflow run {wfrun_id}; delete it once that ends")


async def _not_a_run_of_an_unfinished_fanout(gw: Gateway, run_id: str) -> None:
    """As for workflow steps: the scheduler folds a fan-out's run endings from the stream after a restart."""
    with db_errors():
        fanout_id = await fanout_readmodels.unfinished_fanout_of(gw.pool, run_id)
    if fanout_id is not None:
        raise RunConflict(f"run {run_id} is a host's run of fan-out {fanout_id}; delete it once that finishes")
