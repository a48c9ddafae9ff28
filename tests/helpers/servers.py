"""Which real NATS and PostgreSQL the tests use, in DESIGN.md's order:
explicit URLs, then testcontainers when a Docker engine answers, then the embedded wheels."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from nats.aio.client import Client
from nats.js import JetStreamContext

from scriptbus.embedded import EmbeddedNats, EmbeddedPostgres
from scriptbus.events import Subjects

# What the `bus` fixture gives a test: a connection, its JetStream context and the test's names.
Bus = tuple[Client, JetStreamContext, Subjects]


@dataclass(frozen=True)
class Servers:
    nats_url: str
    pg_admin_url: str
    source: str


def docker_answers(timeout: float = 0.5) -> bool:
    """A quick `GET /_ping` so a DOCKER_HOST that never answers costs half a second, not a minute."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parsed = urlparse(host)
    sock: socket.socket | None = None
    try:
        if parsed.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parsed.path)
        elif parsed.scheme in ("tcp", "http"):
            sock = socket.create_connection((parsed.hostname or "localhost", parsed.port or 2375), timeout=timeout)
        else:
            return False
        sock.settimeout(timeout)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        return b"OK" in sock.recv(1024)
    except OSError:
        return False
    finally:
        if sock is not None:
            sock.close()


def _configure_testcontainers() -> None:
    """What testcontainers needs where the suite runs, unless the user's environment says otherwise.

    - Ryuk (the reaper container) is off: these fixtures remove their containers themselves, and its
      image must be pulled, which machines without a registry cannot do. TESTCONTAINERS_RYUK_DISABLED=false
      turns it back on.
    - An engine on this very machine (the daemon's name is our host name) publishes ports on localhost.
      testcontainers guesses otherwise when /.dockerenv exists (it looks for a DinD gateway), so we say
      so, unless TESTCONTAINERS_HOST_OVERRIDE, TC_HOST or TESTCONTAINERS_CONNECTION_MODE is set.
    """
    import docker
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    if (
        os.environ.get("TESTCONTAINERS_RYUK_DISABLED") is None
        and "ryuk.disabled" not in testcontainers_config.tc_properties
    ):
        testcontainers_config.ryuk_disabled = True
    user_chose = testcontainers_config.tc_host_override or testcontainers_config.connection_mode_override
    if not user_chose:
        client = docker.from_env()
        try:
            engine_name = client.info().get("Name")
        finally:
            client.close()
        if engine_name == socket.gethostname():
            testcontainers_config.tc_host_override = "localhost"
            testcontainers_config.connection_mode_override = ConnectionMode.docker_host


@contextmanager
def _containers() -> Iterator[Servers]:
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    _configure_testcontainers()
    nats_server = (
        DockerContainer("nats:2.10-alpine")
        .with_command("-js")
        .with_exposed_ports(4222)
        .waiting_for(LogMessageWaitStrategy("Server is ready").with_startup_timeout(60))
    )
    with PostgresContainer("postgres:16-alpine", driver=None) as pg, nats_server as nats:
        nats_url = f"nats://{nats.get_container_host_ip()}:{nats.get_exposed_port(4222)}"
        yield Servers(nats_url, pg.get_connection_url(), "testcontainers")


@contextmanager
def _embedded() -> Iterator[Servers]:
    with tempfile.TemporaryDirectory(prefix="scriptbus-test-") as tmp, ExitStack() as stack:
        nats = EmbeddedNats(Path(tmp) / "nats")
        nats.start()
        stack.callback(nats.stop)
        pg = EmbeddedPostgres(Path(tmp) / "pg" / "data", database="postgres")
        pg.start()
        stack.callback(pg.stop)
        yield Servers(nats.url, pg.url(), "embedded")


@contextmanager
def test_servers() -> Iterator[Servers]:
    nats_url = os.environ.get("SCRIPTBUS_TEST_NATS_URL")
    pg_url = os.environ.get("SCRIPTBUS_TEST_DATABASE_URL")
    if nats_url and pg_url:
        yield Servers(nats_url, pg_url, "environment")
    elif docker_answers():
        with _containers() as servers:
            yield servers
    else:
        with _embedded() as servers:
            yield servers
