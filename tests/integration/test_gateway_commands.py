"""Saved commands through the gateway, with the real recorder (and an executor where a run must run):
create, read back at once by id or name, unique names, full replace with rename, delete; runs started
from a command get its script, their own args and env on top of the command's, and keep their copy
when the command changes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from scriptbus.embedded import free_port
from scriptbus.events import command_names_bucket
from tests.helpers.api import wait_for_status, wait_until_ready
from tests.helpers.gateway import Api
from tests.helpers.processes import ServiceProcess
from tests.helpers.servers import Bus


async def create_command(api: Api, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/api/v1/commands", json={"script": "echo hi", **fields})
    assert response.status_code == 201, response.text
    command: dict[str, Any] = response.json()
    return command


async def test_create_read_back_by_id_and_name_list_and_search(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/commands",
        json={
            "name": "backup",
            "description": "Nightly BACKUP of /srv",
            "script": 'rsync -a "$1" /backups/',
            "env": {"RSYNC_RSH": "ssh"},
            "timeout_s": 3600,
            "stop_grace_s": 2,
            "pool": "storage",
        },
    )
    assert response.status_code == 201, response.text
    command = response.json()
    assert response.headers["location"] == f"/api/v1/commands/{command['id']}"
    assert {k: command[k] for k in ("name", "description", "script", "env", "timeout_s", "stop_grace_s")} == {
        "name": "backup",
        "description": "Nightly BACKUP of /srv",
        "script": 'rsync -a "$1" /backups/',
        "env": {"RSYNC_RSH": "ssh"},
        "timeout_s": 3600,
        "stop_grace_s": 2,
    }
    assert command["pool"] == "storage" and command["version"] == 1
    assert command["created_at"] == command["updated_at"]
    # Read your writes, by id and by name.
    assert (await api.client.get(response.headers["location"])).json() == command
    assert (await api.client.get("/api/v1/commands/backup")).json() == command

    for name in ["zeta", "alpha", "m.i_d-dle"]:
        await create_command(api, name=name, description=f"the {name} one")
    await create_command(api, name="sale_50", description="the 100% off one")
    listed = (await api.client.get("/api/v1/commands")).json()
    assert [c["name"] for c in listed["items"]] == ["alpha", "backup", "m.i_d-dle", "sale_50", "zeta"]
    assert listed["total"] == 5
    page = (await api.client.get("/api/v1/commands", params={"limit": 2, "offset": 2})).json()
    assert [c["name"] for c in page["items"]] == ["m.i_d-dle", "sale_50"] and page["total"] == 5
    # q: a case-insensitive substring of the name or the description; % and _ match themselves.
    for q, names in [
        ("backup", ["backup"]),
        ("NIGHTLY", ["backup"]),
        ("ALPHA ONE", ["alpha"]),
        ("%", ["sale_50"]),
        ("_", ["m.i_d-dle", "sale_50"]),
        ("the", ["alpha", "m.i_d-dle", "sale_50", "zeta"]),
        ("nothing like it", []),
    ]:
        found = (await api.client.get("/api/v1/commands", params={"q": q})).json()
        assert [c["name"] for c in found["items"]] == names, q
        assert found["total"] == len(names)


async def test_names_are_unique_even_when_created_at_once(api: Api) -> None:
    first = await create_command(api, name="deploy")
    taken = await api.client.post("/api/v1/commands", json={"name": "deploy", "script": "true"})
    assert taken.status_code == 409
    assert taken.json() == {"detail": "command name 'deploy' is taken"}

    responses = await asyncio.gather(
        *[api.client.post("/api/v1/commands", json={"name": "race", "script": f"echo {i}"}) for i in range(10)]
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert (await api.client.get("/api/v1/commands/race")).json() == winner
    # Names a KV key could not hold as they are (dots at the end, two in a row) are unique all the same.
    for odd in ["v1.", "a..b"]:
        made = await create_command(api, name=odd)
        again = await api.client.post("/api/v1/commands", json={"name": odd, "script": "true"})
        assert again.status_code == 409, again.text
        assert (await api.client.get(f"/api/v1/commands/{odd}")).json() == made
        assert (await api.client.delete(f"/api/v1/commands/{made['id']}")).status_code == 204
        await create_command(api, name=odd)
    listed = (await api.client.get("/api/v1/commands")).json()
    assert sorted(c["name"] for c in listed["items"]) == ["a..b", "deploy", "race", "v1."]
    assert (await api.client.get("/api/v1/commands/deploy")).json() == first


async def test_put_replaces_everything_renames_and_delete_frees_the_name(api: Api) -> None:
    original = await create_command(
        api, name="build", description="d", env={"A": "1"}, timeout_s=10, stop_grace_s=1, pool="p1"
    )
    other = await create_command(api, name="other")

    # A full replace: what the body leaves out takes its default, not its old value.
    replaced = await api.client.put("/api/v1/commands/build", json={"name": "build", "script": "make all"})
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert body["id"] == original["id"] and body["version"] == 2
    assert (body["script"], body["description"], body["env"], body["timeout_s"]) == ("make all", "", {}, None)
    assert (body["stop_grace_s"], body["pool"]) == (5, "default")
    assert body["created_at"] == original["created_at"] and body["updated_at"] > original["updated_at"]
    assert (await api.client.get(f"/api/v1/commands/{original['id']}")).json() == body

    # Renaming onto a taken name changes nothing.
    clash = await api.client.put(f"/api/v1/commands/{original['id']}", json={"name": "other", "script": "x"})
    assert clash.status_code == 409 and clash.json() == {"detail": "command name 'other' is taken"}
    assert (await api.client.get("/api/v1/commands/build")).json() == body

    renamed = await api.client.put(f"/api/v1/commands/{original['id']}", json={"name": "build2", "script": "make"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "build2" and renamed.json()["version"] == 3
    gone = await api.client.get("/api/v1/commands/build")
    assert gone.status_code == 404 and gone.json() == {"detail": "command 'build' not found"}
    assert (await api.client.get("/api/v1/commands/build2")).json() == renamed.json()
    # The old name is free at once.
    reused = await create_command(api, name="build")
    assert reused["id"] != original["id"]

    assert (await api.client.delete("/api/v1/commands/build2")).status_code == 204
    assert (await api.client.get(f"/api/v1/commands/{original['id']}")).status_code == 404
    assert (await api.client.delete("/api/v1/commands/build2")).status_code == 404
    again = await create_command(api, name="build2")
    assert again["id"] != original["id"] and again["version"] == 1
    names = [c["name"] for c in (await api.client.get("/api/v1/commands")).json()["items"]]
    assert names == ["build", "build2", "other"]
    assert (await api.client.get(f"/api/v1/commands/{other['id']}")).json() == other


async def test_bad_commands_are_refused_naming_the_field_and_publish_nothing(api: Api) -> None:
    await create_command(api, name="exists")
    before = await api.stored_messages()
    for body, field in [
        ({"script": "true"}, "name"),
        ({"name": "", "script": "true"}, "name"),
        ({"name": ".hidden", "script": "true"}, "name"),
        ({"name": "has space", "script": "true"}, "name"),
        ({"name": "slash/", "script": "true"}, "name"),
        ({"name": "x" * 129, "script": "true"}, "name"),
        ({"name": "ok"}, "script"),
        ({"name": "ok", "script": " "}, "script"),
        ({"name": "ok", "script": "true", "env": {"1X": "y"}}, "env"),
        ({"name": "ok", "script": "true", "timeout_s": 0}, "timeout_s"),
        ({"name": "ok", "script": "true", "stop_grace_s": -1}, "stop_grace_s"),
        ({"name": "ok", "script": "true", "pool": "a.b"}, "pool"),
    ]:
        for method, path in [("POST", "/api/v1/commands"), ("PUT", "/api/v1/commands/exists")]:
            response = await api.client.request(method, path, json=body)
            assert response.status_code == 422, f"{method} {body}: {response.text}"
            assert ["body", field] in [e["loc"][:2] for e in response.json()["detail"]], response.text
    for method, path, body in [
        ("GET", "/api/v1/commands/nope", None),
        ("PUT", "/api/v1/commands/nope", {"name": "nope", "script": "true"}),
        ("DELETE", "/api/v1/commands/nope", None),
        ("POST", "/api/v1/commands/nope/runs", {}),
        ("POST", "/api/v1/runs", {"command_id": "nope"}),
    ]:
        response = await api.client.request(method, path, json=body)
        assert response.status_code == 404, f"{method} {path}: {response.text}"
        assert response.json() == {"detail": "command 'nope' not found"}
    # Exactly one of script and command_id.
    neither = await api.client.post("/api/v1/runs", json={"args": ["a"]})
    assert neither.status_code == 422 and neither.json()["detail"][0]["loc"] == ["body", "script"]
    both = await api.client.post("/api/v1/runs", json={"script": "true", "command_id": "exists"})
    assert both.status_code == 422 and both.json()["detail"][0]["loc"] == ["body", "command_id"]
    assert await api.stored_messages() == before
    assert "Traceback" not in api.gateway.log()


async def test_runs_from_a_command_get_its_script_their_args_and_env_over_its_env(
    api: Api, start_service: Callable[..., ServiceProcess]
) -> None:
    executor = start_service("executor", "--host", "cmd-host")
    command = await create_command(
        api,
        name="greet",
        description="greets",
        script='printf "<%s>\\n" "$@"; echo "A=$A B=$B"',
        env={"A": "from-command", "B": "from-command"},
        timeout_s=60,
        stop_grace_s=2,
    )
    args = ["two words", 'it\'s "quoted"', "", "$HOME `id`", "ünï"]

    response = await api.client.post("/api/v1/commands/greet/runs", json={"args": args, "env": {"B": "from-run"}})
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["location"] == f"/api/v1/runs/{run['id']}"
    assert (run["command_id"], run["args"], run["script"]) == (command["id"], args, command["script"])
    assert run["env"] == {"A": "from-command", "B": "from-run"}
    # What the request leaves out comes from the command.
    assert (run["description"], run["timeout_s"], run["stop_grace_s"], run["pool"]) == (
        "greets",
        60,
        2,
        "default",
    )
    expected = '<two words>\n<it\'s "quoted">\n<>\n<$HOME `id`>\n<ünï>\nA=from-command B=from-run\n'
    done = await wait_for_status(api.client, run["id"], "succeeded")
    assert done["output"] == expected, executor.log()[-2000:]

    # The same through POST /runs, by id, with overrides.
    by_id = await api.client.post(
        "/api/v1/runs",
        json={"command_id": command["id"], "args": ["x"], "description": "mine", "timeout_s": None},
    )
    assert by_id.status_code == 202, by_id.text
    assert (by_id.json()["command_id"], by_id.json()["description"], by_id.json()["timeout_s"]) == (
        command["id"],
        "mine",
        None,
    )
    assert (await wait_for_status(api.client, by_id.json()["id"], "succeeded"))["output"] == (
        "<x>\nA=from-command B=from-command\n"
    )
    # No body at all: the command as it is.
    bare = await api.client.post("/api/v1/commands/greet/runs")
    assert bare.status_code == 202, bare.text
    assert (await wait_for_status(api.client, bare.json()["id"], "succeeded"))["output"] == (
        "<>\nA=from-command B=from-command\n"
    )

    # Editing the command later changes new runs, never past ones.
    edited = await api.client.put("/api/v1/commands/greet", json={"name": "greet", "script": "echo edited", "env": {}})
    assert edited.status_code == 200
    past = (await api.client.get(f"/api/v1/runs/{run['id']}")).json()
    assert past["script"] == command["script"] and past["output"] == expected
    fresh = (await api.client.post("/api/v1/commands/greet/runs", json={})).json()
    assert fresh["script"] == "echo edited"
    assert (await wait_for_status(api.client, fresh["id"], "succeeded"))["output"] == "edited\n"

    # Deleting it leaves past runs whole.
    assert (await api.client.delete("/api/v1/commands/greet")).status_code == 204
    past = (await api.client.get(f"/api/v1/runs/{run['id']}")).json()
    assert past["script"] == command["script"] and past["command_id"] == command["id"]
    assert past["output"] == expected
    assert (await api.client.post("/api/v1/commands/greet/runs", json={})).status_code == 404


async def test_openapi_documents_the_new_endpoints(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, methods in {
        "/api/v1/commands": {"get", "post"},
        "/api/v1/commands/{ref}": {"get", "put", "delete"},
        "/api/v1/commands/{ref}/runs": {"post"},
        "/api/v1/runs": {"get", "post"},
        "/api/v1/runs/{run_id}/events": {"get"},
        "/api/v1/executors": {"get"},
        "/metrics": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    post_commands = paths["/api/v1/commands"]["post"]
    assert {"201", "409", "422", "503"} <= set(post_commands["responses"])
    assert "Idempotency-Key" in [p["name"] for p in post_commands["parameters"]]
    assert {"404", "409"} <= set(paths["/api/v1/commands/{ref}"]["put"]["responses"])
    assert "text/event-stream" in paths["/api/v1/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    list_params = {p["name"] for p in paths["/api/v1/runs"]["get"]["parameters"]}
    assert {"command_id", "host", "pool", "created_after", "created_before", "cursor"} <= list_params
    schemas = spec["components"]["schemas"]
    assert {"Command", "CommandCreate", "CommandList", "CommandRunCreate", "ExecutorList"} <= set(schemas)
    assert {"command_id", "args", "reason"} <= set(schemas["RunSummary"]["properties"])
    assert "next_cursor" in schemas["RunList"]["properties"]


async def test_a_name_left_reserved_by_a_crash_is_taken_over_once_stale(
    start_service: Callable[..., ServiceProcess], bus: Bus
) -> None:
    _nc, js, subjects = bus
    start_service("recorder")
    port = free_port()
    start_service("gateway", "--port", str(port), env={"SCRIPTBUS_STALE_NAME_RESERVATION_S": "2"})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        await wait_until_ready(client)
        # What a gateway that died between reserving the name and publishing the command leaves behind.
        names = await command_names_bucket(js, subjects)
        await names.create("ghost", str(uuid.uuid4()).encode())
        fresh = await client.post("/api/v1/commands", json={"name": "ghost", "script": "true"})
        assert fresh.status_code == 409, "a fresh reservation may belong to a create still under way"
        real = await client.post("/api/v1/commands", json={"name": "real", "script": "true"})
        assert real.status_code == 201
        await asyncio.sleep(2.5)
        taken_over = await client.post("/api/v1/commands", json={"name": "ghost", "script": "true"})
        assert taken_over.status_code == 201, taken_over.text
        assert (await names.get("ghost")).value == taken_over.json()["id"].encode()
        # A name a command really uses is never taken over, however old.
        again = await client.post("/api/v1/commands", json={"name": "real", "script": "true"})
        assert again.status_code == 409
        renamed = await client.put("/api/v1/commands/real", json={"name": "real2", "script": "true"})
        assert renamed.status_code == 200
        await asyncio.sleep(2.5)
        assert (await client.post("/api/v1/commands", json={"name": "real2", "script": "x"})).status_code == 409
        assert (await client.post("/api/v1/commands", json={"name": "real", "script": "x"})).status_code == 201
        for bucket in (subjects.command_names_bucket, subjects.idempotency_bucket):
            await js.delete_stream(f"KV_{bucket}")
