"""Ad-hoc runs end to end: REST in, bash on an executor, output live on NATS and stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections import Counter
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from scriptbus.events import Subjects, decode_event
from tests.helpers.api import TERMINAL, start_run, wait_for_status
from tests.helpers.stack import MakeStack, Stack
from tests.helpers.waiting import eventually


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group; zombies are dead already, whatever `kill(pgid, 0)` says."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


async def test_a_run_shows_growing_output_live_then_succeeds(stack: Stack, nats_url: str, prefix: str) -> None:
    nc = await nats.connect(nats_url)
    live: list[tuple[float, bytes]] = []

    async def on_output(msg: Msg) -> None:
        live.append((asyncio.get_running_loop().time(), msg.data))

    # What `nats sub '<prefix>.runs.*.out'` sees: plain text, as it is printed.
    await nc.subscribe(Subjects(prefix).all_output, cb=on_output)
    run = await start_run(stack.client, "for i in $(seq 1 5); do echo $i; sleep 1; done")
    running = await wait_for_status(stack.client, run["id"], "running", timeout=15)
    assert running["pid"] > 0 and running["host"] == "local"

    outputs = []
    while True:
        current = (await stack.client.get(f"/api/v1/runs/{run['id']}")).json()
        outputs.append(current["output"])
        if current["status"] in TERMINAL:
            break
        await asyncio.sleep(0.3)
    assert current["status"] == "succeeded" and current["exit_code"] == 0
    assert current["output"] == "1\n2\n3\n4\n5\n"
    growing = [o for o in outputs if o and o != current["output"]]
    assert growing, "output was never seen growing while the run ran"
    assert all(current["output"].startswith(o) for o in growing)

    await nc.flush()
    await nc.close()
    assert b"".join(data for _, data in live) == b"1\n2\n3\n4\n5\n"
    # Lines arrive as they are printed, about a second apart, not all at the end.
    assert live[-1][0] - live[0][0] > 3.0


async def test_non_utf8_bytes_and_both_streams_survive(stack: Stack) -> None:
    run = await start_run(stack.client, r"printf 'out\xff\xfe\n'; printf 'err\x80\n' >&2; exit 3")
    done = await wait_for_status(stack.client, run["id"], TERMINAL)
    assert done["status"] == "failed" and done["exit_code"] == 3
    stdout = await stack.client.get(f"/api/v1/runs/{run['id']}/output", params={"stream": "stdout"})
    stderr = await stack.client.get(f"/api/v1/runs/{run['id']}/output", params={"stream": "stderr"})
    assert stdout.content == b"out\xff\xfe\n"
    assert stderr.content == b"err\x80\n"
    both = (await stack.client.get(f"/api/v1/runs/{run['id']}/output")).content
    # The combined output holds both, each whole, in the order they were read.
    assert both in (stdout.content + stderr.content, stderr.content + stdout.content)


async def test_stop_kills_the_whole_process_group(stack: Stack) -> None:
    run = await start_run(stack.client, "sleep 1000 & sleep 1000; wait", stop_grace_s=2)
    running = await wait_for_status(stack.client, run["id"], "running")
    pgid = running["pid"]
    assert len(group_members(pgid)) == 3  # bash and its two sleeps
    response = await stack.client.post(f"/api/v1/runs/{run['id']}/stop")
    assert response.status_code == 202, response.text
    done = await wait_for_status(stack.client, run["id"], TERMINAL, timeout=15)
    assert done["status"] in ("stopped", "killed")
    assert group_members(pgid) == [], "a process of the run's group survived the stop"
    again = await stack.client.post(f"/api/v1/runs/{run['id']}/stop")
    assert again.status_code == 409


async def test_a_run_stopped_while_queued_never_starts(
    make_stack: MakeStack,
    nats_url: str,
    prefix: str,
) -> None:
    stack = await make_stack(executors=[])
    run = await start_run(stack.client, "touch started; echo started", pool="later")
    assert (await stack.client.post(f"/api/v1/runs/{run['id']}/stop")).status_code == 202
    cancelled = await wait_for_status(stack.client, run["id"], "cancelled")
    assert cancelled["started_at"] is None
    # An executor for that pool comes up afterwards: the run must stay cancelled, never started.
    stack.add_executor("--host", "late", "--pool", "later")
    probe = await start_run(stack.client, "echo probe", pool="later")
    await wait_for_status(stack.client, probe["id"], "succeeded", timeout=30)
    assert (await stack.client.get(f"/api/v1/runs/{run['id']}")).json()["status"] == "cancelled"
    events = await _run_event_types(nats_url, prefix, run["id"])
    assert "run.started" not in events


async def test_many_concurrent_runs_all_finish_with_their_output(stack: Stack) -> None:
    runs = await asyncio.gather(
        *(start_run(stack.client, f"echo run-{i}; sleep 0.2; echo done-{i}") for i in range(100))
    )
    for i, run in enumerate(runs):
        done = await wait_for_status(stack.client, run["id"], TERMINAL, timeout=60)
        assert done["status"] == "succeeded", done
        assert done["output"] == f"run-{i}\ndone-{i}\n"


async def test_runs_of_a_pool_start_exactly_once_across_two_executors(
    make_stack: MakeStack,
    nats_url: str,
    prefix: str,
) -> None:
    stack = await make_stack(executors=[["--host", "a"], ["--host", "b"]])
    runs = await asyncio.gather(*(start_run(stack.client, "echo $RANDOM") for _ in range(200)))
    hosts: Counter[str] = Counter()
    for run in runs:
        done = await wait_for_status(stack.client, run["id"], TERMINAL, timeout=90)
        assert done["status"] == "succeeded", done
        hosts[done["host"]] += 1
    assert set(hosts) == {"a", "b"}, f"both executors should have worked: {hosts}"
    started = await _count_events(nats_url, prefix, "run.started")
    assert started == {run["id"]: 1 for run in runs}


async def test_recorder_killed_during_large_output_loses_and_duplicates_nothing(stack: Stack) -> None:
    # ~20 MB of deterministic text, checked against the same bytes made here.
    script = "seq 1 2700000"
    expected = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert len(expected) > 19_000_000
    run = await start_run(stack.client, script)
    await wait_for_status(stack.client, run["id"], {"running", *TERMINAL})
    recorder = stack.services["recorder"]
    for _ in range(3):
        await asyncio.sleep(0.4)
        recorder.kill()
        recorder = stack.start_service("recorder")
    stack.services["recorder"] = recorder
    done = await wait_for_status(stack.client, run["id"], TERMINAL, timeout=120)
    assert done["status"] == "succeeded"
    # Wait until the projection holds every byte the executor published.

    async def all_projected() -> bool:
        current = (await stack.client.get(f"/api/v1/runs/{run['id']}")).json()
        return bool(current["output_bytes"] >= len(expected))

    await eventually(all_projected, 60, interval=0.1, what="every byte projected")
    stored = (await stack.client.get(f"/api/v1/runs/{run['id']}/output")).content
    assert len(stored) == len(expected)
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(expected).hexdigest()


async def test_lost_executor_ends_its_runs_as_lost(stack: Stack, work_dir: Path) -> None:
    run = await start_run(stack.client, "sleep 1000")
    await wait_for_status(stack.client, run["id"], "running")
    stack.executors[0].kill()  # SIGKILL: no goodbye, heartbeats just stop
    lost = await wait_for_status(stack.client, run["id"], "lost", timeout=20)
    assert "local" in lost["reason"]


async def test_delete_forgets_a_finished_run(stack: Stack) -> None:
    running = await start_run(stack.client, "sleep 30", stop_grace_s=0)
    await wait_for_status(stack.client, running["id"], "running")
    assert (await stack.client.delete(f"/api/v1/runs/{running['id']}")).status_code == 409
    await stack.client.post(f"/api/v1/runs/{running['id']}/stop")
    await wait_for_status(stack.client, running["id"], TERMINAL)
    assert (await stack.client.delete(f"/api/v1/runs/{running['id']}")).status_code == 204
    assert (await stack.client.get(f"/api/v1/runs/{running['id']}")).status_code == 404


async def _events(nats_url: str, prefix: str, subject: str) -> list[tuple[str, str]]:
    """(type, run_id) of every event stored under `subject`, read straight from the stream."""
    s = Subjects(prefix)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    found: list[tuple[str, str]] = []
    sub = await js.subscribe(subject, stream=s.events_stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=3)
            except TimeoutError:
                break  # nothing (more) under this subject
            event = decode_event(msg.data) if not msg.subject.endswith(".out") else None
            if event is not None:
                found.append((event.type, getattr(event, "run_id", "")))
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    await nc.close()
    return found


async def _run_event_types(nats_url: str, prefix: str, run_id: str) -> list[str]:
    return [t for t, _ in await _events(nats_url, prefix, Subjects(prefix).run_all(run_id)) if t]


async def _count_events(nats_url: str, prefix: str, event_type: str) -> dict[str, int]:
    name = event_type.removeprefix("run.")
    events = await _events(nats_url, prefix, f"{prefix}.runs.*.{name}")
    return dict(Counter(run_id for t, run_id in events if t == event_type))
