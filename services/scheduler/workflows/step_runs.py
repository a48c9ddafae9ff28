"""The run request of one attempt of a workflow step: what it runs, where, and under which run id.

A step names a saved command (resolved by name when the attempt is dispatched, from the command-names
bucket and the command's own events in the stream, never from PostgreSQL which lags), a program on the
executor's PATH when no command has that name, or an inline script.
"""

from __future__ import annotations

import logging
import shlex

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from scriptbus.events.codec import decode_event
from scriptbus.events.commands import CommandDefinition, command_name_key
from scriptbus.events.runs import RunRequested
from scriptbus.events.subjects import Subjects, valid_token
from scriptbus.events.workflows import StepSpec, decision_id
from scriptbus.scheduler.workflows.state import WorkflowRunState

log = logging.getLogger(__name__)


async def find_command(js: JetStreamContext, s: Subjects, names: KeyValue, name: str) -> CommandDefinition | None:
    """The saved command called `name` as its last event defines it; None when no command has that name
    (a reservation whose command never came, or gave the name up, does not count)."""
    try:
        entry = await names.get(command_name_key(name))
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.InvalidKeyError):
        return None
    command_id = (entry.value or b"").decode()
    if not valid_token(command_id):
        return None
    try:
        msg = await js.get_last_msg(s.events_stream, s.command_event(command_id, "*"))
    except nats.js.errors.NotFoundError:
        return None
    event = decode_event(msg.data or b"{}")
    if isinstance(event, CommandDefinition) and event.name == name:
        return event
    return None


def step_request(
    state: WorkflowRunState, spec: StepSpec, attempt: int, run_id: str, command: CommandDefinition | None
) -> RunRequested:
    """The request of attempt `attempt` of step `spec`. Its event id is derived like a decision's, so a
    request re-published after a crash is one message."""
    args = list(spec.params)
    env = dict(spec.env)
    timeout_s = spec.timeout_s
    pool = spec.pool
    command_id = None
    secrets: list[str] = []
    if command is not None:
        script = command.script
        env = {**command.env, **spec.env}
        timeout_s = spec.timeout_s if spec.timeout_s is not None else command.timeout_s
        pool = command.pool if spec.pool == "default" else spec.pool
        command_id = command.command_id
        secrets = list(command.secrets)
    elif spec.function is not None:
        # A program on the executor's PATH with params as its arguments (seed 004's `"function": "echo"`).
        script = f'exec {shlex.quote(spec.function)} "$@"'
    else:
        assert spec.script is not None
        script = spec.script
    return RunRequested(
        event_id=decision_id(state.wfrun_id, "run.requested", spec.name, attempt),
        run_id=run_id,
        script=script,
        args=args,
        env=env,
        description=f"{state.project}/{state.workflow} step {spec.name} attempt {attempt}",
        timeout_s=timeout_s,
        stop_grace_s=spec.stop_grace_s,
        pool=pool,
        host=spec.host,
        command_id=command_id,
        workflow_run_id=state.wfrun_id,
        workflow_step=spec.name,
        attempt=attempt,
        hold_max_s=spec.hold_max_s,
        secrets=secrets,
        # The step runs on behalf of whoever started (or retried) the workflow run.
        requested_by=state.requested_by,
    )
