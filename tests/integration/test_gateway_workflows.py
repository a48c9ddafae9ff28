"""Workflows through the gateway with the real recorder (no scheduler: where a run must move on, the test
publishes the scheduler's and executors' events itself): seed 004's JSON imported as is, dumped and
round-tripped, its verbs' meanings, one active run per workflow, stop, retry, holds, the step runs
list, bad input, and `--rebuild` reproducing the workflow read models."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
import pytest

from scriptbus.events import RunFinished, RunRequested, RunStarted, RunStatus, publish_event, step_run_id
from scriptbus.events.active_runs import encode_holders
from scriptbus.events.envelope import new_id
from scriptbus.events.workflows import (
    WfRunFinished,
    WfRunStepDispatched,
    WfRunStepRetryScheduled,
    WfRunStepSettled,
    WorkflowRunStatus,
    workflow_id,
)
from scriptbus.gateway.workflow_actions import STALE_CLAIM_S
from tests.helpers.gateway import Api
from tests.helpers.processes import ServiceProcess
from tests.helpers.readmodels import dump_read_models
from tests.helpers.seed004 import SEED_004_SAMPLE
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually

JSON = {"Content-Type": "application/json"}
WORKFLOW_TABLES = ("projects", "workflows", "workflow_versions", "workflow_runs", "workflow_run_steps", "runs")


@pytest.fixture(name="wfapi")
async def wfapi_fixture(api: Api) -> AsyncIterator[Api]:
    yield api
    for bucket in (api.subjects.wfactive_bucket, api.subjects.wfdefs_bucket):
        try:
            await api.js.delete_stream(f"KV_{bucket}")
        except nats.js.errors.NotFoundError:
            pass


async def import_seed(api: Api, body: str | dict[str, Any] = SEED_004_SAMPLE, mode: str = "create") -> Any:
    content = body if isinstance(body, str) else json.dumps(body)
    response = await api.client.post("/api/v1/projects/import", params={"mode": mode}, content=content, headers=JSON)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def start(api: Api, workflow: str = "wf1", **body: Any) -> Any:
    response = await api.client.post(f"/api/v1/projects/pr1/workflows/{workflow}/runs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


async def test_seed_004_sample_imported_as_is_dumped_and_round_tripped(wfapi: Api) -> None:
    api = wfapi
    response = await api.client.post("/api/v1/projects/import", content=SEED_004_SAMPLE, headers=JSON)
    assert response.status_code == 201, response.text
    assert response.json() == json.loads(SEED_004_SAMPLE)
    exported = (await api.client.get("/api/v1/projects/pr1/export")).json()
    assert exported == json.loads(SEED_004_SAMPLE)
    # The dump goes back through update unchanged: no new version.
    assert await import_seed(api, exported, mode="replace") == exported
    wf1 = (await api.client.get("/api/v1/projects/pr1/workflows/wf1")).json()
    assert wf1["version"] == 1 and [t["name"] for t in wf1["tasks"]] == ["t11", "t12"]
    only = (await api.client.get("/api/v1/projects/pr1/export", params={"workflow": "wf2", "task": "t22"})).json()
    assert only["context"]["project"]["workflows"] == [
        {
            "id": 2,
            "name": "wf2",
            "tasks": [{"id": 2, "name": "t22", "place": 2, "exec": "await", "function": "echo", "params": ["5"]}],
        }
    ]
    listed = (await api.client.get("/api/v1/projects")).json()["items"]
    assert [(p["name"], [w["name"] for w in p["workflows"]]) for p in listed] == [("pr1", ["wf1", "wf2"])]


async def test_create_inserts_at_a_taken_place_and_remove_takes_leaves(wfapi: Api) -> None:
    api = wfapi
    await import_seed(api)
    added = await import_seed(
        api,
        {
            "context": {
                "project": {
                    "name": "pr1",
                    "workflows": [
                        {
                            "name": "wf1",
                            "tasks": [
                                {"name": "t10", "place": 1, "exec": "await", "function": "echo", "params": ["x"]}
                            ],
                        }
                    ],
                }
            }
        },
    )
    wf1 = added["context"]["project"]["workflows"][0]
    assert [(t["name"], t["place"]) for t in wf1["tasks"]] == [("t10", 1), ("t11", 2), ("t12", 3)]
    assert (await api.client.get("/api/v1/projects/pr1/workflows/wf1")).json()["version"] == 2

    response = await api.client.post(
        "/api/v1/projects/remove",
        json={
            "context": {
                "project": {"name": "pr1", "workflows": [{"name": "wf1", "tasks": [{"name": "t10"}]}, {"name": "wf2"}]}
            }
        },
    )
    assert response.status_code == 200, response.text
    workflows = response.json()["context"]["project"]["workflows"]
    assert [w["name"] for w in workflows] == ["wf1"] and [t["name"] for t in workflows[0]["tasks"]] == ["t11", "t12"]
    assert (await api.client.get("/api/v1/projects/pr1/workflows/wf2")).status_code == 404
    # A project that still has workflows stays; an empty one goes.
    only_project = {"context": {"project": {"name": "pr1"}}}
    assert (await api.client.post("/api/v1/projects/remove", json=only_project)).status_code == 409
    assert (await api.client.delete("/api/v1/projects/pr1/workflows/wf1")).status_code == 204
    assert (await api.client.post("/api/v1/projects/remove", json=only_project)).status_code == 204
    assert (await api.client.get("/api/v1/projects/pr1")).status_code == 404


async def test_concurrent_imports_keep_every_change(wfapi: Api) -> None:
    api = wfapi
    await import_seed(api)

    async def add(i: int) -> None:
        await import_seed(
            api,
            {
                "context": {
                    "project": {
                        "name": "pr1",
                        "workflows": [
                            {"name": "wf1", "tasks": [{"name": f"n{i}", "place": 100 + i, "function": "echo"}]}
                        ],
                    }
                }
            },
        )

    await asyncio.gather(*(add(i) for i in range(8)))
    wf1 = (await api.client.get("/api/v1/projects/pr1/workflows/wf1")).json()
    assert sorted(t["name"] for t in wf1["tasks"]) == sorted(["t11", "t12", *(f"n{i}" for i in range(8))])
    assert wf1["version"] == 9


async def test_canonical_put_and_post_of_a_workflow(wfapi: Api) -> None:
    api = wfapi
    response = await api.client.post(
        "/api/v1/projects/pr2/workflows", json={"name": "w", "tasks": [{"name": "a", "place": 1, "script": "true"}]}
    )
    assert response.status_code == 201, response.text
    assert response.json()["version"] == 1 and response.headers["location"] == "/api/v1/projects/pr2/workflows/w"
    again = await api.client.post("/api/v1/projects/pr2/workflows", json={"name": "w", "tasks": []})
    assert again.status_code == 409
    put = await api.client.put(
        "/api/v1/projects/pr2/workflows/w", json={"tasks": [{"name": "b", "place": 1, "function": "echo"}]}
    )
    assert put.status_code == 200, put.text
    assert [t["name"] for t in put.json()["tasks"]] == ["b"] and put.json()["version"] == 2


async def test_bad_input_is_422_naming_the_field(wfapi: Api) -> None:
    api = wfapi
    cases: list[tuple[Any, list[Any]]] = [
        (
            {
                "context": {
                    "project": {
                        "name": "pr1",
                        "workflows": [{"name": "w", "tasks": [{"name": "t", "place": "first", "function": "echo"}]}],
                    }
                }
            },
            ["body", "context", "project", "workflows", 0, "tasks", 0, "place"],
        ),
        (
            {
                "context": {
                    "project": {
                        "name": "pr1",
                        "workflows": [
                            {"name": "w", "tasks": [{"name": "t", "place": 1, "function": "echo", "colour": "red"}]}
                        ],
                    }
                }
            },
            ["body", "context", "project", "workflows", 0, "tasks", 0, "colour"],
        ),
        ({"context": {"project": {"name": "p\u0000r"}}}, ["body", "context", "project", "name"]),
        ({"context": {"project": {"name": "bad name"}}}, ["body", "context", "project", "name"]),
        ({"contxt": {}}, ["body", "context"]),
        (
            {"context": {"project": {"name": "pr1", "workflows": [{"name": "w", "max_active_runs": 10_001}]}}},
            ["body", "context", "project", "workflows", 0, "max_active_runs"],
        ),
    ]
    for body, loc in cases:
        response = await api.client.post("/api/v1/projects/import", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"] == loc, response.text
    assert (await api.client.get("/api/v1/projects")).json()["items"] == []
    await import_seed(api)
    response = await api.client.post("/api/v1/projects/pr1/workflows/wf1/runs", json={"task": "nope"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "task"]
    response = await api.client.post("/api/v1/projects/pr1/workflows/wf1/runs", json={"tsk": "t11"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "tsk"]
    assert (await api.client.post("/api/v1/projects/pr1/workflows/nope/runs", json={})).status_code == 404


async def test_a_run_starts_queued_one_at_a_time_and_update_waits_for_it(wfapi: Api) -> None:
    api = wfapi
    await import_seed(api)
    run = await start(api, "wf1")
    assert run["status"] == "queued" and run["version"] == 1 and run["project"] == "pr1"
    assert [(s["name"], s["status"], s["spad_status"], s["attempt"], s["attempts"]) for s in run["steps"]] == [
        ("t11", "pending", "new", 0, []),
        ("t12", "pending", "new", 0, []),
    ]
    assert (await api.client.get(f"/api/v1/workflow-runs/{run['id']}")).json() == run
    second = await api.client.post("/api/v1/projects/pr1/workflows/wf1/runs", json={})
    assert second.status_code == 409 and run["id"] in second.json()["detail"]
    # wf2 is another workflow: it may run beside.
    await start(api, "wf2", task="t21")

    before = (await api.client.get("/api/v1/projects/pr1/export")).json()
    changed = json.loads(SEED_004_SAMPLE)
    changed["context"]["project"]["workflows"][0]["tasks"][0]["params"] = ["99"]
    # Only wf1 is named: wf2 runs too, and would be refused for itself.
    changed["context"]["project"]["workflows"] = changed["context"]["project"]["workflows"][:1]
    response = await api.client.post("/api/v1/projects/import", params={"mode": "replace"}, json=changed)
    assert response.status_code == 409 and "wf1" in response.json()["detail"]
    removal = {"context": {"project": {"name": "pr1", "workflows": [{"name": "wf1"}]}}}
    assert (await api.client.post("/api/v1/projects/remove", json=removal)).status_code == 409
    assert (await api.client.get("/api/v1/projects/pr1/export")).json() == before

    # Stop: 202 and `stopping`; once the run has finished, 409 and the workflow may start again.
    stopped = await api.client.post(f"/api/v1/workflow-runs/{run['id']}/stop")
    assert stopped.status_code == 202 and stopped.json()["status"] == "stopping"
    await publish_event(api.js, api.subjects, WfRunFinished(wfrun_id=run["id"], status=WorkflowRunStatus.CANCELLED))

    async def finished() -> bool:
        got = (await api.client.get(f"/api/v1/workflow-runs/{run['id']}")).json()
        return bool(got["status"] == "cancelled" and got["finished_at"])

    await eventually(finished, what="the stopped run to read as cancelled")
    assert (await api.client.post(f"/api/v1/workflow-runs/{run['id']}/stop")).status_code == 409
    assert (await import_seed(api, changed, mode="replace"))["context"]["project"]["workflows"][0]["tasks"][0][
        "params"
    ] == ["99"]
    again = await start(api, "wf1")
    assert again["id"] != run["id"] and again["version"] == 2
    listed = (await api.client.get("/api/v1/workflow-runs", params={"workflow": "wf1"})).json()
    assert [r["id"] for r in listed["items"]] == [again["id"], run["id"]] and listed["total"] == 2
    page = (await api.client.get("/api/v1/workflow-runs", params={"limit": 1})).json()
    rest = (await api.client.get("/api/v1/workflow-runs", params={"limit": 5, "cursor": page["next_cursor"]})).json()
    assert len(page["items"]) + len(rest["items"]) == 3 and rest["next_cursor"] is None


async def start_at_once(api: Api, workflow: str, n: int) -> tuple[list[str], list[str]]:
    """`n` starts of pr1/`workflow` sent together: the ids of the runs accepted, the 409s' details."""
    url = f"/api/v1/projects/pr1/workflows/{workflow}/runs"
    responses = await asyncio.gather(*(api.client.post(url, json={}) for _ in range(n)))
    assert {r.status_code for r in responses} <= {202, 409}, [r.text for r in responses]
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    refused = [r.json()["detail"] for r in responses if r.status_code == 409]
    return accepted, refused


async def finish(api: Api, wfrun_id: str) -> None:
    """The run ends the way the scheduler records it (no scheduler here: its key is never released)."""
    await publish_event(api.js, api.subjects, WfRunFinished(wfrun_id=wfrun_id, status=WorkflowRunStatus.CANCELLED))

    async def finished() -> bool:
        return bool((await api.client.get(f"/api/v1/workflow-runs/{wfrun_id}")).json()["finished_at"])

    await eventually(finished, what=f"workflow run {wfrun_id} to read as finished")


async def test_max_active_runs_admits_that_many_concurrent_starts_and_409_names_the_active_ones(wfapi: Api) -> None:
    api = wfapi
    tasks = [{"name": "t", "place": 1, "exec": "await", "function": "echo"}]
    for name, limit in (("two", 2), ("one", None)):
        body: dict[str, Any] = {"tasks": tasks} if limit is None else {"tasks": tasks, "max_active_runs": limit}
        response = await api.client.put(f"/api/v1/projects/pr1/workflows/{name}", json=body)
        assert response.status_code in (200, 201), response.text
        assert response.json()["max_active_runs"] == (limit or 1)

    accepted, refused = await start_at_once(api, "two", 10)
    assert len(accepted) == 2 and len(refused) == 8
    assert all(accepted[0] in detail and accepted[1] in detail for detail in refused), refused
    # One ends: its place goes to the next start (taken over: no scheduler released it), and no further.
    await finish(api, accepted[0])
    third = await start(api, "two")
    again, refused = await start_at_once(api, "two", 3)
    assert again == [] and all(accepted[1] in d and third["id"] in d for d in refused), refused
    assert accepted[0] not in refused[0]
    # While any of them runs, the definition stays as it is.
    response = await api.client.put("/api/v1/projects/pr1/workflows/two", json={"tasks": tasks})
    assert response.status_code == 409 and "two" in response.json()["detail"]

    # The default stays one active run.
    accepted, refused = await start_at_once(api, "one", 10)
    assert len(accepted) == 1 and len(refused) == 9
    assert all(accepted[0] in detail for detail in refused), refused
    await finish(api, accepted[0])
    await start(api, "one")


async def test_a_place_claimed_by_a_start_that_never_published_is_taken_over_once_stale(wfapi: Api) -> None:
    api = wfapi
    tasks = [{"name": "t", "place": 1, "exec": "await", "function": "echo"}]
    response = await api.client.put("/api/v1/projects/pr1/workflows/two", json={"tasks": tasks, "max_active_runs": 2})
    assert response.status_code in (200, 201), response.text
    # What gateways that died between claiming and publishing leave: one long ago, one just now.
    old, recent = new_id(), new_id()
    kv = await api.js.key_value(api.subjects.wfactive_bucket)
    await kv.put(workflow_id("pr1", "two"), encode_holders({old: time.time() - STALE_CLAIM_S - 5, recent: time.time()}))
    run = await start(api, "two")
    accepted, refused = await start_at_once(api, "two", 2)
    assert accepted == [] and all(recent in d and run["id"] in d and old not in d for d in refused), refused


async def test_idempotency_key_starts_one_run(wfapi: Api) -> None:
    api = wfapi
    await import_seed(api)
    headers = {"Idempotency-Key": "start-wf1-once"}
    first = await api.client.post("/api/v1/projects/pr1/workflows/wf1/runs", json={}, headers=headers)
    again = await api.client.post("/api/v1/projects/pr1/workflows/wf1/runs", json={}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]


async def step_events(api: Api, wfrun_id: str, step: str, attempt: int, ending: RunStatus, **kw: Any) -> str:
    """What the scheduler and an executor would store for one attempt of a step."""
    run_id = step_run_id(wfrun_id, step, attempt)
    js, s = api.js, api.subjects
    await publish_event(js, s, WfRunStepDispatched(wfrun_id=wfrun_id, step=step, attempt=attempt, run_id=run_id))
    await publish_event(
        js,
        s,
        RunRequested(run_id=run_id, script="true", workflow_run_id=wfrun_id, workflow_step=step, attempt=attempt),
    )
    await publish_event(js, s, RunStarted(run_id=run_id, host="h1", pid=4242, executor_id="ex"))
    await publish_event(js, s, RunFinished(run_id=run_id, status=ending, **kw))
    return run_id


async def test_step_attempts_statuses_runs_filter_hold_retry_and_events(wfapi: Api) -> None:
    api = wfapi
    js, s = api.js, api.subjects
    await import_seed(api)
    run = await start(api, "wf1")
    wid = run["id"]
    t11 = await step_events(api, wid, "t11", 1, RunStatus.SUCCEEDED, exit_code=0)
    await publish_event(
        js,
        s,
        WfRunStepSettled(wfrun_id=wid, step="t11", attempt=1, run_id=t11, status=RunStatus.SUCCEEDED, exit_code=0),
    )
    first = await step_events(api, wid, "t12", 1, RunStatus.FAILED, exit_code=3)
    await publish_event(
        js,
        s,
        WfRunStepSettled(
            wfrun_id=wid, step="t12", attempt=1, run_id=first, status=RunStatus.FAILED, exit_code=3, will_retry=True
        ),
    )
    await publish_event(
        js, s, WfRunStepRetryScheduled(wfrun_id=wid, step="t12", attempt=2, retry_at=datetime(2030, 1, 1, tzinfo=UTC))
    )

    async def retrying() -> Any:
        got = (await api.client.get(f"/api/v1/workflow-runs/{wid}")).json()
        return got if got["steps"][1]["status"] == "retrying" and got["steps"][1]["next_retry_at"] else None

    got = await eventually(retrying, what="t12 to wait for its retry")
    assert got["status"] == "running"
    t11_row, t12_row = got["steps"]
    assert (t11_row["status"], t11_row["spad_status"], t11_row["run_id"]) == ("succeeded", "success0", t11)
    assert (t12_row["spad_status"], t12_row["attempt"], t12_row["next_retry_at"]) == (
        "rerun",
        1,
        "2030-01-01T00:00:00Z",
    )
    assert t12_row["attempts"] == [
        {"attempt": 1, "run_id": first, "status": "failed", "exit_code": 3, "signal": None, "fanout_id": None}
    ]
    second = await step_events(api, wid, "t12", 2, RunStatus.FAILED, exit_code=1)
    await publish_event(
        js,
        s,
        WfRunStepSettled(
            wfrun_id=wid, step="t12", attempt=2, run_id=second, status=RunStatus.FAILED, exit_code=1, fails_run=True
        ),
    )

    held = await api.client.post(f"/api/v1/workflow-runs/{wid}/steps/t12/hold")
    assert held.status_code == 202 and held.json()["steps"][1]["held"] is True
    released = await api.client.delete(f"/api/v1/workflow-runs/{wid}/steps/t12/hold")
    assert released.status_code == 202 and released.json()["steps"][1]["held"] is False
    assert (await api.client.post(f"/api/v1/workflow-runs/{wid}/steps/nope/hold")).status_code == 404

    await publish_event(js, s, WfRunFinished(wfrun_id=wid, status=WorkflowRunStatus.FAILED, reason="t12 failed"))

    async def failed() -> Any:
        got = (await api.client.get(f"/api/v1/workflow-runs/{wid}")).json()
        return got if got["status"] == "failed" else None

    got = await eventually(failed, what="the run to read as failed")
    assert got["failed_step"] == "t12"
    step = got["steps"][1]
    assert (step["status"], step["spad_status"], step["attempt"], step["run_id"]) == ("failed", "error(1)", 2, second)
    assert [a["exit_code"] for a in step["attempts"]] == [3, 1]
    step_runs = (await api.client.get("/api/v1/runs", params={"workflow_run": wid})).json()
    assert {(r["id"], r["workflow_step"], r["attempt"]) for r in step_runs["items"]} == {
        (t11, "t11", 1),
        (first, "t12", 1),
        (second, "t12", 2),
    }
    assert (await api.client.post(f"/api/v1/workflow-runs/{wid}/steps/t12/hold")).status_code == 409

    retry = await api.client.post(f"/api/v1/workflow-runs/{wid}/retry")
    assert retry.status_code == 202, retry.text
    redo = retry.json()
    assert redo["retry_of"] == wid and redo["version"] == 1
    assert [(x["name"], x["status"], x["run_id"]) for x in redo["steps"]] == [
        ("t11", "succeeded", t11),
        ("t12", "pending", None),
    ]

    # The events, as SSE, end with wfrun.finished; resuming after it is a 204.
    async with api.client.stream("GET", f"/api/v1/workflow-runs/{wid}/events") as response:
        body = (await response.aread()).decode()
    kinds = [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "wfrun.requested" and kinds[-1] == "wfrun.finished"
    assert "wfrun.step_held" in kinds and "wfrun.step_released" in kinds
    last = [line.removeprefix("id: ") for line in body.splitlines() if line.startswith("id: ")][-1]
    resumed = await api.client.get(f"/api/v1/workflow-runs/{wid}/events", headers={"Last-Event-ID": last})
    assert resumed.status_code == 204


async def test_rebuild_reproduces_the_workflow_read_models(
    wfapi: Api, database_url: str, start_service: Callable[..., ServiceProcess], bus: Bus
) -> None:
    api = wfapi
    await import_seed(api)
    await import_seed(
        api,
        {
            "context": {
                "project": {
                    "name": "pr1",
                    "workflows": [{"name": "wf3", "tasks": [{"name": "x", "place": 1, "script": "true"}]}],
                }
            }
        },
    )
    await api.client.post(
        "/api/v1/projects/remove", json={"context": {"project": {"name": "pr1", "workflows": [{"name": "wf3"}]}}}
    )
    run = await start(api, "wf1")
    t11 = await step_events(api, run["id"], "t11", 1, RunStatus.SUCCEEDED, exit_code=0)
    await publish_event(
        api.js,
        api.subjects,
        WfRunStepSettled(
            wfrun_id=run["id"], step="t11", attempt=1, run_id=t11, status=RunStatus.SUCCEEDED, exit_code=0
        ),
    )
    await api.client.post(f"/api/v1/workflow-runs/{run['id']}/stop")
    await start(api, "wf2")

    async def settled() -> bool:
        got = (await api.client.get(f"/api/v1/workflow-runs/{run['id']}")).json()
        return bool(got["steps"][0]["status"] == "succeeded")

    await eventually(settled, what="t11 to read as succeeded")
    before = await dump_read_models(database_url)
    assert all(before[t] for t in WORKFLOW_TABLES), {t: before[t] for t in WORKFLOW_TABLES}
    api.recorder.terminate()
    rebuild = start_service("recorder", "--rebuild", "--exit-when-caught-up")
    assert await asyncio.to_thread(rebuild.wait, 60) == 0, rebuild.log()
    after = await dump_read_models(database_url)
    assert {t: after[t] for t in WORKFLOW_TABLES} == {t: before[t] for t in WORKFLOW_TABLES}


async def test_openapi_documents_the_workflow_routes(wfapi: Api) -> None:
    paths = (await wfapi.client.get("/openapi.json")).json()["paths"]
    for path, methods in {
        "/api/v1/projects": {"get"},
        "/api/v1/projects/import": {"post"},
        "/api/v1/projects/remove": {"post"},
        "/api/v1/projects/{project}": {"get"},
        "/api/v1/projects/{project}/export": {"get"},
        "/api/v1/projects/{project}/workflows": {"post"},
        "/api/v1/projects/{project}/workflows/{workflow}": {"get", "put", "delete"},
        "/api/v1/projects/{project}/workflows/{workflow}/runs": {"post"},
        "/api/v1/workflow-runs": {"get"},
        "/api/v1/workflow-runs/{wfrun_id}": {"get"},
        "/api/v1/workflow-runs/{wfrun_id}/stop": {"post"},
        "/api/v1/workflow-runs/{wfrun_id}/retry": {"post"},
        "/api/v1/workflow-runs/{wfrun_id}/events": {"get"},
        "/api/v1/workflow-runs/{wfrun_id}/steps/{step}/hold": {"post", "delete"},
    }.items():
        assert methods <= set(paths[path]), path
    assert "example" in paths["/api/v1/projects/import"]["post"]["requestBody"]["content"]["application/json"]
    assert "workflow_run" in {p["name"] for p in paths["/api/v1/runs"]["get"]["parameters"]}
