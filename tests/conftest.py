"""Fixtures on real servers: NATS JetStream and PostgreSQL for the session, a fresh prefix and
database per test, and the services as real processes."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from scriptbus.events import Subjects, ensure_streams
from tests.helpers.processes import ServiceProcess, StartService, kill_processes_under
from tests.helpers.servers import Bus, Servers, test_servers

# Run as a background job (`pytest &`, a CI runner's), the suite inherits SIGINT ignored from the shell, and
# so would every CLI it starts: Python then never raises KeyboardInterrupt, and a test pressing Ctrl-C as a
# user at a terminal does would wait forever. A handler (unlike SIG_IGN) is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with test_servers() as found:
        yield found


@pytest.fixture(scope="session")
def nats_url(servers: Servers) -> str:
    return servers.nats_url


@pytest.fixture(scope="session")
def pg_admin_url(servers: Servers) -> str:
    return servers.pg_admin_url


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    name = "tdb_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = pg_admin_url.rpartition("/")
    query = ""
    if "?" in pg_admin_url.rsplit("/", 1)[1]:
        query = "?" + pg_admin_url.rsplit("?", 1)[1]
    yield f"{base}/{name}{query}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def bus(nats_url: str, prefix: str) -> AsyncIterator[Bus]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=10)
    subjects = Subjects(prefix)
    await ensure_streams(js, subjects)
    yield nc, js, subjects
    # Leave the session's server as clean as we found it.
    for stream in (subjects.events_stream, subjects.executors_stream, f"KV_{subjects.claims_bucket}"):
        try:
            await js.delete_stream(stream)
        except Exception:
            pass
    await nc.close()


@pytest.fixture
def work_dir() -> Iterator[Path]:
    # Not under tmp_path: scripts run as another user (when the tests run as root) and must reach their
    # run folder by its path, but a pytest starting meanwhile makes its base temp folder private again.
    path = Path(tempfile.mkdtemp(prefix="scriptbus-test-runs-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def exchange_dir() -> Iterator[Path]:
    """A folder both the test and its scripts write (scripts may run as another, unprivileged user)."""
    path = Path(tempfile.mkdtemp(prefix="scriptbus-test-exchange-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service_env(nats_url: str, database_url: str, prefix: str, work_dir: Path) -> dict[str, str]:
    return {
        "SCRIPTBUS_NATS_URL": nats_url,
        "SCRIPTBUS_DATABASE_URL": database_url,
        "SCRIPTBUS_PREFIX": prefix,
        "SCRIPTBUS_WORK_DIR": str(work_dir),
        "SCRIPTBUS_HEARTBEAT_INTERVAL_S": "0.5",
        "SCRIPTBUS_EXECUTOR_LOST_AFTER_S": "3",
        "SCRIPTBUS_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def start_service(service_env: dict[str, str], tmp_path: Path, work_dir: Path) -> Iterator[StartService]:
    started: list[ServiceProcess] = []
    # The services get this machine's environment minus any SCRIPTBUS_* of the developer's own.
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_")}
    base["PYTHONUNBUFFERED"] = "1"

    def start(name: str, *args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        log_path = tmp_path / f"{name}-{len(started)}.log"
        process = ServiceProcess(name, list(args), {**base, **service_env, **(env or {})}, log_path)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.close(grace=10)
    kill_processes_under(work_dir)
