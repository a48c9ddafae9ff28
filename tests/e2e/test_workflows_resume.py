"""A power cut under `scriptbus up` in the middle of a workflow run: every process of `up` SIGKILLed at
once, then `up` again on the same data dir. The run carries on from where it was."""

from __future__ import annotations

import os
import random
import signal
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from scriptbus.embedded import free_port
from tests.helpers.api import wait_until_ready
from tests.helpers.processes import DAEMONIZING_SCRIPT, descendants, kill_processes_under, processes_with
from tests.helpers.up import up
from tests.helpers.waiting import eventually
from tests.helpers.wfapi import get_wfrun, put_workflow, start_wfrun, steps_of, wait_wfrun_ended

BACKOFF_S = 40.0


def power_cut(root: int) -> None:
    """SIGSTOP `root` and every process below it until no new one appears (nothing forks or restarts
    meanwhile), then SIGKILL them all: everything goes at the same instant, as when the power goes."""
    frozen: set[int] = set()
    while True:
        found = ({root} | descendants(root)) - frozen
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        frozen |= found
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def test_power_cut_during_a_workflow_run_resumes_it_on_the_next_up(tmp_path: Path, exchange_dir: Path) -> None:
    # Not under tmp_path: PostgreSQL runs as its own user, and a pytest starting meanwhile makes its base
    # temp folder private again, so a start there could not reach its data dir.
    scratch = tempfile.TemporaryDirectory(prefix="scriptbus-e2e-")
    data_dir = Path(scratch.name) / "data"
    marks = exchange_dir
    port = free_port()
    marker = f"1000.{random.randrange(10**8):08d}"
    # The step that runs across the power cut: it refuses to start while any process of an older attempt
    # lives (pgrep does not see itself, and the script's text holds `$M`, not its value), leaves processes
    # that escape its process group and session, then works for a while.
    overlap_check = 'if pgrep -f -- "$M" >/dev/null; then echo "an older attempt still runs" >&2; exit 3; fi; '
    tasks = [
        {"name": "first", "place": 1, "exec": "await", "script": "echo first"},
        # Fails at once, then waits BACKOFF_S to retry: across the power cut.
        {
            "name": "flaky",
            "place": 2,
            "exec": "parallel",
            "script": 'f="$MARKS/flaky"; [ -e "$f" ] && exit 0; touch "$f"; exit 1',
            "env": {"MARKS": str(marks)},
            "retry_backoff_s": BACKOFF_S,
        },
        {
            "name": "second",
            "place": 3,
            "exec": "await",
            "script": overlap_check + DAEMONIZING_SCRIPT + "sleep 20; echo done",
            "env": {"M": marker},
            "retries": 0,
        },
    ]
    base = f"http://127.0.0.1:{port}"
    first_up = up(data_dir, port, tmp_path / "up-1.log")
    try:
        first_up.wait_for_log(r"scriptbus is up", timeout=120)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await put_workflow(client, "pr1", "wf1", tasks)
            wfrun_id = (await start_wfrun(client, "pr1", "wf1"))["id"]

            async def mid_run() -> dict[str, dict[str, Any]]:
                steps = steps_of(await get_wfrun(client, wfrun_id))
                # The retry's time is a decision of its own, projected just after the ending that asked for it.
                seen = (
                    {name: step["status"] for name, step in steps.items()},
                    steps["flaky"]["next_retry_at"] is not None,
                    len(processes_with(marker)) >= 3,
                )
                assert seen == ({"first": "succeeded", "flaky": "retrying", "second": "running"}, True, True), seen
                return steps

            before = await eventually(mid_run, 60, what="first done, flaky waiting to retry, second running")
            retry_at = datetime.fromisoformat(str(before["flaky"]["next_retry_at"]))
            # Cut when the retry is well into its backoff, so that a timer re-armed from the restart (the
            # bug this guards against) would fire clearly later than the original one.
            await eventually(
                lambda: time.time() >= retry_at.timestamp() - BACKOFF_S + 10, 30, interval=0.2, what="10 s of backoff"
            )
            assert steps_of(await get_wfrun(client, wfrun_id))["second"]["status"] == "running"
        # Started again at once: some of the killed may still be zombies that init has not reaped yet (the
        # postmaster's pid in its lock file among them), and `up` copes.
        power_cut(first_up.pid)
        assert first_up.wait(10) == -signal.SIGKILL
    finally:
        first_up.close()

    restarted_at = time.time()
    second_up = up(data_dir, port, tmp_path / "up-2.log")
    try:
        second_up.wait_for_log(r"scriptbus is up", timeout=120)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await wait_until_ready(client)
            end = await wait_wfrun_ended(client, wfrun_id, timeout=180)
            assert end["status"] == "succeeded", end
            steps = steps_of(end)

            # The step that had succeeded stays done: same run, attempt 1, not run again.
            assert steps["first"]["status"] == "succeeded"
            assert steps["first"]["attempt"] == 1
            assert steps["first"]["run_id"] == before["first"]["run_id"]
            assert [a["status"] for a in steps["first"]["attempts"]] == ["succeeded"]

            # The step that was running ends `lost` and is restarted as attempt 2, which found no process of
            # attempt 1 alive when it started (or it would have exited 3 and failed the run).
            second = steps["second"]
            assert [(a["attempt"], a["status"]) for a in second["attempts"]] == [(1, "lost"), (2, "succeeded")]
            assert second["attempts"][0]["run_id"] == before["second"]["run_id"]
            assert second["status"] == "succeeded" and second["attempt"] == 2
            run = (await client.get(f"/api/v1/runs/{second['run_id']}")).json()
            assert run["output"] == "done\n", run

            # The retry waiting across the power cut fired at its original time: not before it, and sooner
            # than a backoff counted again from the restart would allow.
            flaky = steps["flaky"]
            assert [(a["attempt"], a["status"]) for a in flaky["attempts"]] == [(1, "failed"), (2, "succeeded")]
            retry = (await client.get(f"/api/v1/runs/{flaky['run_id']}")).json()
            requested = datetime.fromisoformat(retry["created_at"])
            assert requested >= retry_at, (requested, retry_at)
            assert requested.timestamp() < restarted_at + BACKOFF_S, (requested, retry_at, restarted_at)
            assert requested - retry_at < timedelta(seconds=BACKOFF_S - 10)

            await eventually(lambda: processes_with(marker) == [], 30, what="no process of the step left")
    finally:
        second_up.close(grace=60)
        kill_processes_under(data_dir / "runs")
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
        scratch.cleanup()
