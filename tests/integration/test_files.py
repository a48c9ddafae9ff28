"""Files and artifacts on the real stack: a file put through the API placed in a run's folder, what the run
leaves behind brought back byte-exact, bad names and sizes refused without leaving anything behind, and
a symlink out of the run folder never followed."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import nats.js.errors
import pytest

from scriptbus.embedded import free_port
from scriptbus.events import decode_event
from scriptbus.events.files import FileStored, artifact_object, file_key, object_info
from tests.helpers.api import wait_for_status, wait_until_ready
from tests.helpers.executor import start_executor
from tests.helpers.gateway import Api
from tests.helpers.processes import StartService
from tests.helpers.tokens import bearer, make_token

FILES = "/api/v1/files"
RUNS = "/api/v1/runs"
MB = 1024 * 1024
BLOCK = 64 * 1024


@pytest.fixture(name="fapi")
async def fapi_fixture(api: Api) -> AsyncIterator[Api]:
    yield api
    for bucket in (api.subjects.files_bucket, api.subjects.artifacts_bucket):
        try:
            await api.js.delete_stream(f"OBJ_{bucket}")
        except nats.js.errors.NotFoundError:
            pass


class Generated:
    """`size` bytes made block by block (never all in memory), hashed as they are sent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sha256 = hashlib.sha256()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seed = hashlib.sha256(b"scriptbus").digest()
        sent = 0
        while sent < self.size:
            seed = hashlib.sha256(seed).digest()
            block = (seed * (BLOCK // len(seed)))[: self.size - sent]
            self.sha256.update(block)
            sent += len(block)
            yield block


async def streamed_sha256(client: httpx.AsyncClient, path: str) -> tuple[str, int, httpx.Headers]:
    h = hashlib.sha256()
    size = 0
    async with client.stream("GET", path) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_bytes():
            h.update(chunk)
            size += len(chunk)
        return h.hexdigest(), size, response.headers


async def test_a_100_mb_file_reaches_a_run_and_its_artifact_comes_back_byte_exact(
    fapi: Api, start_service: StartService
) -> None:
    api = fapi
    await start_executor(start_service)
    big = Generated(100 * MB)
    put = await api.client.put(f"{FILES}/data/big.bin", content=big.__aiter__())
    assert put.status_code == 200, put.text
    stored = put.json()
    assert stored["size"] == 100 * MB and stored["sha256"] == big.sha256.hexdigest()
    assert stored["stored_by"] == "local" and stored["executable"] is False
    tool = await api.client.put(f"{FILES}/tool.sh", params={"executable": "true"}, content=b"echo tool ran\n")
    assert tool.status_code == 200, tool.text

    listed = (await api.client.get(FILES)).json()["files"]
    assert [(f["name"], f["size"]) for f in listed] == [("data/big.bin", 100 * MB), ("tool.sh", 14)]

    script = (
        "./tool.sh && stat -c %a tool.sh data/big.bin && sha256sum data/big.bin > sum.txt"
        " && mkdir -p out/deep && cp data/big.bin out/deep/copy.bin"
        " && ln -s /etc/hostname escape.txt && ln -s /etc out/etc && echo note > out/note.log"
    )
    made = await api.client.post(
        RUNS, json={"script": script, "files": ["tool.sh", "data/big.bin"], "artifacts": ["*.txt", "out/**"]}
    )
    assert made.status_code == 202, made.text
    run = await wait_for_status(api.client, made.json()["id"], "succeeded", timeout=120)
    assert run["output"] == "tool ran\n755\n644\n"

    listing = await api.client.get(f"{RUNS}/{run['id']}/artifacts")
    assert listing.status_code == 200, listing.text
    artifacts = {a["path"]: a for a in listing.json()["artifacts"]}
    # Neither the symlinked file nor anything below the symlinked folder: only the run's own files.
    assert sorted(artifacts) == ["out/deep/copy.bin", "out/note.log", "sum.txt"]
    assert artifacts["out/deep/copy.bin"]["size"] == 100 * MB
    assert artifacts["out/deep/copy.bin"]["sha256"] == big.sha256.hexdigest()

    sha, size, headers = await streamed_sha256(api.client, f"{RUNS}/{run['id']}/artifacts/out/deep/copy.bin")
    assert (sha, size) == (big.sha256.hexdigest(), 100 * MB)
    assert headers["etag"] == f'"{sha}"' and headers["x-content-sha256"] == sha
    summed = await api.client.get(f"{RUNS}/{run['id']}/artifacts/sum.txt")
    assert summed.content == f"{big.sha256.hexdigest()}  data/big.bin\n".encode()
    assert (await api.client.get(f"{RUNS}/{run['id']}/artifacts/escape.txt")).status_code == 404

    # Deleting the run deletes its artifacts from the store.
    assert (await api.client.delete(f"{RUNS}/{run['id']}")).status_code == 204
    gone = await object_info(api.js, api.subjects.artifacts_bucket, artifact_object(run["id"], "out/deep/copy.bin"))
    assert gone is None
    assert (await api.client.get(f"{RUNS}/{run['id']}/artifacts")).status_code == 404

    sha, size, _ = await streamed_sha256(api.client, f"{FILES}/data/big.bin")
    assert (sha, size) == (big.sha256.hexdigest(), 100 * MB)
    assert (await api.client.delete(f"{FILES}/data/big.bin")).status_code == 204
    assert (await api.client.get(f"{FILES}/data/big.bin")).status_code == 404


async def test_a_vanished_file_fails_the_run_and_artifacts_over_the_limit_are_said(
    fapi: Api, start_service: StartService
) -> None:
    api = fapi
    assert (await api.client.put(f"{FILES}/tool.sh", content=b"echo hi\n")).status_code == 200
    made = await api.client.post(RUNS, json={"script": "cat tool.sh", "files": ["tool.sh"], "pool": "later"})
    assert made.status_code == 202, made.text
    assert (await api.client.delete(f"{FILES}/tool.sh")).status_code == 204
    await start_executor(start_service, "--pool", "later", env={"SCRIPTBUS_ARTIFACTS_MAX_BYTES": "1000"})
    run = await wait_for_status(api.client, made.json()["id"], "failed")
    assert "file 'tool.sh' is not in the files store" in run["reason"]

    script = "head -c 600 /dev/zero > a.out; head -c 600 /dev/zero > b.out"
    made = await api.client.post(RUNS, json={"script": script, "artifacts": ["*.out"], "pool": "later"})
    run = await wait_for_status(api.client, made.json()["id"], "succeeded")
    assert "b.out (600 bytes) and later files left out: over the limit of 1000 bytes" in run["reason"]
    kept = (await api.client.get(f"{RUNS}/{run['id']}/artifacts")).json()["artifacts"]
    assert [a["path"] for a in kept] == ["a.out"]


async def test_bad_names_missing_files_and_oversized_bodies_are_refused_and_leave_nothing(
    fapi: Api, start_service: StartService
) -> None:
    api = fapi
    # As sent on the wire (an HTTP client would resolve a literal `..`); the gateway sees them decoded.
    for bad in ("%2E%2E/etc/passwd", "a/%2E%2E/b", "a%2F..%2Fb", "a//b", "%2E/a", "a/", "x" * 600, "a%01b", "a%00b"):
        response = await api.client.put(f"{FILES}/{bad}", content=b"x")
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"][0]["loc"] == ["path", "name"], response.text
    for field, value in (("files", ["../x"]), ("artifacts", ["/etc/*"]), ("artifacts", ["a**"]), ("files", ["nope"])):
        response = await api.client.post(RUNS, json={"script": "true", field: value})
        assert response.status_code == 422, (field, value, response.text)
        assert response.json()["detail"][0]["loc"][:2] == ["body", field], response.text
    assert (await api.client.get(RUNS)).json()["total"] == 0

    port = free_port()
    start_service("gateway", "--port", str(port), env={"SCRIPTBUS_FILES_MAX_BYTES": "1000"})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as small:
        await wait_until_ready(small)
        declared = await small.put(f"{FILES}/big", content=b"x" * 1001)
        assert declared.status_code == 413 and "SCRIPTBUS_FILES_MAX_BYTES" in declared.text

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 500

        streamed = await small.put(f"{FILES}/big", content=chunks())
        assert streamed.status_code == 413, streamed.text
    info = await api.js.stream_info(f"OBJ_{api.subjects.files_bucket}")
    assert info.state.messages == 0  # not even the chunks before the limit
    assert (await api.client.get(FILES)).json() == {"files": []}

    # A read token may fetch and list, never put or delete.
    admin = await make_token(api.client, "admin", "ops")
    reader = await make_token(api.client, "read", "viewer", as_token=admin["token"])
    refused = await api.client.put(f"{FILES}/tool.sh", content=b"x", headers=bearer(reader["token"]))
    assert refused.status_code == 403 and "admin" in refused.text
    assert (await api.client.get(FILES, headers=bearer(reader["token"]))).status_code == 200


async def test_a_saved_command_gives_its_files_and_artifacts_to_every_run(
    fapi: Api, start_service: StartService
) -> None:
    api = fapi
    await start_executor(start_service)
    command = {"name": "deploy", "script": "./tool.sh > out.txt", "files": ["tool.sh"], "artifacts": ["*.txt"]}
    missing = await api.client.post("/api/v1/commands", json=command)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "files"], missing.text
    put = await api.client.put(f"{FILES}/tool.sh", params={"executable": "true"}, content=b"echo deployed\n")
    assert put.status_code == 200, put.text
    # Who stored what is in the events stream (the audit log).
    audit = await api.js.get_last_msg(
        api.subjects.events_stream, api.subjects.file_event(file_key("tool.sh"), "stored")
    )
    stored = decode_event(audit.data or b"")
    assert isinstance(stored, FileStored)
    assert (stored.name, stored.stored_by, stored.sha256) == ("tool.sh", "local", put.json()["sha256"])
    made = await api.client.post("/api/v1/commands", json=command)
    assert made.status_code == 201, made.text
    assert made.json()["files"] == ["tool.sh"] and made.json()["artifacts"] == ["*.txt"]

    started = await api.client.post("/api/v1/commands/deploy/runs", json={})
    assert started.status_code == 202, started.text
    run = await wait_for_status(api.client, started.json()["id"], "succeeded")
    (artifact,) = (await api.client.get(f"{RUNS}/{run['id']}/artifacts")).json()["artifacts"]
    assert artifact["path"] == "out.txt"
    assert (await api.client.get(f"{RUNS}/{run['id']}/artifacts/out.txt")).content == b"deployed\n"
