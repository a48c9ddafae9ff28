"""Pure pieces of the gateway: run-list cursors, command-name keys, SSE frames, the duration histogram
and executor liveness."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from scriptbus.events.statuses import RunStatus
from scriptbus.gateway.catalogue import name_key
from scriptbus.gateway.events_sse import frame
from scriptbus.gateway.expiring import Expiring
from scriptbus.gateway.fleet import LiveTargets, effective_state, live_from_rows
from scriptbus.gateway.metrics import _counters
from scriptbus.gateway.paging import decode_cursor, encode_cursor
from scriptbus.gateway.schemas import COMMAND_NAME_PATTERN, RunSummary


def summary(created_at: datetime) -> RunSummary:
    return RunSummary(
        id=str(uuid.uuid4()),
        status=RunStatus.QUEUED,
        script="true",
        args=[],
        description="",
        env={},
        pool="default",
        timeout_s=None,
        stop_grace_s=5,
        exit_code=None,
        signal=None,
        pid=None,
        created_at=created_at,
        started_at=None,
        stop_requested_at=None,
        finished_at=None,
        duration_s=None,
        output_bytes=0,
        output_truncated=False,
        dropped_bytes=0,
        reason="",
        survivors=[],
    )


def test_a_cursor_keeps_the_exact_position() -> None:
    run = summary(datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC))
    cursor = encode_cursor(run)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor), "URL-safe without escaping"
    assert decode_cursor(cursor) == (run.created_at, run.id)


@pytest.mark.parametrize(
    "bogus",
    ["", "!!!", "bm90IGpzb24", "e30", "eyJ0IjoieCIsImlkIjoieSJ9", "eyJ0IjoiMjAyNi0wMS0wMlQwMzowNDowNSIsImlkIjoiMSJ9"],
)
def test_anything_else_is_not_a_cursor(bogus: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(bogus)


def test_name_keys_are_valid_kv_keys_and_distinct() -> None:
    names = ["backup", "a.b", "v1.", ".x", "a..b", "A-b_c.d", "x" * 128]
    keys = [name_key(n) for n in names if re.fullmatch(COMMAND_NAME_PATTERN, n)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key) and not key.startswith(".") and not key.endswith(".")
        assert ".." not in key
    assert name_key("backup") == "backup" and name_key("a.b") == "a.b"


def test_sse_frames_put_every_line_of_data_on_its_own_data_line() -> None:
    assert frame(7, "run.started", '{"a":1}') == b'id: 7\nevent: run.started\ndata: {"a":1}\n\n'
    assert frame(8, "x", "one\ntwo") == b"id: 8\nevent: x\ndata: one\ndata: two\n\n"


def test_the_duration_histogram_has_the_contract_buckets() -> None:
    stats = [
        ("duration_bucket", "0.5", 1.0),
        ("duration_bucket", "1", 2.0),
        ("duration_bucket", "60", 3.0),
        ("duration_bucket", "+Inf", 4.0),
        ("duration_count", "", 4.0),
        ("duration_sum", "", 100.0),
        ("finished", "succeeded", 4.0),
    ]
    families = {f.name: f for f in _counters(stats)}
    buckets = {s.labels["le"]: s.value for s in families["scriptbus_run_duration_seconds"].samples if "le" in s.labels}
    assert list(buckets) == ["0.1", "0.5", "1.0", "5.0", "10.0", "30.0", "60.0", "300.0", "900.0", "3600.0", "+Inf"]
    # Cumulative: a bound the recorder has not written yet counts as the one below it.
    assert list(buckets.values()) == [0, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4]
    assert [s.value for s in families["scriptbus_runs_finished"].samples] == [4.0]


def test_an_executor_is_lost_once_silent_past_the_timeout() -> None:
    now = datetime.now(UTC)
    row = {"state": "online", "last_heartbeat": now - timedelta(seconds=2), "now": now}
    assert effective_state(row, 3) == "online"
    assert effective_state({**row, "last_heartbeat": now - timedelta(seconds=4)}, 3) == "lost"
    assert effective_state({**row, "state": "draining", "last_heartbeat": None}, 3) == "lost"
    assert effective_state({**row, "state": "stopped", "last_heartbeat": now - timedelta(days=1)}, 3) == "stopped"
    assert effective_state({**row, "state": "weird"}, 3) == "lost"


def test_the_live_fleet_is_kept_only_until_its_stalest_executor_could_be_lost() -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "host": "h1",
            "pools": ["default"],
            "state": "online",
            "last_heartbeat": now - timedelta(seconds=1),
            "now": now,
        },
        {"host": "h2", "pools": ["gpu"], "state": "online", "last_heartbeat": now - timedelta(seconds=2.5), "now": now},
        {"host": "h3", "pools": ["old"], "state": "online", "last_heartbeat": now - timedelta(seconds=9), "now": now},
        {"host": "h4", "pools": ["off"], "state": "stopped", "last_heartbeat": now, "now": now},
    ]
    live, fresh_for = live_from_rows(rows, 3)
    assert (live.hosts, live.pools) == ({"h1", "h2"}, {"default", "gpu"})
    assert fresh_for == pytest.approx(0.5)
    assert live_from_rows([], 3)[1] == float("inf")


def test_an_expiring_value_is_gone_after_its_freshness_or_max_age() -> None:
    kept: Expiring[str] = Expiring(max_age_s=60)
    assert kept.get() is None
    kept.keep("a")
    assert kept.get() == "a"
    kept.keep("b", fresh_for_s=0)
    assert kept.get() is None
    never: Expiring[str] = Expiring(max_age_s=0)
    never.keep("c")
    assert never.get() is None


def test_a_queued_run_waits_for_its_host_not_its_pool() -> None:
    live = LiveTargets(pools={"default", "h1"}, hosts={"h1"})
    assert live.waiting_reason("default", None) == ""
    assert live.waiting_reason("gpu", None) == "no live executor serves pool 'gpu'"
    assert live.waiting_reason("default", "h2") == "no live executor on host 'h2'"
    assert live.waiting_reason("gpu", "h1") == ""
