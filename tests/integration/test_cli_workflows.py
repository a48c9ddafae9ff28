"""`scriptbus wf …`, run as a user runs it, against the real stack: seed 004's sample imported with
`wf create -f`, dumped and taken back by `wf update -f`, `wf1` followed live to its end, a failing
workflow, a workflow that runs forever stopped (and held off first), `status --format spad`, and the
project remembered by `select-project`."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.processes import ServiceProcess
from tests.helpers.seed004 import SEED_004_SAMPLE
from tests.helpers.stack import Stack, running_stack
from tests.helpers.waiting import eventually

SCRIPTBUS = [sys.executable, "-m", "scriptbus"]
# Seed 004's `simple` as a saved command: says when it starts and ends, and takes a moment ($1 tenths).
SIMPLE = 'echo "simple $1 start"; sleep "0.$1"; echo "simple $1 done"'


@pytest.fixture
async def stack(start_service: Callable[..., ServiceProcess]) -> AsyncIterator[Stack]:
    async with running_stack(start_service) as ready:
        response = await ready.client.post("/api/v1/commands", json={"name": "simple", "script": SIMPLE})
        assert response.status_code == 201, response.text
        yield ready


class Cli:
    """The `scriptbus` command with its own config dir (the selected project lives there)."""

    def __init__(self, api: str, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_") and k != "NO_COLOR"}
        self.env = {**env, "SCRIPTBUS_API": api, "PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": str(config)}

    async def spawn(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *SCRIPTBUS,
            *args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def __call__(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """Run `scriptbus ARGS…` to its end: (exit status, stdout, stderr)."""
        proc = await self.spawn(*args)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    def on_terminal(self, *args: str, timeout: float = 120) -> tuple[int, bytes]:
        """Run `scriptbus ARGS…` with a pseudo-terminal as stdin, stdout and stderr: (status, what it showed)."""
        master, slave = pty.openpty()
        proc = subprocess.Popen([*SCRIPTBUS, *args], stdin=slave, stdout=slave, stderr=slave, env=self.env)
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + timeout
        try:
            while select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the CLI has closed its end
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
        return proc.wait(max(0.1, deadline - time.monotonic())), seen

    async def ok(self, *args: str) -> str:
        code, out, err = await self(*args)
        assert code == 0, (args, code, out, err)
        return out


@pytest.fixture
def cli(stack: Stack, tmp_path: Path) -> Cli:
    return Cli(stack.api, tmp_path / "config")


def steps_of(out: str) -> dict[str, str]:
    """`wf status --format spad` as {task: seed-004 status}."""
    return dict(line.split(" ", 1) for line in out.splitlines())


async def test_seed_sample_created_round_tripped_and_wf1_followed_to_its_end(
    stack: Stack, cli: Cli, tmp_path: Path
) -> None:
    sample = tmp_path / "command_create.json"
    sample.write_text(SEED_004_SAMPLE)
    out = await cli.ok("wf", "create", "-f", str(sample))
    assert out == "created; project pr1: wf1 (t11, t12), wf2 (t21, t22)\n"

    dumped = await cli.ok("wf", "dump", "-p", "pr1")
    assert json.loads(dumped)["context"]["project"]["name"] == "pr1"
    (tmp_path / "pr1.json").write_text(dumped)
    await cli.ok("wf", "update", "-f", str(tmp_path / "pr1.json"))
    # Taken back unchanged: the same document, and no new version of either workflow.
    assert await cli.ok("wf", "dump", "-p", "pr1") == dumped
    for wf in ("wf1", "wf2"):
        assert (await stack.client.get(f"/api/v1/projects/pr1/workflows/{wf}")).json()["version"] == 1

    code, out, err = await cli("wf", "run", "-p", "pr1", "-w", "wf1", "--follow")
    assert code == 0, (out, err)
    # Both tasks' output, each line under its task's name, in each task's own order.
    lines = out.splitlines()
    assert [ln for ln in lines if ln.startswith("t11")] == ["t11 | simple 0 start", "t11 | simple 0 done"]
    assert [ln for ln in lines if ln.startswith("t12")] == ["t12 | simple 5 start", "t12 | simple 5 done"]
    # Off a terminal, the steps' changes are lines on stderr, then the final table.
    assert "scriptbus: t12: succeeded (success0)" in err
    assert re.search(r"\nt11\s+parallel\s+succeeded\s+success0\s+1\s+0\s", err), err

    # On a terminal the steps table stays under the output, redrawn in place, and ends as the run ended.
    code, seen = await asyncio.to_thread(cli.on_terminal, "wf", "run", "-p", "pr1", "-w", "wf1", "--follow")
    screen = seen.decode()
    assert code == 0, screen
    assert "t11 | simple 0 start\r\n" in screen and "t12 | simple 5 done\r\n" in screen
    last_table = re.sub(r"\x1b\[[0-9;]*m", "", screen.rsplit("\x1b[J", 1)[-1])  # without its colours
    assert re.search(r"pr1/wf1  run [0-9a-f]{8}  succeeded", last_table), screen
    assert re.search(r"t12\s+await\s+succeeded\s+success0", last_table), screen

    # `run` remembered pr1 (seed 004: a verb's project becomes the current one): no -p needed now.
    assert steps_of(await cli.ok("wf", "status", "-w", "wf1", "--format", "spad")) == {
        "t11": "success0",
        "t12": "success0",
    }
    await cli.ok("wf", "create", "-j", '{"context": {"project": {"name": "other", "workflows": []}}}')
    assert (await cli.ok("wf", "select-project")).strip() == "other"
    code, _, err = await cli("wf", "status", "-w", "wf1")
    assert code == 1 and err == "scriptbus: workflow: no workflow 'wf1' in project 'other'\n"
    out = await cli.ok("wf", "select-project", "pr1")
    assert out.startswith("project pr1 selected")
    assert steps_of(await cli.ok("wf", "status", "-w", "wf1", "-t", "t12", "--format", "spad")) == {"t12": "success0"}
    status = json.loads(await cli.ok("wf", "status", "-w", "wf1", "--format", "json"))
    assert status["status"] == "succeeded" and [s["name"] for s in status["steps"]] == ["t11", "t12"]
    listed = json.loads(await cli.ok("wf", "ps", "--all", "--json"))
    assert listed["total"] == 2 and listed["items"][0]["id"] == status["id"]
    assert {r["status"] for r in listed["items"]} == {"succeeded"}
    # -p always wins over the selection.
    wf2 = json.loads(await cli.ok("wf", "dump", "-p", "pr1", "-w", "wf2", "-t", "t22"))
    assert [t["function"] for w in wf2["context"]["project"]["workflows"] for t in w["tasks"]] == ["echo"]

    # delete: the leaves of the tree go; an emptied project goes only when it is the leaf.
    wf2_leaf = {"context": {"project": {"name": "pr1", "workflows": [{"name": "wf2"}]}}}
    assert await cli.ok("wf", "delete", "-j", json.dumps(wf2_leaf)) == "deleted; project pr1: wf1 (t11, t12)\n"
    other = await cli.ok("wf", "delete", "-j", '{"context": {"project": {"name": "other"}}}')
    assert other == "deleted; project other was left empty and is removed\n"

    code, _, err = await cli("wf", "select-project", "nope")
    assert code == 1 and err.startswith("scriptbus: no project 'nope'")


async def test_a_failing_workflow_exits_non_zero_and_its_errors_are_one_line(cli: Cli) -> None:
    doc = {
        "context": {
            "project": {
                "name": "prf",
                "workflows": [
                    {
                        "name": "bad",
                        "tasks": [
                            {
                                "name": "t1",
                                "place": 1,
                                "exec": "await",
                                "function": "bash",
                                "params": ["-c", "echo try; exit 1"],
                            },
                            {"name": "t2", "place": 2, "exec": "await", "function": "echo", "params": ["never"]},
                        ],
                    }
                ],
            }
        }
    }
    await cli.ok("wf", "create", "-j", json.dumps(doc))
    code, out, err = await cli("wf", "run", "-p", "prf", "-w", "bad", "--follow")
    assert code == 1, (out, err)
    # Restarted once, each attempt's output under its own label; the later step never ran.
    assert out == "t1 | try\nt1#2 | try\n"
    assert re.search(r"scriptbus: workflow run [0-9a-f]{8} failed \(step t1 failed\)\n$", err), err
    assert steps_of(await cli.ok("wf", "status", "-w", "bad", "--format", "spad")) == {
        "t1": "error(1)",
        "t2": "not run",
    }

    # A retry runs the failed step again (and fails again, as it must).
    failed_id = json.loads(await cli.ok("wf", "status", "-w", "bad", "--format", "json"))["id"]
    code, out, err = await cli("wf", "retry", failed_id[:8], "--follow")
    assert code == 1 and out == "t1 | try\nt1#2 | try\n", (out, err)
    assert f"retries {failed_id}" in err
    listed = json.loads(await cli.ok("wf", "ps", "--all", "-w", "bad", "--json"))["items"]
    assert [r["retry_of"] for r in listed] == [failed_id, None]

    # A 4xx is one line naming the field; bad JSON names where it breaks; options wrong: exit 2.
    code, out, err = await cli("wf", "create", "-j", json.dumps({"context": {"project": {"workflows": []}}}))
    assert code == 1 and out == "" and err.startswith("scriptbus: context.project.name: ") and err.count("\n") == 1
    code, _, err = await cli("wf", "update", "-j", "{oops")
    assert code == 2 and err.startswith("scriptbus: -j is not JSON: ") and "line 1 column 2" in err
    code, _, err = await cli("wf", "run", "-p", "prf", "-w", "nope")
    assert code == 1 and err == "scriptbus: no workflow 'nope' in project 'prf'\n"
    code, _, err = await cli("wf", "stop", "-w", "bad")
    assert code == 1 and err == "scriptbus: workflow prf/bad has no active run\n"


async def test_a_workflow_that_runs_forever_is_held_released_and_stopped(
    stack: Stack, cli: Cli, tmp_path: Path
) -> None:
    forever = {
        "name": "forever",
        "tasks": [
            {
                "name": "loop",
                "place": 1,
                "exec": "await",
                "function": "bash",
                "params": ["-c", "echo ready; exec sleep 100000"],
            }
        ],
    }
    doc = {"context": {"project": {"name": "pr2", "workflows": [forever]}}}
    await cli.ok("wf", "create", "-j", json.dumps(doc))
    follower = await cli.spawn("wf", "run", "-p", "pr2", "-w", "forever", "--follow")
    assert follower.stdout is not None and follower.stderr is not None
    line = await asyncio.wait_for(follower.stdout.readline(), 60)
    assert line == b"loop | ready\n"

    # Ctrl-C detaches a second follower and leaves the run alone.
    wfrun_id = json.loads(await cli.ok("wf", "status", "-w", "forever", "--format", "json"))["id"]
    second = await cli.spawn("wf", "follow", wfrun_id[:8])
    assert second.stdout is not None
    assert await asyncio.wait_for(second.stdout.readline(), 60) == b"loop | ready\n"
    second.send_signal(signal.SIGINT)
    _, detached = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 130 and b"detached; workflow run " + wfrun_id.encode() + b" goes on" in detached
    assert steps_of(await cli.ok("wf", "status", "-w", "forever", "--format", "spad")) == {"loop": "running"}

    # Running: an update is refused and says what runs; a second run names the active one.
    changed = json.loads(json.dumps(doc))
    changed["context"]["project"]["workflows"][0]["tasks"][0]["params"][1] = "echo changed"
    (tmp_path / "forever.json").write_text(json.dumps(changed))
    code, _, err = await cli("wf", "update", "-f", str(tmp_path / "forever.json"))
    assert code == 1 and re.fullmatch(r"scriptbus: .* running: forever \(run [0-9a-f-]{36}\); stop them first\n", err)
    code, _, err = await cli("wf", "run", "-w", "forever")
    assert code == 1 and "already has an active run" in err

    # seed 004's `waiting` (set_status): the step shows it while held, and `running` lets go.
    await cli.ok("wf", "set_status", "-w", "forever", "-t", "loop", "waiting")

    async def spad_is(wanted: str) -> bool:
        return steps_of(await cli.ok("wf", "status", "-w", "forever", "--format", "spad")) == {"loop": wanted}

    await eventually(lambda: spad_is("waiting"), timeout=60, what="the held step shown as waiting")
    await cli.ok("wf", "set-status", "-w", "forever", "-t", "loop", "running")
    await eventually(lambda: spad_is("running"), timeout=60, what="the released step shown as running")

    assert "stopping workflow run" in await cli.ok("wf", "stop", "-w", "forever")
    followed, ended = await asyncio.wait_for(follower.communicate(), 60)
    # Ended on request: not a success, not a failure.
    assert follower.returncode == 3, (followed, ended)
    assert re.search(rb"scriptbus: workflow run [0-9a-f]{8} stopped\n$", ended), ended
    assert steps_of(await cli.ok("wf", "status", "-w", "forever", "--format", "spad")) == {"loop": "stopped"}

    # `stop --wait` of a fresh forever run, by workflow name alone (seed 004's `stop -w`).
    await cli.ok("wf", "run", "-p", "pr2", "-w", "forever")

    async def started() -> bool:
        run = json.loads(await cli.ok("wf", "status", "-w", "forever", "--format", "json"))
        return bool(run["steps"][0]["status"] == "running")

    await eventually(started, timeout=60, what="the second run's step running")
    out = await cli.ok("wf", "stop", "-w", "forever", "--wait")
    assert re.search(r"workflow run [0-9a-f]{8} stopped\nloop stopped\n$", out), out


async def test_a_hold_from_set_status_defers_the_stop_until_released(cli: Cli) -> None:
    forever = {"name": "f", "tasks": [{"name": "loop", "place": 1, "function": "sleep", "params": ["100000"]}]}
    await cli.ok("wf", "create", "-j", json.dumps({"context": {"project": {"name": "pr3", "workflows": [forever]}}}))
    await cli.ok("wf", "run", "-w", "f")

    async def spad() -> dict[str, Any]:
        run: dict[str, Any] = json.loads(await cli.ok("wf", "status", "-w", "f", "--format", "json"))
        return run

    await eventually(lambda: _first_step(spad, "running"), timeout=60, what="the step running")
    await cli.ok("wf", "set-status", "-w", "f", "-t", "loop", "waiting")
    await eventually(lambda: _first_step(spad, "waiting"), timeout=60, what="the step held")
    await cli.ok("wf", "stop", "-w", "f")

    async def settled() -> dict[str, Any] | None:
        run = await spad()
        deferred = run["status"] == "stopping" and run["steps"][0]["spad_status"] == "waiting"
        return run if deferred or run["status"] in ("stopped", "killed") else None

    assert (await eventually(settled, timeout=60, what="the stop deferred or done"))["status"] == "stopping"
    await cli.ok("wf", "set-status", "-w", "f", "-t", "loop", "running")
    await eventually(lambda: _first_step(spad, "stopped"), timeout=60, what="the step stopped once released")


async def _first_step(get: Callable[[], Awaitable[dict[str, Any]]], spad_status: str) -> bool:
    return bool((await get())["steps"][0]["spad_status"] == spad_status)
