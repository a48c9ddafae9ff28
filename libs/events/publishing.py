"""Where each event goes, and publishing it to JetStream."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import PubAck

from scriptbus.events.codec import encode_event, event_headers
from scriptbus.events.commands import CommandEvent
from scriptbus.events.envelope import Event
from scriptbus.events.executors import ExecutorEvent
from scriptbus.events.runs import RunEvent, RunRequested
from scriptbus.events.subjects import Subjects
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
    raise TypeError(f"no subject for event type {event.type!r}")


async def publish_event(js: JetStreamContext, s: Subjects, event: Event, timeout: float = 5.0) -> PubAck:
    """Store `event` in its stream; returns the ack with its stream sequence."""
    return await js.publish(subject_for(s, event), encode_event(event), headers=event_headers(event), timeout=timeout)
