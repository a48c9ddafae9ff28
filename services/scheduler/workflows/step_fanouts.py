"""Steps with `fan_out`: each attempt is a fan-out over the live executors matching at dispatch.

The attempt keeps its step run id (so the workflow state and its decisions are those of any step), but
no run has that id: the attempt's fan-out (its id derived from the workflow run, step and attempt) runs
one ordinary run per host, driven by the fan-out driver. The workflow driver reads the fan-out's
`host_dispatched` and `finished` events as the attempt's start and end. Nothing matching at dispatch is
an ending stored on the step run's own subject (`run.finished`, failed, with the reason).
"""

from __future__ import annotations

from scriptbus.events.commands import CommandDefinition
from scriptbus.events.envelope import Event
from scriptbus.events.fanouts import FanoutFinished, FanoutHostDispatched, FanoutRequested, FanoutStatus
from scriptbus.events.runs import RunFinished, RunStarted
from scriptbus.events.statuses import RunStatus
from scriptbus.events.workflows import StepSpec, decision_id, step_fanout_id
from scriptbus.scheduler.fleet import Fleet
from scriptbus.scheduler.workflows.state import WorkflowRunState
from scriptbus.scheduler.workflows.step_runs import step_request


class FleetNotHeard(Exception):
    """The scheduler has only just started listening to the fleet: matching now could miss hosts."""


_ENDING = {
    FanoutStatus.SUCCEEDED: RunStatus.SUCCEEDED,
    FanoutStatus.FAILED: RunStatus.FAILED,
    FanoutStatus.STOPPED: RunStatus.STOPPED,
}


def fanout_step_request(
    state: WorkflowRunState,
    spec: StepSpec,
    attempt: int,
    run_id: str,
    command: CommandDefinition | None,
    fleet: Fleet | None,
    now: float,
) -> FanoutRequested | RunFinished:
    """The attempt's fan-out over the hosts matching now, or its failure when none does. `FleetNotHeard`
    while the scheduler's view of the fleet may be incomplete (it just started)."""
    assert spec.fan_out is not None
    if fleet is not None and not fleet.heard(now):
        raise FleetNotHeard("waiting to hear the fleet before matching a fan_out step's hosts")
    f = spec.fan_out
    fanout_id = step_fanout_id(state.wfrun_id, spec.name, attempt)
    hosts, missing = fleet.matching(f.pool, f.labels, f.hosts) if fleet is not None else ([], [])
    if missing or not hosts:
        if missing:
            reason = f"fan_out: no live executor on host(s) {', '.join(missing)}"
        else:
            wanted = [f"pool {f.pool}" if f.pool else "any pool"]
            wanted += [f"label {k}={v}" for k, v in sorted(f.labels.items())]
            wanted += [f"hosts {', '.join(f.hosts)}"] if f.hosts else []
            reason = f"fan_out: no live executor matches {', '.join(wanted)}"
        return RunFinished(
            event_id=decision_id(state.wfrun_id, "fanout.no_hosts", spec.name, attempt),
            run_id=run_id,
            status=RunStatus.FAILED,
            reason=reason + "; `GET /api/v1/executors` lists the fleet",
        )
    run = step_request(state, spec, attempt, run_id, command)
    return FanoutRequested(
        event_id=decision_id(state.wfrun_id, "fanout.requested", spec.name, attempt),
        fanout_id=fanout_id,
        script=run.script,
        command_id=run.command_id,
        args=run.args,
        env=run.env,
        secrets=run.secrets,
        description=run.description,
        pool=f.pool,
        labels=f.labels,
        named_hosts=f.hosts,
        hosts=hosts,
        max_parallel=f.max_parallel,
        max_failures=f.max_failures,
        timeout_s=run.timeout_s,
        stop_grace_s=run.stop_grace_s,
        requested_by=run.requested_by,
    )


def attempt_event(event: Event | None, run_id: str) -> RunStarted | RunFinished | None:
    """What a fan-out event means for the attempt it serves (run `run_id`): its first host starting is
    the attempt's start, the fan-out's end its end. Built the same on every fold, never stored."""
    if isinstance(event, FanoutHostDispatched):
        return RunStarted(event_id=event.event_id, run_id=run_id, host="fan-out", pid=0, executor_id="")
    if isinstance(event, FanoutFinished):
        return RunFinished(
            event_id=event.event_id,
            run_id=run_id,
            status=_ENDING[event.status],
            reason=f"fan-out {event.fanout_id} {event.status.value}; GET /api/v1/fanouts/{event.fanout_id}",
        )
    return None
