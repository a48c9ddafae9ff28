"""`scriptbus up` as a real process: the whole stack, embedded servers included, under one supervisor."""

from __future__ import annotations

import os
from pathlib import Path

from scriptbus.embedded import free_port
from tests.helpers.processes import ServiceProcess, descendants


def up(data_dir: Path, api_port: int, log_path: Path, extra_env: dict[str, str] | None = None) -> ServiceProcess:
    """`scriptbus up` with its data in `data_dir`, the API on `api_port`, NATS on a free port, `extra_env` on
    top of ours; not waited for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_")}
    env.update(PYTHONUNBUFFERED="1", SCRIPTBUS_HEARTBEAT_INTERVAL_S="0.5", **(extra_env or {}))
    args = ["--data-dir", str(data_dir), "--api-port", str(api_port), "--nats-port", str(free_port())]
    return ServiceProcess("up", args, env, log_path)


def service_under(up_pid: int, name: str) -> int | None:
    """The pid of `up`'s child running service `name` (`executor`, `gateway`, …), if one runs."""
    for pid in descendants(up_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"scriptbus" in argv and name.encode() in argv and argv.index(name.encode()) == argv.index(b"scriptbus") + 1:
            return pid
    return None


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)
