"""The executor as a real process on real NATS: requests published as the gateway would, results read
back from the event stream the way the recorder and users see them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import DeliverPolicy

from scriptbus.events import (
    CANCELLED_CLAIM,
    Event,
    ExecutorHeartbeat,
    ExecutorStopped,
    OutputStream,
    RunFinished,
    RunRequested,
    RunStarted,
    RunStatus,
    RunStopRequested,
    claims_bucket,
    decode_event,
    ensure_queue,
    new_id,
    publish_event,
)
from tests.helpers.executor import (
    assert_output_consistent,
    follow,
    request_run,
    start_executor,
    wait_run,
    wait_runs,
)
from tests.helpers.processes import StartService, group_alive
from tests.helpers.servers import Bus


async def test_output_and_failure_status(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    script = "echo hello; echo oops >&2; printf '\\xff\\xfe'; sleep 0.1; echo done; exit 3"
    request = await request_run(js, s, script)
    record = await wait_run(js, s, request.run_id)

    assert record.started.host and record.started.pid > 0
    assert record.output(OutputStream.STDOUT) == b"hello\n\xff\xfedone\n"
    assert record.output(OutputStream.STDERR) == b"oops\n"
    finished = record.finished
    assert finished.status == RunStatus.FAILED
    assert finished.exit_code == 3 and finished.signal is None
    assert finished.host == record.started.host
    assert finished.duration_s is not None and finished.duration_s >= 0.1
    assert not finished.output_truncated
    assert_output_consistent(record)
    assert [t for kind, t in record.order if kind == "event"] == [
        "run.requested",
        "run.started",
        "run.finished",
    ]


async def test_args_and_clean_env(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service, env={"EXECUTOR_SECRET": "hunter2"})
    script = 'printf "[%s]" "$@"; printf "\\n$#\\n"; env; pwd'
    request = await request_run(js, s, script, args=["a b", "*", "$HOME"], env={"GREETING": "hi there"})
    record = await wait_run(js, s, request.run_id)

    assert record.finished.status == RunStatus.SUCCEEDED
    assert record.finished.exit_code == 0
    lines = record.output().decode().splitlines()
    assert lines[0] == "[a b][*][$HOME]"
    assert lines[1] == "3"
    env = dict(line.split("=", 1) for line in lines[2:-1] if "=" in line)
    assert env["GREETING"] == "hi there"
    assert env["PATH"] and env["HOME"] and env["LANG"]
    leaked = [k for k in env if k.startswith(("SCRIPTBUS_", "__scriptbus")) or k in ("EXECUTOR_SECRET", "LC_ALL")]
    assert leaked == []
    # Its own fresh working directory, named for the run and removed afterwards.
    assert lines[-1].endswith("/" + request.run_id)
    assert not os.path.exists(lines[-1])


async def test_the_script_runs_in_its_locale(bus: Bus, start_service: StartService) -> None:
    """bash runs the script in LANG (UTF-8 by default: a character is a character), or in the run's own
    LC_ALL when it sets one; the executor's start-up shortcuts never show."""
    _nc, js, s = bus
    await start_executor(start_service)
    script = 'x="é€"; echo "${#x} ${LC_ALL-unset}"'
    default = await request_run(js, s, script)
    own = await request_run(js, s, script, env={"LC_ALL": "C"})
    # A run naming the executor's marker does not get its own LC_ALL taken away.
    marked = await request_run(js, s, script, env={"LC_ALL": "C", "__scriptbus_lc_all": "1"})
    assert (await wait_run(js, s, default.run_id)).output() == b"2 unset\n"
    assert (await wait_run(js, s, own.run_id)).output() == b"5 C\n"  # bytes, in the C locale
    assert (await wait_run(js, s, marked.run_id)).output() == b"5 C\n"


async def test_partial_line_is_live(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    request = await request_run(js, s, "printf 'waiting...'; sleep 30; echo never")
    sub = await follow(js, s.run_output(request.run_id))
    msg = await sub.next_msg(timeout=30)
    assert msg.data == b"waiting..."  # no newline yet: flushed on the timer, while the script sleeps
    await sub.unsubscribe()
    await publish_event(js, s, RunStopRequested(run_id=request.run_id))
    record = await wait_run(js, s, request.run_id)
    assert record.finished.status == RunStatus.STOPPED
    assert record.output() == b"waiting..."


async def test_stop_kills_the_whole_process_tree(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    request = await request_run(js, s, "sleep 1000 & sleep 1000; wait", stop_grace_s=10)
    started = (await wait_run(js, s, request.run_id, until=RunStarted)).started
    await asyncio.sleep(0.2)  # let bash fork both sleeps
    assert len(group_alive(started.pid)) >= 2

    await publish_event(js, s, RunStopRequested(run_id=request.run_id, reason="enough"))
    finished = (await wait_run(js, s, request.run_id)).finished
    assert finished.status == RunStatus.STOPPED
    assert finished.signal == 15
    assert finished.reason == "enough"
    assert finished.survivors == []
    assert group_alive(started.pid) == []


async def test_stop_escalates_to_kill(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    # Ignored TERM is inherited by the children: only KILL ends any of them.
    request = await request_run(js, s, "trap '' TERM; sleep 1000 & sleep 1000; wait", stop_grace_s=0.5)
    started = (await wait_run(js, s, request.run_id, until=RunStarted)).started
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    await publish_event(js, s, RunStopRequested(run_id=request.run_id))
    finished = (await wait_run(js, s, request.run_id)).finished
    assert time.monotonic() - t0 >= 0.5
    assert finished.status == RunStatus.KILLED
    assert finished.signal == 9
    assert group_alive(started.pid) == []


async def test_background_leftovers_die_and_do_not_block_the_finish(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    # One leftover in the group (killed), one that left the group and keeps stdout open (not waited for).
    request = await request_run(js, s, "sleep 1000 & setsid sleep 20 & echo done")
    t0 = time.monotonic()
    record = await wait_run(js, s, request.run_id)
    assert time.monotonic() - t0 < 10
    assert record.finished.status == RunStatus.SUCCEEDED
    assert record.output() == b"done\n"
    assert group_alive(record.started.pid) == []


async def test_timeout(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    request = await request_run(js, s, "echo start; sleep 1000", timeout_s=1.0, stop_grace_s=2)
    record = await wait_run(js, s, request.run_id)
    finished = record.finished
    assert finished.status == RunStatus.TIMED_OUT
    assert finished.signal == 15
    assert finished.duration_s is not None and 1.0 <= finished.duration_s < 5
    assert record.output() == b"start\n"
    assert group_alive(record.started.pid) == []


async def test_terminated_by_a_foreign_signal(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    request = await request_run(js, s, "kill -USR1 $$; sleep 5")
    finished = (await wait_run(js, s, request.run_id)).finished
    assert finished.status == RunStatus.TERMINATED
    assert finished.signal == 10 and finished.exit_code is None


async def test_stop_before_start_via_claim_never_starts(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service, "--max-concurrency", "1")
    # What the gateway does on stop-before-start: it wins the claim, so no executor ever will.
    run_id = new_id()
    kv = await claims_bucket(js, s)
    await kv.create(run_id, CANCELLED_CLAIM)
    await ensure_queue(js, s, "default")
    ack = await publish_event(js, s, RunRequested(run_id=run_id, script="echo must not run"))
    # A later run on the same queue finishing means the executor has taken the cancelled one by then.
    later = await request_run(js, s, "echo later")
    assert (await wait_run(js, s, later.run_id)).finished.status == RunStatus.SUCCEEDED

    info = await js.consumer_info(s.events_stream, s.queue_consumer("default"))
    assert info.ack_floor.stream_seq >= ack.seq and info.num_ack_pending == 0
    try:
        await js.get_last_msg(s.events_stream, f"{s.prefix}.runs.{run_id}.started")
        raise AssertionError("the cancelled run was started")
    except nats.js.errors.NotFoundError:
        pass
    # The executor publishes nothing at all about it: the gateway reports the cancellation.
    sub = await follow(js, s.run_all(run_id))
    first = await sub.next_msg(timeout=5)
    assert first.subject.endswith(".requested.default")
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.5)
    await sub.unsubscribe()


async def test_stop_stored_before_the_claim_cancels(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    # A stop already in the stream (its core message missed) must keep the run from starting.
    run_id = new_id()
    await publish_event(js, s, RunStopRequested(run_id=run_id, reason="changed my mind"))
    await ensure_queue(js, s, "default")
    await publish_event(js, s, RunRequested(run_id=run_id, script="echo should not run"))
    record = await wait_run(js, s, run_id)
    assert record.finished.status == RunStatus.CANCELLED
    assert record.finished.reason == "changed my mind"
    assert record.of(RunStarted) == [] and record.chunks == []


async def test_host_target_and_heartbeat(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(
        start_service, "--host", "box-1", "--pool", "gpu", "--label", "zone=eu", "--max-concurrency", "7"
    )
    request = await request_run(js, s, "echo on box", host="box-1", pool="elsewhere")
    record = await wait_run(js, s, request.run_id)
    assert record.started.host == "box-1" and record.finished.status == RunStatus.SUCCEEDED
    pooled = await request_run(js, s, "echo on gpu", pool="gpu")
    assert (await wait_run(js, s, pooled.run_id)).finished.host == "box-1"

    raw = await js.get_last_msg(s.executors_stream, s.executor_event("box-1", "heartbeat"))
    assert raw.data is not None
    beat = decode_event(raw.data)
    assert isinstance(beat, ExecutorHeartbeat)
    assert beat.pools == ["gpu", "box-1"]
    assert beat.labels == {"zone": "eu"}
    assert beat.capacity == 7 and beat.interval_s == 0.5 and not beat.draining
    assert beat.executor_id == record.started.executor_id
    # Beats keep coming at the configured interval.
    sub = await js.subscribe(s.executor_event("box-1", "heartbeat"), deliver_policy=DeliverPolicy.NEW)
    t0 = time.monotonic()
    await sub.next_msg(timeout=5)
    await sub.next_msg(timeout=5)
    assert time.monotonic() - t0 < 3
    await sub.unsubscribe()


async def test_max_concurrency_across_targets(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service, "--host", "small", "--max-concurrency", "3")
    requests = [await request_run(js, s, "sleep 0.4", pool="default") for _ in range(6)]
    requests += [await request_run(js, s, "sleep 0.4", host="small") for _ in range(6)]
    records = await wait_runs(js, s, {r.run_id for r in requests})
    assert all(r.finished.status == RunStatus.SUCCEEDED for r in records.values())

    # Replay the stream: between its started and its finished a run holds a slot.
    running = peak = 0
    sub = await follow(js, f"{s.prefix}.runs.*.*")
    seen = 0
    while seen < 2 * len(requests):
        event = decode_event((await sub.next_msg(timeout=10)).data)
        if isinstance(event, RunStarted):
            running += 1
            seen += 1
        elif isinstance(event, RunFinished):
            running -= 1
            seen += 1
        peak = max(peak, running)
    await sub.unsubscribe()
    assert peak == 3


async def test_two_executors_start_each_run_exactly_once(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await asyncio.gather(
        start_executor(start_service, "--host", "a", "--pool", "shared"),
        start_executor(start_service, "--host", "b", "--pool", "shared"),
    )
    await ensure_queue(js, s, "shared")
    requests = [
        RunRequested(run_id=new_id(), script='sleep 0.05; echo "$1"', args=[str(i)], pool="shared") for i in range(200)
    ]
    await asyncio.gather(*(publish_event(js, s, r) for r in requests))
    records = await wait_runs(js, s, {r.run_id for r in requests}, timeout=150)

    starts = Counter(run_id for run_id, rec in records.items() for _ in rec.of(RunStarted))
    assert set(starts.values()) == {1} and len(starts) == 200
    for request in requests:
        record = records[request.run_id]
        assert len(record.of(RunFinished)) == 1
        assert record.finished.status == RunStatus.SUCCEEDED
        assert record.output() == f"{request.args[0]}\n".encode()
    hosts = Counter(rec.started.host for rec in records.values())
    assert set(hosts) == {"a", "b"}, hosts


async def test_large_output_streams_every_byte(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service)
    # About 20 MB of distinct lines, so order and completeness can be checked byte for byte.
    request = await request_run(js, s, "seq 1 2700000; echo tail >&2")
    expected = "".join(f"{i}\n" for i in range(1, 2700001)).encode()
    record = await wait_run(js, s, request.run_id, timeout=150)
    assert record.finished.status == RunStatus.SUCCEEDED
    stdout = record.output(OutputStream.STDOUT)
    assert len(stdout) == len(expected)
    assert hashlib.sha256(stdout).digest() == hashlib.sha256(expected).digest()
    assert record.output(OutputStream.STDERR) == b"tail\n"
    assert_output_consistent(record)


async def test_output_past_the_cap_is_dropped_and_reported(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    await start_executor(start_service, env={"SCRIPTBUS_MAX_OUTPUT_BYTES": "1000"})
    request = await request_run(js, s, "head -c 5000 /dev/zero | tr '\\0' x; echo; echo after >&2")
    record = await wait_run(js, s, request.run_id)
    finished = record.finished
    assert finished.status == RunStatus.SUCCEEDED
    assert finished.output_bytes == 1000 and len(record.output()) == 1000
    assert finished.output_truncated and finished.dropped_bytes == 5000 + 1 + 6 - 1000
    assert record.output() == b"x" * 1000


async def test_sigterm_stops_runs_and_reports_them(bus: Bus, start_service: StartService) -> None:
    _nc, js, s = bus
    executor = await start_executor(start_service, "--host", "leaving")
    polite = await request_run(js, s, "sleep 1000", stop_grace_s=5)
    stubborn = await request_run(js, s, "trap '' TERM; sleep 1000", stop_grace_s=0.5)
    pids = [(await wait_run(js, s, r.run_id, until=RunStarted)).started.pid for r in (polite, stubborn)]
    beats = await js.subscribe(s.executor_event("leaving", "*"), deliver_policy=DeliverPolicy.NEW)

    executor.terminate()
    assert await asyncio.to_thread(executor.wait, 30) == 0

    finished = {r.run_id: (await wait_run(js, s, r.run_id)).finished for r in (polite, stubborn)}
    assert finished[polite.run_id].status == RunStatus.STOPPED
    assert finished[stubborn.run_id].status == RunStatus.KILLED
    assert all(f.reason == "executor shutting down" for f in finished.values())
    assert all(group_alive(pid) == [] for pid in pids)

    events: list[Event | None] = []
    while not any(isinstance(e, ExecutorStopped) for e in events):
        events.append(decode_event((await beats.next_msg(timeout=10)).data))
    await beats.unsubscribe()
    assert any(isinstance(e, ExecutorHeartbeat) and e.draining for e in events)
    assert isinstance(events[-1], ExecutorStopped)
