"""Which hosts' lines `scriptbus run --all` shows first: decided from one look at the fan-out."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import pytest

from scriptbus.client.api import Api
from scriptbus.client.fanouts import FanoutFollower


def _run(host: str, status: str, started: str | None = None, finished: str | None = None) -> dict[str, Any]:
    return {"host": host, "run_id": f"run-{host}", "status": status, "started_at": started, "finished_at": finished}


def test_a_host_still_queued_when_earlier_hosts_finished_shows_its_lines_after_theirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A rolling fan-out (--max-parallel 1): a and b are done, c is dispatched but not started yet.
    fanout = {
        "hosts": ["a", "b", "c"],
        "runs": [
            _run("a", "succeeded", "2026-12-02T01:00:00+00:00", "2026-12-02T01:00:01+00:00"),
            _run("b", "failed", "2026-12-02T01:00:02+00:00", "2026-12-02T01:00:03+00:00"),
            _run("c", "queued"),
        ],
    }
    assert _waits(fanout, monkeypatch) == {"run-a": set(), "run-b": {"run-a"}, "run-c": {"run-a", "run-b"}}


def test_hosts_running_side_by_side_wait_for_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    fanout = {
        "hosts": ["a", "b"],
        "runs": [_run("a", "running", "2026-12-02T01:00:00+00:00"), _run("b", "queued")],
    }
    assert _waits(fanout, monkeypatch) == {"run-a": set(), "run-b": set()}


def _waits(fanout: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """For each run followed after one look at `fanout`: the runs whose lines it waits for."""
    follower = FanoutFollower(Api("http://127.0.0.1:9"), "f", io.StringIO(), io.StringIO())
    waits: dict[str, set[str]] = {}

    def follow(run_id: str, prefix: str, name: str | None = None, after: Iterable[str] = ()) -> None:
        waits.setdefault(run_id, set(after))

    monkeypatch.setattr(follower._outputs, "follow", follow)
    follower._follow_new_runs(fanout)
    return waits
