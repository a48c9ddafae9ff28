"""The compose deployment driven as its README says: `docker compose` on the repository's files, with a
project name, ports and image tag of the test's own, so it neither meets another stack nor the servers
already listening on this machine."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scriptbus.embedded import free_port
from tests.helpers.servers import docker_answers

ROOT = Path(__file__).resolve().parents[2]
EXECUTOR_DIR = ROOT / "deploy" / "executor"
# A tag of its own, so the test never replaces the user's `scriptbus:latest`; layers stay cached.
IMAGE = "scriptbus:e2e"


def compose_unavailable() -> str | None:
    """Why the compose test cannot run here, or None. Quick when no engine answers."""
    if shutil.which("docker") is None:
        return "no docker command"
    if not docker_answers(timeout=1.0):
        return f"no Docker engine answers at {os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}"
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return "no docker compose plugin"
    return None


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float, stdin: str | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, input=stdin)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class ComposeStack:
    """The main stack (`docker-compose.yml`) under project `project`, published on free localhost ports."""

    project: str
    workdir: Path
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    api_port: int = field(default_factory=free_port)
    nats_port: int = field(default_factory=free_port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIPTBUS_", "COMPOSE_"))}
        env.update(
            SCRIPTBUS_IMAGE=IMAGE,
            SCRIPTBUS_API_PORT=str(self.api_port),
            SCRIPTBUS_NATS_PORT=str(self.nats_port),
            SCRIPTBUS_API_TOKENS=self.api_token,
        )
        return env

    def compose(self, *args: str, timeout: float = 120.0) -> str:
        return _run(["docker", "compose", "-p", self.project, *args], self.env(), ROOT, timeout)

    def up(self, build: bool = False) -> None:
        # --wait: until nats, postgres and the gateway are healthy (an error naming the one that is not).
        self.compose("up", "-d", "--wait", *(["--build"] if build else []), timeout=600)

    def read_credential(self, path: str, to: Path) -> Path:
        """A file of the `credentials` volume copied to `to`, mode 0600, as the README does with `cat`."""
        text = self.compose("run", "--rm", "-T", "--entrypoint", "cat", "credentials", path)
        fd = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return to

    def add_executor(self, host: str, pools: str) -> ExtraExecutor:
        """`deploy/executor/` as another machine: its own credential made and registered as the README
        says, then its own compose project joined to the stack's network (`same-host.yml`)."""
        self.compose(
            "run", "--rm", "--entrypoint", "scriptbus", "credentials",
            "nats-user", "--data-dir", "/scriptbus", "executor", "--host", host, "--pools", pools,
        )  # fmt: skip
        self.compose("kill", "-s", "HUP", "nats")
        seed = self.read_credential(f"/scriptbus/credentials/nats-executor-{host}.nk", self.workdir / f"{host}.nk")
        key = self.read_credential("/scriptbus/secrets/secrets.key", self.workdir / f"{host}-secrets.key")
        return ExtraExecutor(f"{self.project}-{host}", host, pools, seed, key, self.network)

    def down(self, volumes: bool) -> None:
        self.compose("down", "--remove-orphans", *(["-v"] if volumes else []), timeout=180)


@dataclass
class ExtraExecutor:
    project: str
    host: str
    pools: str
    seed: Path
    secrets_key: Path
    network: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIPTBUS_", "COMPOSE_"))}
        env.update(
            SCRIPTBUS_IMAGE=IMAGE,
            SCRIPTBUS_HOST=self.host,
            SCRIPTBUS_POOLS=self.pools,
            SCRIPTBUS_NATS_URL="nats://nats:4222",
            SCRIPTBUS_STACK_NETWORK=self.network,
            SCRIPTBUS_EXECUTOR_NK=str(self.seed),
            SCRIPTBUS_SECRETS_KEY=str(self.secrets_key),
        )
        return env

    def compose(self, *args: str, timeout: float = 120.0) -> str:
        files = ["-f", "docker-compose.yml", "-f", "same-host.yml"]
        return _run(["docker", "compose", "-p", self.project, *files, *args], self.env(), EXECUTOR_DIR, timeout)


@contextmanager
def compose_stack(workdir: Path) -> Iterator[ComposeStack]:
    """The main stack, built from this tree and up; everything removed (volumes too) however the test ends."""
    stack = ComposeStack(f"sbe2e{secrets.token_hex(4)}", workdir)
    with ExitStack() as cleanup:
        cleanup.callback(stack.down, volumes=True)
        stack.up(build=True)
        yield stack


@contextmanager
def extra_executor(stack: ComposeStack, host: str, pools: str) -> Iterator[ExtraExecutor]:
    extra = stack.add_executor(host, pools)
    try:
        extra.compose("up", "-d")
        yield extra
    finally:
        # Before the stack's own `down`, which cannot remove a network another project still uses.
        extra.compose("down", "-v", "--remove-orphans")
