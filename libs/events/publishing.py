"""Where each event goes, and publishing it to JetStream."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import PubAck

from scriptbus.events.codec import encode_event, event_headers
from scriptbus.events.commands import CommandEvent
from scriptbus.events.envelope import Event
from scriptbus.events.executors import ExecutorEvent
from scriptbus.events.fanouts import FanoutEvent
from scriptbus.events.files import FileEvent
from scriptbus.events.runs import RUN_ENDING_TYPES, RunEvent, RunRequested
from scriptbus.events.schedules import ScheduleEvent
from scriptbus.events.secrets import SecretEvent
from scriptbus.events.streams import ensure_queue
from scriptbus.events.subjects import Subjects
from scriptbus.events.tokens import TokenEvent
from scriptbus.events.workflows import ProjectEvent, WfRunEvent, WorkflowEvent


def subject_for(s: Subjects, event: Event) -> str:
    if isinstance(event, RunRequested):
        return s.run_requested(event.run_id, event.target)
    if isinstance(event, RunEvent):
        return s.run_event(event.run_id, event.type.removeprefix("run."))
    if isinstance(event, CommandEvent):
        return s.command_event(event.command_id, event.type.removeprefix("command."))
    if isinstance(event, ExecutorEvent):
        return s.executor_event(event.host, event.type.removeprefix("executor."))
    if isinstance(event, WorkflowEvent):
        return s.workflow_event(event.workflow_id, event.type.removeprefix("workflow."))
    if isinstance(event, ProjectEvent):
        return s.workflow_event(event.project_id, event.type.replace(".", "_"))
    if isinstance(event, WfRunEvent):
        return s.wfrun_event(event.wfrun_id, event.type.removeprefix("wfrun."))
    if isinstance(event, SecretEvent):
        return s.secret_event(event.name, event.type.removeprefix("secret."))
    if isinstance(event, FileEvent):
        return s.file_event(event.key, event.type.removeprefix("file."))
    if isinstance(event, TokenEvent):
        return s.token_event(event.token_id, event.type.removeprefix("token."))
    if isinstance(event, FanoutEvent):
        return s.fanout_event(event.fanout_id, event.type.removeprefix("fanout."))
    if isinstance(event, ScheduleEvent):
        return s.schedule_event(event.schedule_id, event.type.removeprefix("schedule."))
    raise TypeError(f"no subject for event type {event.type!r}")


async def publish_event(js: JetStreamContext, s: Subjects, event: Event, timeout: float = 5.0) -> PubAck:
    """Store `event` in its stream; returns the ack with its stream sequence."""
    return await js.publish(subject_for(s, event), encode_event(event), headers=event_headers(event), timeout=timeout)


def run_ending_subjects(s: Subjects, run_id: str) -> frozenset[str]:
    """The subjects of the events that end run `run_id` (`RUN_ENDING_TYPES`)."""
    return frozenset(s.run_event(run_id, kind.removeprefix("run.")) for kind in RUN_ENDING_TYPES)


async def publish_request(
    js: JetStreamContext,
    s: Subjects,
    event: RunRequested,
    known_queues: set[str] | None = None,
    timeout: float = 5.0,
) -> PubAck:
    """Queue a run: make sure the durable queue of the request's pool or host exists, then store the
    request. In that order, always: queues deliver only what is published after they exist, so a
    request published first would never reach an executor. `known_queues` remembers queues already
    ensured by this process (and is updated)."""
    target = event.target
    if known_queues is None or target not in known_queues:
        await ensure_queue(js, s, target)
        if known_queues is not None:
            known_queues.add(target)
    return await publish_event(js, s, event, timeout)
