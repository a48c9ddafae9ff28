"""Request and response bodies of the workflow routes. Seed 004's own documents (import, remove, export)
are validated by `scriptbus.events.workflow_definitions` instead, field by field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scriptbus.events.statuses import RunStatus
from scriptbus.events.workflows import NAME_PATTERN, StepExec, StepStatus, WorkflowRunStatus
from scriptbus.gateway.fanout_schemas import FanoutHostRun

SEED_EXAMPLE: dict[str, Any] = {
    "context": {
        "project": {
            "id": 1,
            "name": "pr1",
            "workflows": [
                {
                    "id": 1,
                    "name": "wf1",
                    "tasks": [
                        {"id": 1, "name": "t11", "place": 1, "exec": "parallel", "function": "simple", "params": ["0"]},
                        {"id": 2, "name": "t12", "place": 2, "exec": "await", "function": "simple", "params": ["5"]},
                    ],
                }
            ],
        }
    }
}
SEED_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "Seed 004's document."},
                "example": SEED_EXAMPLE,
            }
        },
    }
}


class WorkflowView(BaseModel):
    """A workflow's current definition; `tasks` as seed 004 writes them."""

    project: str
    name: str
    version: int = Field(description="1 when first defined, one more on every change.")
    id: int | None = Field(None, description="Seed 004's `id` of the workflow.")
    max_active_runs: int
    tasks: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class ProjectView(BaseModel):
    name: str
    id: int | None = Field(None, description="Seed 004's `id` of the project.")
    workflows: list[WorkflowView]
    created_at: datetime
    updated_at: datetime


class ProjectList(BaseModel):
    items: list[ProjectView]


class WorkflowRunCreate(BaseModel):
    """Start a workflow run; `task` runs only that task (seed 004's `run -t`). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"task": "t11"}]})

    task: str | None = Field(None, pattern=NAME_PATTERN, description="Run only this task of the workflow.")


class StepAttempt(BaseModel):
    attempt: int
    run_id: str
    status: RunStatus
    exit_code: int | None
    signal: int | None
    fanout_id: str | None = Field(None, description="A `fan_out` step's attempt: its fan-out.")


class WorkflowRunStep(BaseModel):
    name: str
    place: int
    exec: StepExec
    status: StepStatus
    spad_status: str = Field(description="The status in seed 004's words: `success0`, `error(1)`, `rerun`, …")
    attempt: int = Field(description="The latest attempt's number (1 for the first), 0 before any.")
    run_id: str | None = Field(description="The latest attempt's run (or, in a retry, the run that succeeded).")
    attempts: list[StepAttempt]
    next_retry_at: datetime | None = Field(
        description="When the next attempt starts, while `retrying` "
        "(null for the moment until the scheduler has set it)."
    )
    survivors: list[int] = Field(description="Pids of the latest attempt still alive after SIGKILL.")
    held: bool = Field(description="The step holds off a stop (seed 004's `waiting`).")
    reason: str
    fanout_id: str | None = Field(None, description="A `fan_out` step: the latest attempt's fan-out.")
    fanout_url: str | None = Field(None, description="Where that fan-out is: `GET /api/v1/fanouts/{id}`.")
    fanout_hosts: list[FanoutHostRun] | None = Field(None, description="That fan-out's hosts and their runs.")


class WorkflowRunSummary(BaseModel):
    id: str
    project: str
    workflow: str
    version: int = Field(description="The definition version this run keeps, whatever the workflow says now.")
    status: WorkflowRunStatus
    task: str | None
    requested_by: str
    retry_of: str | None
    schedule_id: str | None = Field(None, description="The schedule whose tick started this run.")
    failed_step: str | None
    reason: str
    created_at: datetime
    started_at: datetime | None
    stop_requested_at: datetime | None
    finished_at: datetime | None


class WorkflowRun(WorkflowRunSummary):
    steps: list[WorkflowRunStep] = Field(description="In place order.")


class WorkflowRunList(BaseModel):
    items: list[WorkflowRunSummary]
    total: int
    next_cursor: str | None
