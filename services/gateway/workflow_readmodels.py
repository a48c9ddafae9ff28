"""SQL against the workflow read models (`services/recorder/migrations/004_workflows.sql`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from scriptbus.events.workflow_definitions import Project, Workflow, dump_task
from scriptbus.events.workflows import (
    ACTIVE_WORKFLOW_RUN_STATUSES,
    StepSpec,
    WorkflowRunStatus,
    WorkflowSettings,
    step_fanout_id,
)
from scriptbus.gateway.fanout_readmodels import host_runs
from scriptbus.gateway.workflow_schemas import (
    ProjectView,
    WorkflowRun,
    WorkflowRunStep,
    WorkflowRunSummary,
    WorkflowView,
)

_RUN_COLUMNS = """
    id::text AS id, project, workflow, version, status, task, requested_by, retry_of::text AS retry_of,
    failed_step, reason, created_at, started_at, stop_requested_at, finished_at, schedule_id::text AS schedule_id
"""


def _workflow(row: asyncpg.Record) -> Workflow:
    return Workflow(
        name=row["name"],
        version=row["version"],
        seed_id=row["seed_id"],
        settings=WorkflowSettings.model_validate(row["settings"]),
        steps=tuple(StepSpec.model_validate(s) for s in row["steps"]),
    )


def _view(row: asyncpg.Record) -> WorkflowView:
    workflow = _workflow(row)
    return WorkflowView(
        project=row["project"],
        name=workflow.name,
        version=workflow.version,
        id=workflow.seed_id,
        max_active_runs=workflow.settings.max_active_runs,
        tasks=[dump_task(s) for s in workflow.steps],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def get_project(pool: asyncpg.Pool, name: str) -> Project | None:
    """The project's current definitions, its workflows in the order they were first defined."""
    async with pool.acquire() as conn:
        project = await conn.fetchrow("SELECT name, seed_id FROM projects WHERE name = $1", name)
        rows = await conn.fetch("SELECT * FROM workflows WHERE project = $1 ORDER BY seq", name)
    if project is None and not rows:
        return None
    seed_id = project["seed_id"] if project is not None else None
    return Project(name=name, seed_id=seed_id, workflows=tuple(_workflow(r) for r in rows))


async def project_views(pool: asyncpg.Pool, name: str | None = None) -> list[ProjectView]:
    """Every project (or the one named), by name, with its workflows."""
    async with pool.acquire() as conn:
        projects = await conn.fetch("SELECT * FROM projects WHERE $1::text IS NULL OR name = $1 ORDER BY name", name)
        rows = await conn.fetch(
            "SELECT * FROM workflows WHERE $1::text IS NULL OR project = $1 ORDER BY project, seq", name
        )
    views = []
    for p in projects:
        workflows = [_view(r) for r in rows if r["project"] == p["name"]]
        views.append(
            ProjectView(
                name=p["name"],
                id=p["seed_id"],
                workflows=workflows,
                created_at=p["created_at"],
                updated_at=p["updated_at"],
            )
        )
    return views


async def get_workflow_row(pool: asyncpg.Pool, project: str, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT *, id::text AS workflow_id FROM workflows WHERE project = $1 AND name = $2", project, name
    )
    return row


async def get_workflow(pool: asyncpg.Pool, project: str, name: str) -> WorkflowView | None:
    row = await get_workflow_row(pool, project, name)
    return None if row is None else _view(row)


async def version_steps(pool: asyncpg.Pool, workflow_id: str, version: int) -> list[StepSpec]:
    """The steps of one version of a workflow (what a retry of a run of that version runs)."""
    steps = await pool.fetchval(
        "SELECT steps FROM workflow_versions WHERE workflow_id = $1::uuid AND version = $2", workflow_id, version
    )
    return [StepSpec.model_validate(s) for s in steps or []]


async def active_runs(pool: asyncpg.Pool, project: str, workflows: list[str]) -> list[tuple[str, str]]:
    """(workflow, run id) of every active run of the named workflows."""
    rows = await pool.fetch(
        """SELECT workflow, id::text AS id FROM workflow_runs
           WHERE project = $1 AND workflow = ANY($2::text[]) AND status = ANY($3::text[])
           ORDER BY created_at""",
        project,
        workflows,
        sorted(s.value for s in ACTIVE_WORKFLOW_RUN_STATUSES),
    )
    return [(r["workflow"], r["id"]) for r in rows]


async def run_status(pool: asyncpg.Pool, wfrun_id: str) -> WorkflowRunStatus | None:
    status = await pool.fetchval("SELECT status FROM workflow_runs WHERE id = $1::uuid", wfrun_id)
    return None if status is None else WorkflowRunStatus(status)


async def run_statuses(pool: asyncpg.Pool, wfrun_ids: list[str]) -> dict[str, WorkflowRunStatus]:
    """The status of each of `wfrun_ids` the read models know."""
    rows = await pool.fetch("SELECT id::text AS id, status FROM workflow_runs WHERE id = ANY($1::uuid[])", wfrun_ids)
    return {r["id"]: WorkflowRunStatus(r["status"]) for r in rows}


async def get_run(pool: asyncpg.Pool, wfrun_id: str) -> WorkflowRun | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE id = $1::uuid", wfrun_id)
        if row is None:
            return None
        steps = await conn.fetch(
            """SELECT name, place, exec, status, spad_status, attempt, run_id::text AS run_id, attempts,
                      next_retry_at, survivors, held, reason, jsonb_typeof(spec->'fan_out') = 'object' AS fans_out
               FROM workflow_run_steps WHERE wfrun_id = $1::uuid ORDER BY place, name""",
            wfrun_id,
        )
    views = [_step(wfrun_id, s) for s in steps]
    hosts = await host_runs(pool, [v.fanout_id for v in views if v.fanout_id is not None])
    for view in views:
        if view.fanout_id is not None:
            view.fanout_hosts = hosts.get(view.fanout_id, [])
    return WorkflowRun(**dict(row.items()), steps=views)


def _step(wfrun_id: str, row: asyncpg.Record) -> WorkflowRunStep:
    """A step as the API shows it; a `fan_out` step's attempts each name their fan-out (derived ids)."""
    step = WorkflowRunStep(**{k: v for k, v in row.items() if k != "fans_out"})
    if row["fans_out"]:
        for a in step.attempts:
            a.fanout_id = step_fanout_id(wfrun_id, step.name, a.attempt)
        if step.attempt > 0:
            step.fanout_id = step_fanout_id(wfrun_id, step.name, step.attempt)
            step.fanout_url = f"/api/v1/fanouts/{step.fanout_id}"
    return step


@dataclass(frozen=True)
class WorkflowRunFilter:
    project: str | None = None
    workflow: str | None = None
    status: WorkflowRunStatus | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("project", self.project), ("workflow", self.workflow), ("status", self.status)):
            if value is not None:
                params.append(value.value if isinstance(value, WorkflowRunStatus) else value)
                clauses.append(f"{column} = ${len(params)}")
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


async def list_runs(
    pool: asyncpg.Pool, where: WorkflowRunFilter, limit: int, before: tuple[datetime, str] | None
) -> tuple[list[WorkflowRunSummary], int, bool]:
    """A page of workflow runs newest first, how many match in all, and whether more follow."""
    clause, params = where.where()
    page_clause, page_params = clause, list(params)
    if before is not None:
        page_params += [before[0], before[1]]
        n = len(page_params)
        keyset = f"(created_at, id) < (${n - 1}::timestamptz, ${n}::uuid)"
        page_clause = f"{clause} AND {keyset}" if clause else f"WHERE {keyset}"
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_RUN_COLUMNS} FROM workflow_runs {page_clause} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(page_params) + 1}",
            *page_params,
            limit + 1,
        )
        total = await conn.fetchval(f"SELECT count(*) FROM workflow_runs {clause}", *params)
    return [WorkflowRunSummary(**dict(r.items())) for r in rows[:limit]], int(total), len(rows) > limit
