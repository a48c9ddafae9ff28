"""A run's `env` cannot change how bash or the loader start: each way an `env` enters the API (runs,
saved commands, runs of them, workflow definitions) answers 422 naming the field and the variable, and
stores nothing. `PATH` is an admin's: in a saved command or a definition, or in an admin's run, it is
taken and reaches the script."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import nats.js.errors
import pytest

from tests.helpers.api import wait_for_status
from tests.helpers.executor import start_executor
from tests.helpers.gateway import Api
from tests.helpers.processes import StartService

RUNS = "/api/v1/runs"
COMMANDS = "/api/v1/commands"
PROJECTS = "/api/v1/projects"
# Each enough on its own to run code the script does not contain.
INJECTIONS = [
    {"BASH_ENV": "/tmp/inject.sh"},
    {"LD_PRELOAD": "/tmp/evil.so"},
    {"BASH_FUNC_echo%%": "() { id; }"},
]
TOOLS_PATH = "/opt/scriptbus-test/bin:/usr/bin:/bin"


@pytest.fixture(name="envapi")
async def envapi_fixture(api: Api) -> AsyncIterator[Api]:
    yield api
    for bucket in (api.subjects.wfactive_bucket, api.subjects.wfdefs_bucket):
        try:
            await api.js.delete_stream(f"KV_{bucket}")
        except nats.js.errors.NotFoundError:
            pass


def task(env: dict[str, str]) -> dict[str, Any]:
    return {"name": "t1", "place": 1, "script": "echo hi", "env": env}


def entry_points(command_id: str, env: dict[str, str]) -> list[tuple[str, str, dict[str, Any], list[Any]]]:
    """(method, path, body, where the env is in the body) for every request that takes an `env`."""
    seed = {"context": {"project": {"name": "pr9", "workflows": [{"name": "wf9", "tasks": [task(env)]}]}}}
    return [
        ("POST", RUNS, {"script": "echo hi", "env": env}, ["body", "env"]),
        ("POST", RUNS, {"command_id": command_id, "env": env}, ["body", "env"]),
        ("POST", COMMANDS, {"name": "other", "script": "echo hi", "env": env}, ["body", "env"]),
        ("PUT", f"{COMMANDS}/{command_id}", {"name": "greet", "script": "echo hi", "env": env}, ["body", "env"]),
        ("POST", f"{COMMANDS}/{command_id}/runs", {"env": env}, ["body", "env"]),
        (
            "POST",
            f"{PROJECTS}/import",
            seed,
            ["body", "context", "project", "workflows", 0, "tasks", 0, "env"],
        ),
        ("PUT", f"{PROJECTS}/pr9/workflows/wf9", {"tasks": [task(env)]}, ["body", "tasks", 0, "env"]),
        ("POST", f"{PROJECTS}/pr9/workflows", {"name": "wf9", "tasks": [task(env)]}, ["body", "tasks", 0, "env"]),
    ]


async def test_env_that_changes_how_bash_or_the_loader_start_is_a_422_everywhere(envapi: Api) -> None:
    api = envapi
    made = await api.client.post(COMMANDS, json={"name": "greet", "script": "echo hi", "env": {"A": "1"}})
    assert made.status_code == 201, made.text
    command = made.json()
    before = await api.stored_messages()

    for env in INJECTIONS:
        (name,) = env
        for method, path, body, loc in entry_points(command["id"], env):
            response = await api.client.request(
                method, path, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, (method, path, name, response.status_code, response.text)
            (error,) = response.json()["detail"]
            assert error["loc"][: len(loc)] == loc, (method, path, error)
            assert name in error["msg"], (method, path, error)

    assert await api.stored_messages() == before
    assert (await api.client.get(RUNS)).json()["total"] == 0
    assert (await api.client.get(f"{COMMANDS}/greet")).json() == command
    assert (await api.client.get(f"{PROJECTS}/pr9")).status_code == 404


async def test_path_set_by_an_admin_reaches_the_script(envapi: Api, start_service: StartService) -> None:
    """The loopback caller without tokens is an admin; a `run` token is refused (tests/unit/test_run_env.py)."""
    api = envapi
    await start_executor(start_service)
    made = await api.client.post(
        COMMANDS, json={"name": "tools", "script": 'echo "$PATH"', "env": {"PATH": TOOLS_PATH}}
    )
    assert made.status_code == 201, made.text

    from_command = (await api.client.post(f"{COMMANDS}/tools/runs", json={})).json()
    own = "/opt/other/bin:/usr/bin:/bin"
    from_run = await api.client.post(RUNS, json={"script": 'echo "$PATH"', "env": {"PATH": own}})
    assert from_run.status_code == 202, from_run.text

    done = await wait_for_status(api.client, from_command["id"], "succeeded")
    assert done["output"] == TOOLS_PATH + "\n"
    done = await wait_for_status(api.client, from_run.json()["id"], "succeeded")
    assert done["output"] == own + "\n"

    # A workflow definition is an admin's too.
    seed = {"context": {"project": {"name": "pr9", "workflows": [{"name": "wf9", "tasks": [task({"PATH": own})]}]}}}
    imported = await api.client.post(f"{PROJECTS}/import", json=seed)
    assert imported.status_code in (200, 201), imported.text
