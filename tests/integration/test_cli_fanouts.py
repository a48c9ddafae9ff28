"""`scriptbus run --all` and `scriptbus fanouts`, run as a user runs them, over three executors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.fanouts import EXECUTORS, cli, fleet_online
from tests.helpers.processes import StartService
from tests.helpers.stack import Stack, running_stack

SECOND_FAILS = 'n=$(ls "$MARKS" | wc -l); touch "$MARKS/$(date +%s%N)"; echo "out $n"; echo "err $n" >&2; [ "$n" != 1 ]'


@pytest.fixture
async def fleet(start_service: StartService) -> AsyncIterator[Stack]:
    async with running_stack(start_service, EXECUTORS) as stack:
        await fleet_online(stack.client)
        yield stack


async def test_run_all_prefixes_each_hosts_lines_prints_a_summary_and_fails_when_a_host_failed(
    fleet: Stack, exchange_dir: Path
) -> None:
    code, out, err = await cli(
        fleet.api, "run", "--all", "--max-parallel", "1", "-e", f"MARKS={exchange_dir}", SECOND_FAILS
    )
    assert code == 1, (out, err)
    assert [line for line in out.splitlines() if "|" in line] == ["fo-a | out 0", "fo-b | out 1", "fo-c | out 2"]
    assert [line for line in err.splitlines() if "|" in line] == ["fo-a | err 0", "fo-b | err 1", "fo-c | err 2"]
    summary = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if "|" not in line]
    assert re.match(r"fan-out \S+: failed \(1 failed, 2 succeeded\)", summary[0][0]), summary
    assert summary[1][:3] == ["HOST", "STATUS", "EXIT"]
    assert [row[:3] for row in summary[2:]] == [["fo-a", "succeeded", "0"], ["fo-b", "failed", "1"],
                                                ["fo-c", "succeeded", "0"]]  # fmt: skip
    fanout_id = summary[0][0].split()[1].rstrip(":")

    code, out, err = await cli(fleet.api, "fanouts", "retry", fanout_id)
    assert code == 0, (out, err)
    assert [line for line in out.splitlines() if "|" in line] == ["fo-b | out 3"]
    code, out, _ = await cli(fleet.api, "fanouts", "list")
    assert code == 0 and fanout_id[:8] in out and "succeeded" in out


async def test_run_all_with_a_label_runs_only_there_and_exits_0(fleet: Stack) -> None:
    code, out, err = await cli(fleet.api, "run", "--all", "--label", "role=web", "echo hi")
    assert code == 0, (out, err)
    assert sorted(line for line in out.splitlines() if "|" in line) == ["fo-a | hi", "fo-b | hi"]
    code, _, err = await cli(fleet.api, "run", "--all", "--label", "role=nothing", "echo hi")
    assert code != 0 and "role=nothing" in err
