"""The systems bench/run.py compares, each started on free ports in a temporary folder and stopped again by the
ExitStack it registers with (also on Ctrl-C or an error): scriptbus (`scriptbus up`), the toy peer, and the
Celery peer at two worker concurrencies. Each knows the processes whose CPU counts as its own."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from scriptbus.embedded import EmbeddedPostgres, free_port

PEERS = Path(__file__).resolve().parent / "peers"
READER_SEED = "BENCH_NATS_READER_SEED"


@dataclass
class System:
    name: str
    url: str
    # Roots of the process trees (servers included) whose CPU is the system's; children are found when measured.
    pids: list[int]
    # How runs still waiting are cancelled after the sleeping-runs figure: "stop" each run, "purge" the queue,
    # or "none" (every run started at once, so all end together).
    cancel: str
    notes: list[str] = field(default_factory=list)


def _processes(pids: list[int]) -> Iterator[psutil.Process]:
    """Every live process of the trees rooted at `pids`, once each."""
    seen: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid not in seen:
                seen.add(proc.pid)
                yield proc


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of every live process in the trees, plus what their ended children used (a bash that
    exited is counted in its parent's children times once reaped)."""
    total = 0.0
    for proc in _processes(pids):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _role(proc: psutil.Process) -> str:
    """What a process is, for the CPU breakdown: the scriptbus service, or the program's name."""
    cmdline = proc.cmdline()
    if "scriptbus" in cmdline:
        after = cmdline[cmdline.index("scriptbus") + 1 :]
        return after[0] if after else "scriptbus"
    for arg in cmdline:
        if arg.endswith("celery_peer.py"):
            return f"celery_peer {cmdline[cmdline.index(arg) + 1]}"
        if arg.endswith("toy.py"):
            return "toy"
    return proc.name()


def cpu_by_role(pids: list[int]) -> dict[str, float]:
    """Like cpu_seconds, per role; the scripts a process ran (reaped children) are counted apart as "children
    of <role>"."""
    found: dict[str, float] = {}
    for proc in _processes(pids):
        try:
            role, t = _role(proc), proc.cpu_times()
        except psutil.Error:
            continue
        found[role] = found.get(role, 0.0) + t.user + t.system
        found[f"children of {role}"] = found.get(f"children of {role}", 0.0) + t.children_user + t.children_system
    return found


def stop_process(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60
) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/api/v1/runs", params={"status": "running"}).raise_for_status()
            return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.1)


def start_scriptbus(stack: ExitStack, data_dir: Path, checkout: Path | None = None) -> tuple[System, str, str]:
    """A real `scriptbus up` (embedded nats-server and PostgreSQL); its NATS and PostgreSQL urls. `checkout`:
    another clone of the repository whose code runs instead of the installed one (bench/versions.py)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_")}
    if checkout is not None:
        # Its `scriptbus/` (symlinks to the layout) comes first on the path, for `up` and the services it starts.
        env["PYTHONPATH"] = str(checkout)
    proc = subprocess.Popen(
        [sys.executable, "-m", "scriptbus", "up", "--data-dir", str(data_dir), "--api-port", str(port),
         "--nats-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=checkout,
    )  # fmt: skip
    stack.callback(stop_process, proc, signal.SIGTERM, 120)
    assert proc.stdout is not None
    banner = ""
    for line in proc.stdout:
        banner += line
        if line.startswith("Ctrl-C"):
            break
    nats_url = re.search(r"NATS\s+(\S+)", banner)
    pg_url = re.search(r"PostgreSQL\s+(\S+)", banner)
    if not (nats_url and pg_url):
        raise SystemExit(f"scriptbus up did not start:\n{banner}")
    # `up`'s PostgreSQL asks for its password (asyncpg reads the password file PGPASSFILE names) and its
    # NATS for a key: the bench only watches, as the reader.
    os.environ["PGPASSFILE"] = str(data_dir / "credentials" / "pgpass")
    os.environ[READER_SEED] = str(data_dir / "credentials" / "nats-reader.nk")
    system = System("scriptbus", f"http://127.0.0.1:{port}", [proc.pid], cancel="stop")
    return system, nats_url.group(1), pg_url.group(1)


def _postgres(stack: ExitStack, data_dir: Path, database: str) -> tuple[EmbeddedPostgres, str]:
    pg = EmbeddedPostgres(data_dir / "postgres", database=database)
    stack.callback(pg.stop)
    url = pg.start()
    assert pg.proc is not None
    return pg, url


def start_toy(stack: ExitStack, data_dir: Path) -> System:
    """The toy peer (bench/peers/toy.py) on its own embedded PostgreSQL, ready to take requests."""
    pg, db_url = _postgres(stack, data_dir, "toy")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(PEERS / "toy.py"), "--port", str(port), "--database-url", db_url],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    stack.callback(stop_process, proc)
    url = f"http://127.0.0.1:{port}"
    wait_http(url, proc, "the toy peer")
    assert pg.proc is not None
    return System("toy", url, [proc.pid, pg.proc.pid], cancel="none")


def celery_missing() -> str | None:
    """Why the Celery peer cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH"
    for module in ("celery", "redis", "psycopg", "psutil"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def _wait_redis(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)


def start_celery(stack: ExitStack, data_dir: Path, concurrency: int) -> System:
    """The Celery peer (bench/peers/celery_peer.py): its own redis-server and PostgreSQL, the API, a prefork
    worker of `concurrency` processes."""
    data_dir.mkdir(parents=True)
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(data_dir), "--loglevel", "warning"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    stack.callback(stop_process, redis)
    _wait_redis(redis_port, redis)
    pg, db_url = _postgres(stack, data_dir, "celery")
    broker = f"redis://127.0.0.1:{redis_port}/0"
    port = free_port()
    script = str(PEERS / "celery_peer.py")
    api = subprocess.Popen(
        [sys.executable, script, "api", "--port", str(port), "--database-url", db_url, "--broker", broker],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    stack.callback(stop_process, api)
    url = f"http://127.0.0.1:{port}"
    wait_http(url, api, "the Celery peer's API")  # it creates the tables the worker writes
    with (data_dir / "worker.log").open("ab") as log:  # its banner and warnings stay out of the table
        worker = subprocess.Popen(
            [sys.executable, script, "worker", "--database-url", db_url, "--broker", broker,
             "--concurrency", str(concurrency)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    # SIGTERM is Celery's warm shutdown: it finishes the tasks it holds (the bench leaves none running).
    stack.callback(stop_process, worker)
    assert pg.proc is not None
    return System(f"celery -c{concurrency}", url, [api.pid, worker.pid, redis.pid, pg.proc.pid], cancel="purge")
