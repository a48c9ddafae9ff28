"""`scriptbus up` as an unprivileged local user or a stolen credential sees it: NATS and PostgreSQL refuse
who has no credential, each NATS user does only its role's work, and each service sees only its own
environment; for the rightful user everything (runs, output, stop, saved commands, workflows) still works."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import asyncpg
import httpx
import nats
import nats.errors
import nkeys
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from scriptbus.embedded import EmbeddedNats, EmbeddedPostgres, free_port, postgres_bin_dir
from scriptbus.events import Subjects
from scriptbus.events.codec import encode_event, event_headers
from scriptbus.events.nats_users import inbox_prefix
from scriptbus.events.runs import RunRequested
from tests.helpers.api import start_run, wait_for_status
from tests.helpers.processes import ServiceProcess, kill_processes_under
from tests.helpers.up import environ_of, service_under, up
from tests.helpers.waiting import eventually
from tests.helpers.wfapi import put_workflow, start_wfrun, wait_wfrun_ended

TOKEN = "e2e-" + uuid.uuid4().hex
MARKER = "UP_ENV_MARKER_" + uuid.uuid4().hex
s = Subjects("scriptbus")


@dataclass
class Up:
    process: ServiceProcess
    data_dir: Path
    api: str
    nats_url: str
    database_url: str

    @property
    def credentials(self) -> Path:
        return self.data_dir / "credentials"

    def seed(self, role: str) -> Path:
        if role == "executor":
            return next(self.credentials.glob("nats-executor-*.nk"))
        return self.credentials / f"nats-{role}.nk"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def secured() -> Iterator[Up]:
    base = Path(tempfile.mkdtemp(prefix="scriptbus-up-"))
    data_dir = base / "data"
    port = free_port()
    process = up(data_dir, port, base / "up.log", {"SCRIPTBUS_API_TOKENS": TOKEN, MARKER: "x"})
    try:
        log = process.wait_for_log(r"scriptbus is up(?s:.*)Ctrl-C", timeout=120).group(0)
        nats_url = re.search(r"NATS\s+(nats://\S+)", log)
        database_url = re.search(r"PostgreSQL\s+(postgresql://\S+)", log)
        assert nats_url and database_url, log
        yield Up(process, data_dir, f"http://127.0.0.1:{port}", nats_url.group(1), database_url.group(1))
    finally:
        process.close(grace=60)
        kill_processes_under(data_dir / "runs")
        shutil.rmtree(base, ignore_errors=True)


class Connect(Protocol):
    """The `as_role` fixture: `await as_role("executor")` -> (a connection with that role's seed, the
    asynchronous errors the server sent it)."""

    async def __call__(self, role: str) -> tuple[Client, list[str]]: ...


@pytest.fixture
async def as_role(secured: Up) -> AsyncIterator[Connect]:
    connections: list[Client] = []

    async def connect(role: str) -> tuple[Client, list[str]]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        seed = secured.seed(role)
        public = nkeys.from_seed(bytearray(seed.read_bytes().strip())).public_key.decode()
        nc = await nats.connect(
            secured.nats_url,
            nkeys_seed=str(seed),
            inbox_prefix=inbox_prefix(public),
            error_cb=on_error,
            allow_reconnect=False,
        )
        connections.append(nc)
        return nc, errors

    yield connect
    for nc in connections:
        await nc.close()


def run_request(run_id: str) -> RunRequested:
    return RunRequested(run_id=run_id, script="id > /tmp/pwned-" + run_id)


async def not_found(client: httpx.AsyncClient, run_id: str) -> None:
    assert (await client.get(f"/api/v1/runs/{run_id}")).status_code == 404


async def test_runs_output_stop_commands_and_workflows_work_under_secured_up(secured: Up) -> None:
    async with secured.client() as client:
        run = await start_run(client, "echo hello secured")
        assert (await wait_for_status(client, run["id"], "succeeded"))["output"] == "hello secured\n"

        long = await start_run(client, "sleep 300")
        await wait_for_status(client, long["id"], "running")
        assert (await client.post(f"/api/v1/runs/{long['id']}/stop")).status_code in (200, 202)
        await wait_for_status(client, long["id"], {"stopped", "terminated", "killed"})

        made = await client.post("/api/v1/commands", json={"name": "greet", "script": 'echo "hi $1"'})
        assert made.status_code == 201, made.text
        started = await client.post(f"/api/v1/commands/{made.json()['id']}/runs", json={"args": ["there"]})
        assert started.status_code == 202, started.text
        assert (await wait_for_status(client, started.json()["id"], "succeeded"))["output"] == "hi there\n"

        await put_workflow(client, "p1", "w1", [{"name": "a", "place": 1, "exec": "await", "script": "echo a"}])
        wfrun = await start_wfrun(client, "p1", "w1")
        assert (await wait_wfrun_ended(client, wfrun["id"]))["status"] == "succeeded"


async def test_an_unauthenticated_client_cannot_request_a_run(secured: Up) -> None:
    run_id = str(uuid.uuid4())
    event = run_request(run_id)
    host, port = secured.nats_url.removeprefix("nats://").split(":")
    payload = encode_event(event)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(
            b"CONNECT {}\r\n" + f"PUB {s.run_requested(run_id, 'default')} {len(payload)}\r\n".encode() + payload
            + b"\r\nPING\r\n"
        )  # fmt: skip
        answer = sock.recv(4096).decode()
    assert "Authorization Violation" in answer
    async with secured.client() as client:
        # A request that got through would be projected (and run) within this time.
        await asyncio.sleep(2)
        await not_found(client, run_id)
    assert not Path(f"/tmp/pwned-{run_id}").exists()


async def test_the_executor_credential_cannot_request_runs_nor_change_streams(secured: Up, as_role: Connect) -> None:
    nc, errors = await as_role("executor")
    run_id = str(uuid.uuid4())
    event = run_request(run_id)
    await nc.publish(s.run_requested(run_id, "default"), encode_event(event), headers=event_headers(event))
    await nc.publish(s.command_event(str(uuid.uuid4()), "created"), b"{}")
    await nc.flush()
    js = nc.jetstream(timeout=3)
    with pytest.raises(nats.errors.TimeoutError):  # the request never reaches JetStream
        await js.purge_stream(s.events_stream)
    with pytest.raises(nats.errors.TimeoutError):
        await js.delete_stream(s.events_stream)

    def refused() -> bool:
        text = " ".join(errors).lower()
        return all(
            f'permissions violation for publish to "{subject}"'.lower() in text
            for subject in (s.run_requested(run_id, "default"), f"$JS.API.STREAM.PURGE.{s.events_stream}")
        )

    await eventually(refused, 10, what=f"permission violations; seen {errors}")
    async with secured.client() as client:
        await asyncio.sleep(2)
        await not_found(client, run_id)
        # What it may do, it still does: its own executor works.
        run = await start_run(client, "echo still works")
        assert (await wait_for_status(client, run["id"], "succeeded"))["output"] == "still works\n"
    assert not Path(f"/tmp/pwned-{run_id}").exists()


async def test_the_reader_watches_output_live_but_cannot_publish(secured: Up, as_role: Connect) -> None:
    nc, errors = await as_role("reader")
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_out(msg: Msg) -> None:
        await chunks.put(msg.data)

    await nc.subscribe(s.all_output, cb=on_out)
    await nc.subscribe("_INBOX.>")  # others' replies: refused
    await nc.flush()
    async with secured.client() as client:
        await start_run(client, "echo watched live")
    assert await asyncio.wait_for(chunks.get(), 30) == b"watched live\n"
    run_id = str(uuid.uuid4())
    await nc.publish(s.run_requested(run_id, "default"), encode_event(run_request(run_id)))
    await nc.flush()

    def refused() -> bool:
        text = " ".join(errors).lower()
        return "permissions violation for publish" in text and "permissions violation for subscription" in text

    await eventually(refused, 10, what=f"permission violations; seen {errors}")
    async with secured.client() as client:
        await asyncio.sleep(2)
        await not_found(client, run_id)


async def test_postgres_refuses_a_connection_without_the_password(secured: Up) -> None:
    assert "@" in secured.database_url and ":" not in secured.database_url.split("@")[0].removeprefix("postgresql://")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(secured.database_url, passfile=str(secured.data_dir / "nonexistent"))
    psql = subprocess.run(
        [str(postgres_bin_dir() / "psql"), "-w", secured.database_url, "-c", "select 1"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PGPASSFILE": "/nonexistent"},
    )
    assert psql.returncode != 0 and "password" in psql.stderr, psql.stderr
    password = (secured.credentials / "postgres-password").read_text().strip()
    conn = await asyncpg.connect(secured.database_url, password=password)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'") == 0
    finally:
        await conn.close()


def test_each_service_gets_only_its_own_environment_and_the_credentials_are_private(secured: Up) -> None:
    envs = {name: environ_of(pid) for name in ("executor", "gateway", "recorder", "scheduler")
            if (pid := service_under(secured.process.pid, name)) is not None}  # fmt: skip
    assert set(envs) == {"executor", "gateway", "recorder", "scheduler"}
    executor = envs["executor"]
    assert "SCRIPTBUS_API_TOKENS" not in executor and "SCRIPTBUS_DATABASE_URL" not in executor
    assert "PGPASSFILE" not in executor
    assert executor["SCRIPTBUS_NATS_CREDS"] == str(secured.seed("executor"))
    assert envs["gateway"]["SCRIPTBUS_API_TOKENS"] == TOKEN
    assert envs["recorder"]["PGPASSFILE"].startswith(str(secured.credentials))
    assert {name for name, env in envs.items() if MARKER in env} == set()
    assert len({env["SCRIPTBUS_NATS_CREDS"] for env in envs.values()}) == 4
    # Only executors can open secret values; the gateway can only seal them.
    assert executor["SCRIPTBUS_SECRETS_KEY_FILE"] == str(secured.credentials / "secrets.key")
    assert envs["gateway"]["SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE"] == str(secured.credentials / "secrets.pub")
    assert not [name for name, env in envs.items() if name != "executor" and "SCRIPTBUS_SECRETS_KEY_FILE" in env]
    assert secured.credentials.stat().st_mode & 0o777 == 0o700
    for path in secured.credentials.iterdir():
        # The public key is public; everything else is the services' alone.
        assert path.stat().st_mode & 0o777 == (0o644 if path.name == "secrets.pub" else 0o600), path


async def test_a_data_dir_from_an_older_release_is_secured_on_upgrade(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="scriptbus-up-"))
    data_dir = base / "data"
    try:
        # What an older `up` left: a trust cluster with our database, a NATS store, no credentials.
        old_pg = EmbeddedPostgres(data_dir / "postgres" / "data")
        old_pg.start()
        old_pg.stop()
        old_nats = EmbeddedNats(data_dir / "nats")
        old_nats.start()
        old_nats.stop()
        port = free_port()
        process = up(data_dir, port, tmp_path / "up.log")
        try:
            log = process.wait_for_log(r"PostgreSQL\s+(postgresql://\S+)", timeout=120)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                await eventually(lambda: "scriptbus is up" in process.log(), 60, what="up")
                run = await start_run(client, "echo upgraded")
                assert (await wait_for_status(client, run["id"], "succeeded"))["output"] == "upgraded\n"
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(log.group(1), passfile=str(base / "nonexistent"))
            assert (data_dir / "credentials" / "nats-reader.nk").exists()
        finally:
            process.close(grace=60)
            kill_processes_under(data_dir / "runs")
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_a_remote_executor_joins_with_a_credential_made_by_nats_user(secured: Up, tmp_path: Path) -> None:
    seed = tmp_path / "remote.nk"
    made = subprocess.run(
        [sys.executable, "-m", "scriptbus", "nats-user", "--data-dir", str(secured.data_dir),
         "executor", "--host", "remote-h", "--pools", "far", "--out", str(seed)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "nats-server reloaded its users" in made.stdout
    assert seed.stat().st_mode & 0o777 == 0o600
    env = {
        "PATH": os.environ["PATH"],
        "SCRIPTBUS_NATS_URL": secured.nats_url,
        "SCRIPTBUS_NATS_CREDS": str(seed),
        "SCRIPTBUS_POOLS": "far",
        "SCRIPTBUS_WORK_DIR": str(tmp_path / "runs"),
        "SCRIPTBUS_HEARTBEAT_INTERVAL_S": "0.5",
    }
    remote = ServiceProcess("executor", ["--host", "remote-h"], env, tmp_path / "remote.log")
    try:
        remote.wait_for_log("executor ready")
        async with secured.client() as client:
            run = await start_run(client, "echo far away", pool="far")
            done = await wait_for_status(client, run["id"], "succeeded")
            assert (done["host"], done["output"]) == ("remote-h", "far away\n")
    finally:
        remote.close(grace=30)
        kill_processes_under(tmp_path / "runs")
