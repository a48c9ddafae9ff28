"""Workflows driven over HTTP the way a user drives them: define, start, read back."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers.waiting import eventually

WFRUN_ENDED = {"succeeded", "failed", "stopped", "killed", "timed_out", "cancelled"}


async def put_workflow(client: httpx.AsyncClient, project: str, workflow: str, tasks: list[dict[str, Any]]) -> None:
    response = await client.put(f"/api/v1/projects/{project}/workflows/{workflow}", json={"tasks": tasks})
    assert response.status_code in (200, 201), response.text


async def start_wfrun(client: httpx.AsyncClient, project: str, workflow: str) -> dict[str, Any]:
    response = await client.post(f"/api/v1/projects/{project}/workflows/{workflow}/runs", json={})
    assert response.status_code == 202, response.text
    wfrun: dict[str, Any] = response.json()
    return wfrun


async def get_wfrun(client: httpx.AsyncClient, wfrun_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/workflow-runs/{wfrun_id}")
    assert response.status_code == 200, response.text
    wfrun: dict[str, Any] = response.json()
    return wfrun


def steps_of(wfrun: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in wfrun["steps"]}


async def wait_wfrun_ended(client: httpx.AsyncClient, wfrun_id: str, timeout: float = 120) -> dict[str, Any]:
    async def ended() -> dict[str, Any]:
        wfrun = await get_wfrun(client, wfrun_id)
        assert wfrun["status"] in WFRUN_ENDED, wfrun["status"]
        return wfrun

    found: dict[str, Any] = await eventually(ended, timeout, interval=0.2, what=f"workflow run {wfrun_id} ended")
    return found
