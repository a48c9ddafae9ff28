"""Which real NATS and PostgreSQL the tests use, in DESIGN.md's order:
explicit URLs, then testcontainers when a Docker engine answers, then the embedded wheels."""

from __future__ import annotations

import os
import socket
import tempfile
import warnings
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


@contextmanager
def _containers() -> Iterator[Servers]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs
        from testcontainers.postgres import PostgresContainer

    with (
        PostgresContainer("postgres:16-alpine", driver=None) as pg,
        DockerContainer("nats:2.10-alpine").with_command("-js").with_exposed_ports(4222) as nats,
    ):
        wait_for_logs(nats, "Server is ready", timeout=60)
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
