"""The write side of fan-outs: match the live fleet, record the request, stop and retry requests, and
answer once the read models show them."""

from __future__ import annotations

import logging

from scriptbus.events.executors import ExecutorState
from scriptbus.events.fanouts import (
    FAILED_RUN_STATUSES,
    FanoutRequested,
    FanoutRetryRequested,
    FanoutStatus,
    FanoutStopRequested,
    fanout_run_id,
)
from scriptbus.events.subjects import host_token
from scriptbus.gateway import fanout_readmodels, fleet, queries, readmodels, secret_names
from scriptbus.gateway.actions import check_size, publish, readable
from scriptbus.gateway.errors import DB_ERRORS, GatewayError, db_errors, invalid_input
from scriptbus.gateway.fanout_schemas import Fanout, FanoutCreate, FanoutHostRun
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

# A retry reruns hosts whose run ended in one of these, and hosts never started (`skipped`).
_RETRIED = frozenset({s.value for s in FAILED_RUN_STATUSES} | {"stopped", "cancelled", "skipped"})


class FanoutNotFound(GatewayError):
    status_code = 404

    def __init__(self, fanout_id: str) -> None:
        super().__init__(f"fan-out {fanout_id} not found")


class FanoutConflict(GatewayError):
    status_code = 409


def _describe(body: FanoutCreate) -> str:
    parts = [f"pool '{body.pool}'" if body.pool else "any pool"]
    if body.labels:
        parts.append("labels " + ", ".join(f"{k}={v}" for k, v in sorted(body.labels.items())))
    if body.hosts:
        parts.append("hosts " + ", ".join(body.hosts))
    return "; ".join(parts)


async def match_hosts(gw: Gateway, body: FanoutCreate) -> list[str]:
    """The live (online) executors in `body.pool` with all `body.labels`, among `body.hosts` when given:
    a 422 naming named hosts that are not live, or the filter when nothing matches."""
    with db_errors():
        rows = await readmodels.executors(gw.pool)
    lost_after = gw.settings.executor_lost_after_s
    live = {row["host"]: row for row in rows if fleet.effective_state(row, lost_after) is ExecutorState.ONLINE}
    named = [host_token(h) for h in body.hosts]
    missing = [h for h in dict.fromkeys(named) if h not in live]
    if missing:
        raise invalid_input(
            ("body", "hosts"),
            f"Value error, no live executor on host(s) {', '.join(missing)}; "
            "`GET /api/v1/executors` lists the fleet and its state",
            body.hosts,
        )
    matched = [
        host
        for host, row in sorted(live.items())
        if (not named or host in named)
        and (body.pool is None or body.pool in (row["pools"] or []))
        and all((row["labels"] or {}).get(k) == v for k, v in body.labels.items())
    ]
    if not matched:
        field = "labels" if body.labels else "pool" if body.pool else "hosts"
        raise invalid_input(
            ("body", field),
            f"Value error, no live executor matches {_describe(body)}; `GET /api/v1/executors` lists the fleet",
            None,
        )
    return matched


async def create_fanout(gw: Gateway, body: FanoutCreate, fanout_id: str, by: str) -> Fanout:
    hosts = await match_hosts(gw, body)
    script, env, secrets, timeout_s, command_id = body.script, body.env, body.secrets, body.timeout_s, None
    description, grace = body.description, body.stop_grace_s
    if body.command_id is not None:
        # As for a run of a saved command: its script copied, env and secrets merged over its own.
        command = await queries.get_command(gw, body.command_id)
        script, command_id = command.script, command.id
        env = {**command.env, **body.env}
        secrets = list(dict.fromkeys([*command.secrets, *body.secrets]))
        given = body.model_fields_set
        timeout_s = body.timeout_s if "timeout_s" in given else command.timeout_s
        description = body.description if "description" in given else command.description
        grace = body.stop_grace_s if "stop_grace_s" in given else command.stop_grace_s
    assert script is not None
    event = FanoutRequested(
        fanout_id=fanout_id,
        script=script,
        command_id=command_id,
        args=body.args,
        env=env,
        secrets=secrets,
        description=description,
        pool=body.pool,
        labels=body.labels,
        named_hosts=[host_token(h) for h in body.hosts],
        hosts=hosts,
        max_parallel=body.max_parallel,
        max_failures=body.max_failures,
        timeout_s=timeout_s,
        stop_grace_s=grace,
        requested_by=by,
    )
    check_size(gw, event)
    await secret_names.check_usable(gw, event.secrets, event.env)
    seq = await publish(gw, event, "start the fan-out")
    log.info("fan-out %s requested on %d host(s) (seq %d)", fanout_id, len(hosts), seq)
    return await _read_back(gw, fanout_id, seq) or _from_request(event)


def _from_request(event: FanoutRequested) -> Fanout:
    """The fan-out as just requested, when the read model could not show it in time."""
    runs = [
        FanoutHostRun(host=h, status="pending", attempt=0, run_id=fanout_run_id(event.fanout_id, h, 1))
        for h in event.hosts
    ]
    return Fanout(
        id=event.fanout_id,
        status=FanoutStatus.RUNNING,
        script=event.script,
        command_id=event.command_id,
        args=event.args,
        description=event.description,
        pool=event.pool,
        labels=event.labels,
        max_parallel=event.max_parallel,
        max_failures=event.max_failures,
        timeout_s=event.timeout_s,
        requested_by=event.requested_by,
        round=1,
        created_at=event.occurred_at,
        stop_requested_at=None,
        finished_at=None,
        hosts=event.hosts,
        runs=runs,
        counts={"pending": len(runs)},
    )


async def _read_back(gw: Gateway, fanout_id: str, seq: int) -> Fanout | None:
    if not await readable(gw, seq):
        return None
    try:
        return await fanout_readmodels.get_fanout(gw.pool, fanout_id)
    except DB_ERRORS as exc:
        log.warning("reading fan-out %s back failed: %s", fanout_id, exc)
        return None


async def get_fanout(gw: Gateway, fanout_id: str) -> Fanout:
    with db_errors():
        fanout = await fanout_readmodels.get_fanout(gw.pool, fanout_id)
    if fanout is None:
        raise FanoutNotFound(fanout_id)
    return fanout


async def stop_fanout(gw: Gateway, fanout_id: str, by: str) -> Fanout:
    """Start no more hosts and stop every run of the fan-out (the scheduler does both)."""
    fanout = await get_fanout(gw, fanout_id)
    if fanout.finished_at is not None:
        raise FanoutConflict(f"fan-out {fanout_id} already finished ({fanout.status})")
    seq = await publish(gw, FanoutStopRequested(fanout_id=fanout_id, requested_by=by), "stop the fan-out")
    return await _read_back(gw, fanout_id, seq) or fanout


async def retry_fanout(gw: Gateway, fanout_id: str, by: str) -> Fanout:
    """Run again, as a new attempt, every host whose run did not succeed (and those never started)."""
    fanout = await get_fanout(gw, fanout_id)
    if fanout.finished_at is None:
        raise FanoutConflict(f"fan-out {fanout_id} is still {fanout.status}; retry it once it has finished")
    hosts = [r.host for r in fanout.runs if r.status in _RETRIED]
    if not hosts:
        raise FanoutConflict(f"fan-out {fanout_id}: every host succeeded, there is nothing to retry")
    seq = await publish(gw, FanoutRetryRequested(fanout_id=fanout_id, hosts=hosts, requested_by=by), "retry")
    log.info("fan-out %s: retry of %s (seq %d)", fanout_id, ", ".join(hosts), seq)
    return await _read_back(gw, fanout_id, seq) or fanout
