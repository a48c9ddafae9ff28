"""Strict input against the real gateway and recorder: unknown fields, wrong content types, text that
cannot be stored, numbers, dates, offsets, cursors and event ids out of range are each a 4xx that names
the field, never a 500 or a 503; a 422 echoes only an excerpt; refused input stores nothing."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx

from tests.helpers.gateway import Api

RUNS = "/api/v1/runs"
COMMANDS = "/api/v1/commands"


def fields_named(response: httpx.Response) -> list[list[Any]]:
    """The `loc` of every error of a 422 (which must be valid JSON, whatever the input was)."""
    assert response.status_code == 422, (response.status_code, response.text)
    return [error["loc"] for error in response.json()["detail"]]


async def post_raw(api: Api, path: str, body: str) -> httpx.Response:
    """POST a JSON text as is (so it may hold escapes like \\ud800 or Infinity that json= cannot send)."""
    return await api.client.post(path, content=body.encode(), headers={"content-type": "application/json"})


async def make_command(api: Api, name: str = "strict") -> dict[str, Any]:
    response = await api.client.post(COMMANDS, json={"name": name, "script": "echo hi"})
    assert response.status_code == 201, response.text
    command: dict[str, Any] = response.json()
    return command


async def test_unknown_fields_are_refused_by_name_and_store_nothing(api: Api) -> None:
    command = await make_command(api)
    before = await api.stored_messages()

    timeout_typo = await api.client.post(RUNS, json={"script": "sleep 100", "timeout": 1})
    assert fields_named(timeout_typo) == [["body", "timeout"]]
    assert timeout_typo.json()["detail"][0]["type"] == "extra_forbidden"
    script_to_command = await api.client.post(f"{COMMANDS}/{command['id']}/runs", json={"script": "rm -rf /"})
    assert fields_named(script_to_command) == [["body", "script"]]
    command_extra = await api.client.post(COMMANDS, json={"name": "x", "script": "true", "owner": "me"})
    assert fields_named(command_extra) == [["body", "owner"]]
    replace = {"name": "strict", "script": "true", "a": 1}
    replace_extra = await api.client.put(f"{COMMANDS}/{command['id']}", json=replace)
    assert fields_named(replace_extra) == [["body", "a"]]

    assert await api.stored_messages() == before
    assert (await api.client.get(RUNS)).json()["total"] == 0


async def test_a_body_that_is_not_json_is_a_415_that_says_what_to_send(api: Api) -> None:
    command = await make_command(api)
    body = json.dumps({"script": "echo hi"}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        for method, path in (
            ("POST", RUNS),
            ("POST", COMMANDS),
            ("PUT", f"{COMMANDS}/{command['id']}"),
            ("POST", f"{COMMANDS}/{command['id']}/runs"),
        ):
            response = await api.client.request(method, path, content=body, headers=headers)
            assert response.status_code == 415, (content_type, method, path, response.text)
            assert "application/json" in response.json()["detail"]
    # A body-less run of a command needs no content type at all.
    assert (await api.client.post(f"{COMMANDS}/{command['id']}/runs")).status_code == 202


LONE_SURROGATES: list[tuple[str, str, list[str | int]]] = [
    (RUNS, '{"script": "echo \\ud800"}', ["body", "script"]),
    (RUNS, '{"script": "echo", "description": "a \\udfff b"}', ["body", "description"]),
    (RUNS, '{"script": "echo", "args": ["ok", "\\ud800"]}', ["body", "args", 1]),
    (RUNS, '{"script": "echo", "env": {"A": "\\ud800"}}', ["body", "env", "A"]),
    (RUNS, '{"script": "echo", "env": {"\\ud800": "x"}}', ["body", "env"]),
    (RUNS, '{"script": "echo", "pool": "\\ud800"}', ["body", "pool"]),
    (RUNS, '{"script": "echo", "host": "\\ud800"}', ["body", "host"]),
    (RUNS, '{"command_id": "\\ud800"}', ["body", "command_id"]),
    (COMMANDS, '{"name": "\\ud800", "script": "echo"}', ["body", "name"]),
    (COMMANDS, '{"name": "n", "script": "echo", "description": "\\ud800"}', ["body", "description"]),
]


async def test_a_lone_surrogate_is_a_422_naming_the_field(api: Api) -> None:
    before = await api.stored_messages()
    for path, body, field in LONE_SURROGATES:
        response = await post_raw(api, path, body)
        named = fields_named(response)
        assert any(loc[: len(field)] == field for loc in named), (body, named)
    assert await api.stored_messages() == before


async def test_non_finite_and_absurd_numbers_are_a_422(api: Api) -> None:
    command = await make_command(api)
    for field in ("timeout_s", "stop_grace_s"):
        for value in ("Infinity", "-Infinity", "NaN", "1e308", "1e400"):
            response = await post_raw(api, RUNS, f'{{"script": "echo", "{field}": {value}}}')
            assert fields_named(response) == [["body", field]], (field, value)
            for_command = await post_raw(api, f"{COMMANDS}/{command['id']}/runs", f'{{"{field}": {value}}}')
            assert fields_named(for_command) == [["body", field]], (field, value)
            saved = await post_raw(api, COMMANDS, f'{{"name": "n", "script": "true", "{field}": {value}}}')
            assert fields_named(saved) == [["body", field]], (field, value)


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


FORGED_CURSORS = [
    cursor_of({"t": "2026-01-01T00:00:00+00:00", "id": 5}),
    cursor_of({"t": 5, "id": str(uuid.uuid4())}),
    cursor_of({"t": "2026-01-01T00:00:00+00:00", "id": ["x"]}),
    cursor_of(["not", "an", "object"]),
    cursor_of({"t": "0001-01-01T00:00:00+01:00", "id": str(uuid.uuid4())}),
    cursor_of({"t": "9999-12-31T23:59:59-23:59", "id": str(uuid.uuid4())}),
    cursor_of({"t": "0000-01-01T00:00:00+00:00", "id": str(uuid.uuid4())}),
    "!!!!",
    "e30",
    "\x00",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
]


async def test_a_forged_cursor_is_a_422_naming_it(api: Api) -> None:
    for cursor in FORGED_CURSORS:
        response = await api.client.get(RUNS, params={"cursor": cursor})
        assert fields_named(response) == [["query", "cursor"]], cursor


OUT_OF_RANGE_QUERIES = [
    (RUNS, {"offset": str(2**63)}, "offset"),
    (RUNS, {"offset": str(2**64 + 5)}, "offset"),
    (RUNS, {"offset": "-1"}, "offset"),
    (COMMANDS, {"offset": str(2**63)}, "offset"),
    (RUNS, {"created_after": "0000-01-01T00:00:00Z"}, "created_after"),
    (RUNS, {"created_after": "99999-01-01T00:00:00Z"}, "created_after"),
    (RUNS, {"created_after": "0001-01-01T00:00:00+23:59"}, "created_after"),
    (RUNS, {"created_before": "9999-12-31T23:59:59-23:59"}, "created_before"),
    (RUNS, {"created_before": "2026-01-01T00:00:00+99:00"}, "created_before"),
    (RUNS, {"pool": "a\x00b"}, "pool"),
    (RUNS, {"command_id": "a\x00b"}, "command_id"),
    (COMMANDS, {"q": "a\x00b"}, "q"),
]


async def test_out_of_range_queries_are_a_422_not_an_outage(api: Api) -> None:
    for path, params, field in OUT_OF_RANGE_QUERIES:
        response = await api.client.get(path, params=params)
        assert fields_named(response) == [["query", field]], params
    assert (await api.client.get("/readyz")).status_code == 200


async def test_out_of_range_output_offsets_and_event_ids_are_a_422(api: Api) -> None:
    run_id = str(uuid.uuid4())
    output = await api.client.get(f"{RUNS}/{run_id}/output", params={"offset": str(2**63)})
    assert fields_named(output) == [["query", "offset"]]
    for value in (str(2**64), str(2**63), "-1", "abc", "1e3"):
        header = await api.client.get(f"{RUNS}/{run_id}/events", headers={"Last-Event-ID": value})
        assert fields_named(header) == [["header", "Last-Event-ID"]], value
        query = await api.client.get(f"{RUNS}/{run_id}/events", params={"last_event_id": value})
        assert fields_named(query) == [["query", "last_event_id"]], value


async def test_a_nul_in_a_command_reference_is_not_an_outage(api: Api) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = await api.client.request(method, f"{COMMANDS}/%00", json={"name": "x", "script": "true"})
        assert response.status_code in (404, 422), (method, response.text)
    assert fields_named(await api.client.post(f"{COMMANDS}/a%00b/runs")) == [["path", "ref"]]


NUL_IN_RUNS: list[tuple[dict[str, object], list[str | int]]] = [
    ({"script": "echo", "description": "before\x00after"}, ["body", "description"]),
    ({"script": "echo", "host": "web\x00"}, ["body", "host"]),
    ({"script": "echo", "pool": "p\x00"}, ["body", "pool"]),
    ({"script": "echo", "args": ["\x00"]}, ["body", "args", 0]),
    ({"script": "echo", "env": {"A": "\x00"}}, ["body", "env", "A"]),
    ({"script": "echo", "env": {"A\x00": "x"}}, ["body", "env"]),
    ({"script": "echo \x00"}, ["body", "script"]),
    ({"command_id": "c\x00"}, ["body", "command_id"]),
]


async def test_a_nul_in_a_run_is_refused_before_anything_is_stored(api: Api) -> None:
    before = await api.stored_messages()
    for body, field in NUL_IN_RUNS:
        response = await api.client.post(RUNS, json=body)
        named = fields_named(response)
        assert any(loc[: len(field)] == field for loc in named), (body, named)
    assert await api.stored_messages() == before
    assert (await api.client.get(RUNS)).json()["total"] == 0


async def test_a_nul_in_a_command_leaves_its_name_free(api: Api) -> None:
    before = await api.stored_messages()
    refused = await api.client.post(COMMANDS, json={"name": "nightly", "script": "true", "description": "a\x00"})
    assert fields_named(refused) == [["body", "description"]]
    assert await api.stored_messages() == before
    # The name was not burnt: the same command without the NUL is saved, and found.
    saved = await api.client.post(COMMANDS, json={"name": "nightly", "script": "true", "description": "a"})
    assert saved.status_code == 201, saved.text
    assert (await api.client.get(f"{COMMANDS}/nightly")).json()["description"] == "a"
    command = saved.json()
    replaced = await api.client.put(f"{COMMANDS}/nightly", json={"name": "nightly", "script": "x\x00"})
    assert fields_named(replaced) == [["body", "script"]]
    run = await api.client.post(f"{COMMANDS}/nightly/runs", json={"description": "\x00"})
    assert fields_named(run) == [["body", "description"]]
    assert (await api.client.get(f"{COMMANDS}/nightly")).json() == command


async def test_a_422_echoes_only_an_excerpt_of_a_huge_input(api: Api) -> None:
    script = "echo " + "x" * (2 * 1024 * 1024)
    response = await api.client.post(RUNS, json={"script": script, "pool": "p" * 100_000})
    named = fields_named(response)
    assert ["body", "script"] in named and ["body", "pool"] in named
    assert len(response.content) < 4096, len(response.content)
    echoed = {tuple(error["loc"]): error["input"] for error in response.json()["detail"]}
    assert echoed[("body", "script")].startswith("echo xxx") and len(echoed[("body", "script")]) <= 201
    # A huge unknown field is named, and its value cut short too.
    extra = await api.client.post(RUNS, json={"script": "echo", "blob": ["y" * 1_000_000]})
    assert fields_named(extra) == [["body", "blob"]] and len(extra.content) < 4096
