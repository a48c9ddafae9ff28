"""The NATS users of `scriptbus up` on a real nats-server with the rendered authorization: the secrets
bucket is read by executors only and written by the gateway only; services connect with their seeds;
an executor waits for streams it may not create; TLS is a setting away."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig

from scriptbus.credentials import Credentials
from scriptbus.embedded import EmbeddedNats
from scriptbus.events import BusSettings, Subjects, connect_bus

PREFIX = "permtest"
s = Subjects(PREFIX)


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[tuple[str, Credentials]]:
    credentials = Credentials(tmp_path / "data")
    credentials.ensure_local_users("hostA", ["poolA"])
    server = EmbeddedNats(tmp_path / "data" / "nats", auth_config=credentials.write_authorization(s))
    url = server.start()
    try:
        yield url, credentials
    finally:
        server.stop()


class Connect(Protocol):
    """The `connect` fixture: a connection (through `connect_bus`) with the seed of `role`."""

    async def __call__(self, role: str, name: str | None = None) -> Client: ...


@pytest.fixture
async def connect(authed: tuple[str, Credentials]) -> AsyncIterator[Connect]:
    url, credentials = authed
    opened: list[Client] = []

    async def as_role(role: str, name: str | None = None) -> Client:
        seed = credentials.seed_file(role if role != "executor" else "executor-hostA")
        settings = BusSettings(nats_url=url, prefix=PREFIX, nats_creds=str(seed))
        nc, _js, _s = await connect_bus(settings, name or f"scriptbus-{role}")
        opened.append(nc)
        return nc

    yield as_role
    for nc in opened:
        await nc.close()


async def test_only_executors_read_the_secrets_bucket_and_only_the_gateway_writes_it(connect: Connect) -> None:
    gateway = await connect("gateway")
    gjs = gateway.jetstream(timeout=3)
    bucket = await gjs.create_key_value(KeyValueConfig(bucket=s.secrets_bucket, history=1))
    await bucket.put("DB_PASSWORD", b"sealed-for-executors")
    with pytest.raises(nats.errors.TimeoutError):  # its direct get is refused, so no answer comes
        await bucket.get("DB_PASSWORD")

    executor = await connect("executor", "scriptbus-executor-hostA")
    secrets = await executor.jetstream(timeout=3).key_value(s.secrets_bucket)
    assert (await secrets.get("DB_PASSWORD")).value == b"sealed-for-executors"
    with pytest.raises(nats.errors.TimeoutError):
        await secrets.put("DB_PASSWORD", b"overwritten")
    assert (await secrets.get("DB_PASSWORD")).value == b"sealed-for-executors"

    for role in ("recorder", "scheduler"):
        other = await connect(role)
        js = other.jetstream(timeout=3)
        with pytest.raises(nats.errors.TimeoutError):
            await js.get_last_msg(f"KV_{s.secrets_bucket}", f"$KV.{s.secrets_bucket}.DB_PASSWORD", direct=True)
        with pytest.raises(nats.errors.TimeoutError):
            await js.get_last_msg(f"KV_{s.secrets_bucket}", f"$KV.{s.secrets_bucket}.DB_PASSWORD")
        with pytest.raises(nats.errors.TimeoutError):
            await js.subscribe(f"$KV.{s.secrets_bucket}.>", stream=f"KV_{s.secrets_bucket}")


async def test_an_executor_waits_for_the_streams_it_may_not_create(
    authed: tuple[str, Credentials], caplog: pytest.LogCaptureFixture
) -> None:
    url, credentials = authed
    settings = BusSettings(nats_url=url, prefix=PREFIX, nats_creds=str(credentials.seed_file("executor-hostA")))
    caplog.set_level(logging.WARNING)
    waiting = asyncio.create_task(connect_bus(settings, "scriptbus-executor-hostA"))
    try:
        while "waiting for the streams" not in caplog.text:
            assert not waiting.done(), waiting
            await asyncio.sleep(0.05)
        scheduler = BusSettings(nats_url=url, prefix=PREFIX, nats_creds=str(credentials.seed_file("scheduler")))
        nc, _js, _s = await connect_bus(scheduler, "scriptbus-scheduler")
        await nc.close()
        executor_nc, _js, _s = await asyncio.wait_for(waiting, 30)
        await executor_nc.close()
    finally:
        waiting.cancel()
    assert "this executor may not create them; the gateway, recorder or scheduler does" in caplog.text


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = EmbeddedNats(tmp_path / "nats", extra_config=f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n}}\n')
    url = server.start()
    try:
        yield url, cert
    finally:
        server.stop()


async def test_tls_to_nats_is_a_setting_away(tls_server: tuple[str, Path]) -> None:
    url, ca = tls_server
    nc, js, _s = await connect_bus(BusSettings(nats_url=url, prefix=PREFIX, nats_tls_ca=str(ca)), "scriptbus-gateway")
    try:
        assert nc.is_connected
        assert (await js.stream_info(s.events_stream)).config.name == s.events_stream
    finally:
        await nc.close()
