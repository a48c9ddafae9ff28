"""The scriptbus event contract: event models, subject names, streams, consumers and buckets.

Every service imports this package; nothing else is shared between services.
"""

from scriptbus.events.bus import BusSettings, connect_bus
from scriptbus.events.claims import CANCELLED_CLAIM, claim_holder, executor_claim, is_cancel
from scriptbus.events.codec import decode_event, encode_event, event_headers
from scriptbus.events.commands import CommandCreated, CommandDeleted, CommandUpdated
from scriptbus.events.envelope import Event, new_id, utcnow
from scriptbus.events.executors import ExecutorHeartbeat, ExecutorLost, ExecutorState, ExecutorStopped
from scriptbus.events.output import OutputChunk, OutputStream
from scriptbus.events.publishing import publish_event, subject_for
from scriptbus.events.reading import run_finish
from scriptbus.events.runs import (
    RunDeleted,
    RunFinished,
    RunRequested,
    RunStarted,
    RunStopRequested,
)
from scriptbus.events.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStatus
from scriptbus.events.streams import (
    claims_bucket,
    command_names_bucket,
    ensure_queue,
    ensure_streams,
    idempotency_bucket,
)
from scriptbus.events.subjects import Subjects, host_token, valid_token
from scriptbus.events.workflows import StepSpec, StepStatus, WorkflowRunStatus, step_run_id, workflow_id

__all__ = [
    "BusSettings",
    "CANCELLED_CLAIM",
    "claim_holder",
    "executor_claim",
    "is_cancel",
    "connect_bus",
    "publish_event",
    "run_finish",
    "subject_for",
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "CommandCreated",
    "CommandDeleted",
    "CommandUpdated",
    "Event",
    "ExecutorHeartbeat",
    "ExecutorLost",
    "ExecutorState",
    "ExecutorStopped",
    "OutputChunk",
    "OutputStream",
    "RunDeleted",
    "RunFinished",
    "RunRequested",
    "RunStarted",
    "RunStatus",
    "RunStopRequested",
    "Subjects",
    "decode_event",
    "encode_event",
    "claims_bucket",
    "command_names_bucket",
    "idempotency_bucket",
    "ensure_queue",
    "ensure_streams",
    "event_headers",
    "host_token",
    "new_id",
    "utcnow",
    "valid_token",
    "StepSpec",
    "StepStatus",
    "WorkflowRunStatus",
    "step_run_id",
    "workflow_id",
]
