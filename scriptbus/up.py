"""`scriptbus up`: the whole system on one machine, in one command.

Starts nats-server and PostgreSQL from their wheels (unless SCRIPTBUS_NATS_URL / SCRIPTBUS_DATABASE_URL
name existing ones), then the recorder, scheduler, executor and gateway as child processes, restarts
any of them that dies, servers included (same port and data dir, so every service reconnects), and on
Ctrl-C / SIGTERM stops everything in order: executor (which stops and reports its runs), gateway and
scheduler, then the recorder, then the servers.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from scriptbus.credentials import Credentials
from scriptbus.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    ServerError,
    base_env,
    die_with_parent,
    free_port,
    port_is_free,
)
from scriptbus.events.lifecycle import DEFAULT_SHUTDOWN_TIMEOUT_S
from scriptbus.events.secret_box import ensure_key_pair
from scriptbus.events.subjects import Subjects
from scriptbus.executor.settings import EXECUTOR_SHUTDOWN_TIMEOUT_S, ExecutorSettings
from scriptbus.gateway.settings import GatewaySettings
from scriptbus.recorder.settings import RecorderSettings
from scriptbus.scheduler.settings import SchedulerSettings

SERVICE_ORDER = ("recorder", "scheduler", "executor", "gateway")
# Restarts back off from 0.5 s up to this; a unit that ran this long before dying starts over at 0.5 s.
MAX_RESTART_DELAY_S = 30.0
STABLE_AFTER_S = 60.0
# A restarted server may have a large JetStream store or WAL to recover before it answers.
SERVER_RESTART_TIMEOUT_S = 120.0
# Stopped first to last: the executor reports its runs before the recorder goes.
STOP_ORDER = (("executor", "gateway", "scheduler"), ("recorder",))


SETTINGS: dict[str, type[BaseSettings]] = {
    "recorder": RecorderSettings,
    "scheduler": SchedulerSettings,
    "executor": ExecutorSettings,
    "gateway": GatewaySettings,
}


def setting_variables(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (`SCRIPTBUS_<FIELD>` or the field's alias)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, info in settings.model_fields.items():
        alias = info.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def service_env(name: str, environ: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """A child's whole environment: locale, PATH and HOME, the `SCRIPTBUS_*` settings its own settings
    class reads (as the user set them), and what `up` gives it (`given`: URLs, credential paths).
    So the executor never sees the API tokens or the database URL, nor the gateway the executor's."""
    own = setting_variables(SETTINGS[name])
    env = base_env(environ)
    # PYTHONPATH: a development checkout may run the services from it.
    env.update({k: v for k, v in environ.items() if k == "PYTHONPATH" or k.upper() in own})
    if "database_url" not in SETTINGS[name].model_fields:
        env.pop("PGPASSFILE", None)
    env.update(given)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "scriptbus"


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self._log is not None:
            self._log.close()
        self._log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scriptbus", self.name, *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            process_group=0,  # Ctrl-C reaches only `up`, which stops children in order
            preexec_fn=die_with_parent,
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} did not stop in {timeout:.0f}s; killing it", file=sys.stderr)
            self.proc.kill()
            self.proc.wait(5)
        if self._log is not None:
            self._log.close()


@dataclass
class ServerUnit:
    """nats-server or PostgreSQL under supervision: restarted on the port and data dir it had."""

    name: str
    server: EmbeddedNats | EmbeddedPostgres
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def log_path(self) -> Path:
        return self.server.log

    def running(self) -> bool:
        return self.server.running()

    def exit_code(self) -> int | None:
        return None if self.server.proc is None else self.server.proc.poll()

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.server.start(timeout=SERVER_RESTART_TIMEOUT_S)
        print(f"scriptbus: {self.name} is back (restart {self.restarts})", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(url: str, children: dict[str, Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children.values():
            if not child.running():
                raise ServerError(
                    f"{child.name} exited while starting; its log {child.log_path}:\n{_tail(child.log_path)}"
                )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ServerError(
        f"the gateway was not ready at {url} after {timeout:.0f}s; logs are in {children['gateway'].log_path.parent}"
    )


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="scriptbus up", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    getenv = os.environ.get
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(getenv("SCRIPTBUS_DATA_DIR") or default_data_dir()),
        help="where NATS, PostgreSQL, logs and run folders live (env SCRIPTBUS_DATA_DIR; default %(default)s)",
    )
    parser.add_argument(
        "--api-host",
        default=getenv("SCRIPTBUS_API_HOST", "127.0.0.1"),
        help="address the REST API listens on (default %(default)s)",
    )
    parser.add_argument(
        "--api-port",
        type=int,
        default=int(getenv("SCRIPTBUS_API_PORT", "8080")),
        help="REST API port (env SCRIPTBUS_API_PORT; default %(default)s)",
    )
    parser.add_argument(
        "--nats-port",
        type=int,
        default=int(getenv("SCRIPTBUS_NATS_PORT", "0")),
        help="port of the embedded nats-server (default 4222 when free, else any free port)",
    )
    parser.add_argument(
        "--nats-host",
        default=getenv("SCRIPTBUS_NATS_HOST", "127.0.0.1"),
        help="address the embedded nats-server listens on; 0.0.0.0 lets executors on other hosts in, each "
        "with its own credential (`scriptbus nats-user executor`) (env SCRIPTBUS_NATS_HOST; default %(default)s)",
    )
    parser.add_argument("--max-concurrency", type=int, default=None, help="runs the local executor runs at once")
    args = parser.parse_args(argv)

    data_dir: Path = args.data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # A script (another user, under a root executor) passes through the data dir to its run folder but
    # lists nothing in it; the logs and the JetStream store are the services' alone.
    data_dir.chmod(0o711)
    for private in ("logs", "nats"):
        (data_dir / private).mkdir(mode=0o700, exist_ok=True)
        (data_dir / private).chmod(0o700)
    lock = (data_dir / "up.lock").open("w")
    os.chmod(lock.fileno(), 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"scriptbus up: another `scriptbus up` is using {data_dir}")
    if not port_is_free(args.api_port, args.api_host if args.api_host != "0.0.0.0" else "127.0.0.1"):
        sys.exit(f"scriptbus up: port {args.api_port} is taken; choose another with --api-port or SCRIPTBUS_API_PORT")

    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    servers: list[EmbeddedNats | EmbeddedPostgres] = []
    children: dict[str, Child] = {}
    credentials = Credentials(data_dir)
    prefix = os.environ.get("SCRIPTBUS_PREFIX", "scriptbus")
    # What `up` hands each service on top of its own settings: by service name, variable -> value.
    given: dict[str, dict[str, str]] = {name: {} for name in SERVICE_ORDER}
    try:
        nats_url = os.environ.get("SCRIPTBUS_NATS_URL")
        watch = ""
        if not nats_url:
            # Made at first start (an older data dir gets them now), kept across restarts.
            try:
                local = ExecutorSettings()
            except ValidationError as exc:
                sys.exit(f"scriptbus up: the executor's settings: {exc}")
            seeds = credentials.ensure_local_users(local.host, local.pools)
            authorization = credentials.write_authorization(Subjects(prefix))
            port = args.nats_port or _nats_port(data_dir / "nats" / "port")
            nats = EmbeddedNats(data_dir / "nats", port=port, host=args.nats_host, auth_config=authorization)
            servers.append(nats)
            nats.start()
            # Our own services reach it on loopback whatever it listens on.
            nats_url = f"nats://127.0.0.1:{nats.port}" if args.nats_host in ("0.0.0.0", "::") else nats.url
            for name in SERVICE_ORDER:
                given[name]["SCRIPTBUS_NATS_CREDS"] = str(seeds[name])
            watch = f"nats sub -s {nats_url} --nkey {seeds['reader']}"
        else:
            watch = f"nats sub -s {nats_url}"
        for name in SERVICE_ORDER:
            given[name]["SCRIPTBUS_NATS_URL"] = nats_url
        database_url = os.environ.get("SCRIPTBUS_DATABASE_URL")
        database_note = ""
        if not database_url:
            pg = EmbeddedPostgres(
                data_dir / "postgres" / "data", password=credentials.postgres_password(), passfile=credentials.pgpass
            )
            servers.append(pg)
            database_url = pg.start()
            database_note = (
                f"   (password in {credentials.pg_password_file};"
                f" psql: PGPASSFILE={credentials.pgpass} psql {database_url})"
            )
        for name in ("recorder", "scheduler", "gateway"):
            given[name]["SCRIPTBUS_DATABASE_URL"] = database_url
            if database_note:
                # A password file rather than the password in the URL: nothing secret in any environment.
                given[name]["PGPASSFILE"] = str(credentials.pgpass)
        given["executor"]["SCRIPTBUS_WORK_DIR"] = str(data_dir / "runs")
        # Secret values are sealed by the gateway with the public key and opened by executors only.
        if not (os.environ.get("SCRIPTBUS_SECRETS_KEY_FILE") or os.environ.get("SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE")):
            secrets_key, secrets_pub = ensure_key_pair(credentials.dir)
            given["gateway"]["SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE"] = str(secrets_pub)
            given["executor"]["SCRIPTBUS_SECRETS_KEY_FILE"] = str(secrets_key)

        environ = dict(os.environ)
        service_args: dict[str, list[str]] = {
            "recorder": [],
            "scheduler": [],
            "executor": ["--max-concurrency", str(args.max_concurrency)] if args.max_concurrency else [],
            "gateway": ["--host", args.api_host, "--port", str(args.api_port)],
        }
        for name in SERVICE_ORDER:
            env = service_env(name, environ, given[name])
            child = Child(name, service_args[name], env, data_dir / "logs" / f"{name}.log")
            child.start()
            children[name] = child
        api = f"http://{'127.0.0.1' if args.api_host == '0.0.0.0' else args.api_host}:{args.api_port}"
        _wait_ready(f"{api}/readyz", children, timeout=90)
        print(
            f"scriptbus is up\n"
            f"  console    {api}/\n"
            f"  REST API   {api}/api/v1/runs   (docs: {api}/docs)\n"
            f"  NATS       {nats_url}   live output: {watch} '{prefix}.runs.*.out'\n"
            f"  PostgreSQL {database_url}{database_note}\n"
            f"  data       {data_dir}   (logs in {data_dir / 'logs'})\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        units: list[ServerUnit | Child] = [
            ServerUnit("nats-server" if isinstance(server, EmbeddedNats) else "postgres", server) for server in servers
        ]
        _supervise([*units, *children.values()])
    except _Stop:
        print("\nscriptbus: stopping ...", file=sys.stderr, flush=True)
    except ServerError as exc:
        print(f"scriptbus up: {exc}", file=sys.stderr, flush=True)
        _shutdown(children, servers)
        sys.exit(1)
    _shutdown(children, servers)
    print("scriptbus: stopped", file=sys.stderr, flush=True)


def _supervise(units: list[ServerUnit | Child]) -> None:
    """Restart whatever exits on its own (servers before services), backing off between tries, and say
    so on stderr with the end of its log. Polling each one also reaps it, so no zombie is left."""
    while True:
        now = time.monotonic()
        for unit in units:
            if unit.running() or unit.exit_code() is None:
                continue
            if unit.next_start == 0.0:
                if now - unit.started_at > STABLE_AFTER_S:
                    unit.restarts = 0
                delay = min(MAX_RESTART_DELAY_S, 0.5 * 2**unit.restarts)
                print(f"scriptbus: {unit.name} exited ({unit.exit_code()}); restarting in {delay:.1f}s\n"
                      f"{_tail(unit.log_path)}", file=sys.stderr, flush=True)  # fmt: skip
                unit.next_start = now + delay
            elif now >= unit.next_start:
                unit.restarts += 1
                unit.next_start = 0.0
                try:
                    unit.start()
                except (ServerError, OSError, subprocess.SubprocessError) as exc:  # the next round backs off more
                    print(f"scriptbus: {unit.name} did not come back: {exc}", file=sys.stderr, flush=True)
        time.sleep(0.2)


def _nats_port(record: Path) -> int:
    """4222 when free, else the port this data dir's NATS had last time (so `nats sub -s` lines and
    executors on other hosts keep working across restarts) when free, else any free port; remembered."""
    try:
        last = int(record.read_text())
    except (OSError, ValueError):
        last = 0
    port = next((p for p in (4222, last) if p and port_is_free(p)), 0) or free_port()
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{port}\n")
    return port


def _stop_budget_s(child: Child) -> float:
    """How long to wait for a service after SIGTERM: its own shutdown deadline (the executor's covers its
    runs' grace periods) and a little more, so `up` never SIGKILLs a service that is still keeping its word."""
    own = child.env.get("SCRIPTBUS_SHUTDOWN_TIMEOUT_S")
    try:
        budget = (
            float(own)
            if own
            else (EXECUTOR_SHUTDOWN_TIMEOUT_S if child.name == "executor" else DEFAULT_SHUTDOWN_TIMEOUT_S)
        )
    except ValueError:
        budget = DEFAULT_SHUTDOWN_TIMEOUT_S
    return budget + 5.0


def _shutdown(children: dict[str, Child], servers: list[EmbeddedNats | EmbeddedPostgres]) -> None:
    # A second Ctrl-C while stopping must not leave half the system running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for group in STOP_ORDER:
        members = [children[n] for n in group if n in children]
        for child in members:
            child.stop()
        for child in members:
            child.wait(timeout=_stop_budget_s(child))
    for server in reversed(servers):
        server.stop()
