"""The executor across a NATS restart: a run that is printing keeps every byte, in order, and still
finishes. Uses its own nats-server (the session's one must not be restarted under other tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from scriptbus.embedded import EmbeddedNats
from scriptbus.events import OutputStream, RunStarted, RunStatus, Subjects, ensure_streams
from tests.helpers.executor import assert_output_consistent, request_run, start_executor, wait_run
from tests.helpers.processes import StartService, group_alive


async def test_output_survives_a_nats_restart(tmp_path: Path, prefix: str, start_service: StartService) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream(timeout=10)
        s = Subjects(prefix)
        await ensure_streams(js, s)
        executor = await start_executor(start_service, env={"SCRIPTBUS_NATS_URL": server.url})

        request = await request_run(js, s, "for i in $(seq 1 60); do echo line $i; sleep 0.05; done")
        first = await js.subscribe(s.run_output(request.run_id), ordered_consumer=True)
        await first.next_msg(timeout=30)
        await first.unsubscribe()

        await asyncio.to_thread(server.stop)
        await asyncio.sleep(1.0)  # the script keeps printing into the executor meanwhile
        await asyncio.to_thread(server.start)

        record = await wait_run(js, s, request.run_id, timeout=90)
        assert record.finished.status == RunStatus.SUCCEEDED
        expected = "".join(f"line {i}\n" for i in range(1, 61)).encode()
        assert record.output(OutputStream.STDOUT) == expected
        assert_output_consistent(record)

        # SIGTERM while NATS is gone: the run is still stopped and the executor still exits, cleanly.
        sleeper = await request_run(js, s, "sleep 1000", stop_grace_s=1)
        started = (await wait_run(js, s, sleeper.run_id, until=RunStarted)).started
        await nc.close()
        await asyncio.to_thread(server.stop)
        executor.terminate()
        assert await asyncio.to_thread(executor.wait, 60) == 0
        assert group_alive(started.pid) == []
        assert "giving up on unpublished output and finishes" in executor.log()
    finally:
        await asyncio.to_thread(server.stop)
