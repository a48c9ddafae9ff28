"""Every service stops on SIGTERM/SIGINT whatever state NATS is in, logs at a level given in any case,
and the scheduler rides out a NATS outage instead of crashing."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.aio.msg import Msg

from scriptbus.embedded import EmbeddedNats, free_port
from scriptbus.events import (
    ExecutorLost,
    RunFinished,
    Subjects,
    decode_event,
    ensure_streams,
    new_id,
    publish_event,
)
from tests.helpers.fleet import heartbeat
from tests.helpers.processes import ServiceProcess
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually, eventually_blocking

# The bound for a service to leave after SIGTERM with NATS unreachable.
STOP_WITHIN_S = 5.0


@pytest.mark.parametrize("name", ["executor", "recorder", "scheduler", "gateway"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_service_stops_on_a_signal_while_nats_is_unreachable(
    name: str, sig: signal.Signals, start_service: Callable[..., ServiceProcess]
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nobody listens there
    args = ["--port", str(free_port())] if name == "gateway" else []
    service = start_service(name, *args, env={"SCRIPTBUS_NATS_URL": nowhere, "SCRIPTBUS_LOG_LEVEL": "debug"})
    # It is in its connect-retry loop, and it logs at the lower-case level it was given.
    service.wait_for_log(r"nats: .*(refused|failed)")
    assert " DEBUG " in service.log()
    service.proc.send_signal(sig)
    started = time.monotonic()
    try:
        code = service.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} still running {STOP_WITHIN_S}s after {sig.name}:\n{service.log()}")
    assert code == 0, service.log()
    assert time.monotonic() - started < STOP_WITHIN_S


READY = {
    "executor": r"executor ready",
    "recorder": r"caught up",
    "scheduler": r"scheduler ready",
    "gateway": r"gateway ready",
}


@pytest.mark.parametrize("name", ["executor", "recorder", "scheduler", "gateway"])
async def test_service_stops_promptly_after_nats_went_down(
    name: str, tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    """Connected, then NATS went away: no service may wait out its request timeouts or a drain."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        args = ["--port", str(free_port())] if name == "gateway" else []
        service = start_service(name, *args, env={"SCRIPTBUS_NATS_URL": server.url})
        service.wait_for_log(READY[name])
    finally:
        server.stop()
    service.wait_for_log(r"nats: disconnected")
    service.terminate()
    try:
        code = service.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} still running {STOP_WITHIN_S}s after SIGTERM with NATS down:\n{service.log()}")
    assert code == 0, service.log()


STUBBORN = """
import asyncio
from scriptbus.events.lifecycle import ServiceSettings, run_service

async def serve(stop: asyncio.Event) -> None:
    print("serving", flush=True)
    await asyncio.Event().wait()  # never looks at `stop`

run_service("stubborn", ServiceSettings(), serve)
"""


@pytest.mark.parametrize(("signals", "deadline"), [(1, "1"), (2, "600")], ids=["deadline", "second-signal"])
def test_a_service_that_ignores_the_stop_still_exits_and_says_what_it_gave_up(
    tmp_path: Path, signals: int, deadline: str
) -> None:
    log_path = tmp_path / "stubborn.log"
    env = {**os.environ, "SCRIPTBUS_SHUTDOWN_TIMEOUT_S": deadline}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=log, stderr=subprocess.STDOUT, env=env)

    def logged(text: str, times: int = 1) -> bool:
        return log_path.read_text().count(text) >= times or proc.poll() is not None

    try:
        eventually_blocking(partial(logged, "serving"), what="serving")
        for sent in range(1, signals + 1):
            proc.send_signal(signal.SIGTERM)
            # Signals of one kind sent at once may arrive as one: the next waits until this one is seen.
            if sent < signals:
                eventually_blocking(partial(logged, "SIGTERM", sent), what=f"SIGTERM {sent} seen")
        assert proc.wait(STOP_WITHIN_S) == 1
        text = log_path.read_text()
        assert re.search(r"stubborn did not stop .*; giving up on: .*stubborn \(serve:\d+", text), text
    finally:
        proc.kill()
        proc.wait()


async def test_scheduler_rides_out_a_nats_outage_and_still_declares_a_silent_executor_lost(
    tmp_path: Path, prefix: str, start_service: Callable[..., ServiceProcess]
) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream(timeout=10)
        subjects = Subjects(prefix)
        await ensure_streams(js, subjects)
        scheduler = start_service("scheduler", env={"SCRIPTBUS_NATS_URL": server.url})
        scheduler.wait_for_log(r"scheduler ready")
        # `ghost` goes silent right away; `alive` keeps beating whenever NATS is there.
        await publish_event(js, subjects, heartbeat("ghost", "g1", []))
        await publish_event(js, subjects, heartbeat("alive", "a1", []))

        server.stop()
        scheduler.wait_for_log(r"nats: disconnected")
        # The outage itself, not a wait for something: longer than SCRIPTBUS_EXECUTOR_LOST_AFTER_S=3, so
        # both executors look silent to a scheduler that judges what it cannot hear.
        await asyncio.sleep(5)
        assert scheduler.proc.poll() is None, f"scheduler died during the outage:\n{scheduler.log()}"
        server.start()  # same port, same store

        lost: list[str] = []

        async def on_lost(msg: Msg) -> None:
            event = decode_event(msg.data)
            if isinstance(event, ExecutorLost):
                lost.append(event.host)

        await nc.subscribe(subjects.executor_event("*", "lost"), cb=on_lost)

        async def ghost_declared() -> bool:
            if nc.is_connected:
                await publish_event(js, subjects, heartbeat("alive", "a1", []))
            return "ghost" in lost

        await eventually(ghost_declared, timeout=30, interval=0.5, what="ghost declared lost after the outage")
        assert scheduler.proc.poll() is None, scheduler.log()
        assert "alive" not in lost, scheduler.log()
        assert "executor alive lost" not in scheduler.log()
    finally:
        await nc.close()
        server.stop()


async def test_scheduler_retries_a_verdict_it_could_not_publish(
    bus: Bus, start_service: Callable[..., ServiceProcess]
) -> None:
    _nc, js, subjects = bus
    scheduler = start_service("scheduler")
    scheduler.wait_for_log(r"scheduler ready")
    run_id = new_id()
    await publish_event(js, subjects, heartbeat("ghost", "g1", [run_id]))
    # Nowhere to store the verdict's `run.finished` when ghost's silence runs out.
    await js.delete_stream(subjects.events_stream)
    scheduler.wait_for_log(r"trying again")
    assert scheduler.proc.poll() is None, scheduler.log()
    await ensure_streams(js, subjects)

    async def verdict() -> RunFinished | None:
        try:
            msg = await js.get_last_msg(subjects.events_stream, subjects.run_event(run_id, "finished"))
        except nats.js.errors.NotFoundError:
            return None
        event = decode_event(msg.data or b"")
        return event if isinstance(event, RunFinished) else None

    finished = await eventually(verdict, timeout=30, what="the verdict published once NATS takes it")
    assert finished is not None
    assert finished.status == "lost" and "ghost" in (finished.reason or "")
