"""Events to and from bytes on the wire: JSON with a literal `type`, never a Python import path.

Old schema versions are upcast by the event class's own chain (`Event.upcast`, `upcast_vN_vN+1`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from scriptbus.events.commands import CommandCreated, CommandDeleted, CommandUpdated
from scriptbus.events.envelope import Event
from scriptbus.events.executors import ExecutorHeartbeat, ExecutorLost, ExecutorStopped
from scriptbus.events.fanouts import FANOUT_EVENT_TYPES
from scriptbus.events.files import FileDeleted, FileStored
from scriptbus.events.runs import RunDeleted, RunFinished, RunRequested, RunStarted, RunStopRequested
from scriptbus.events.schedules import SCHEDULE_EVENT_TYPES
from scriptbus.events.secrets import SecretRemoved, SecretSet
from scriptbus.events.tokens import TokenCreated, TokenRevoked
from scriptbus.events.workflows import WORKFLOW_EVENT_TYPES

HEADER_TYPE = "Scriptbus-Type"

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        RunRequested,
        RunStarted,
        RunStopRequested,
        RunFinished,
        RunDeleted,
        ExecutorHeartbeat,
        ExecutorStopped,
        ExecutorLost,
        CommandCreated,
        CommandUpdated,
        CommandDeleted,
        SecretSet,
        SecretRemoved,
        TokenCreated,
        TokenRevoked,
        FileStored,
        FileDeleted,
    )
}
EVENT_TYPES.update({cls.model_fields["type"].default: cls for cls in WORKFLOW_EVENT_TYPES})
EVENT_TYPES.update({cls.model_fields["type"].default: cls for cls in FANOUT_EVENT_TYPES})
EVENT_TYPES.update({cls.model_fields["type"].default: cls for cls in SCHEDULE_EVENT_TYPES})

_ADAPTERS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(cls) for name, cls in EVENT_TYPES.items()}


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()


def event_headers(event: Event) -> dict[str, str]:
    """Headers to publish an event with: `Nats-Msg-Id` lets JetStream drop a republished duplicate."""
    return {"Nats-Msg-Id": event.event_id, HEADER_TYPE: event.type}


def decode_event(data: bytes) -> Event | None:
    """The event in `data`, upcast to the current schema; None for a type this version does not know."""
    raw: dict[str, Any] = json.loads(data)
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        return None
    event: Event = _ADAPTERS[kind].validate_python(EVENT_TYPES[kind].upcast(raw))
    return event
