"""`scriptbus up` as a real process: the whole stack, embedded servers included, under one supervisor."""

from __future__ import annotations

import os
from pathlib import Path

from scriptbus.embedded import free_port
from tests.helpers.processes import ServiceProcess


def up(data_dir: Path, api_port: int, log_path: Path) -> ServiceProcess:
    """`scriptbus up` with its data in `data_dir`, the API on `api_port`, NATS on a free port; not waited for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_")}
    env.update(PYTHONUNBUFFERED="1", SCRIPTBUS_HEARTBEAT_INTERVAL_S="0.5")
    args = ["--data-dir", str(data_dir), "--api-port", str(api_port), "--nats-port", str(free_port())]
    return ServiceProcess("up", args, env, log_path)
