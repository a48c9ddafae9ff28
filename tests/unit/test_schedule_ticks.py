"""A schedule's fire times (cron in a timezone, DST-aware; every N seconds) and what a due tick does,
decided from the schedule's folded state alone: catch-up after downtime, overlap, pause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from scriptbus.events.schedules import (
    FiredOutcome,
    ScheduleCreated,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSpec,
    schedule_id,
    tick_run_id,
)
from scriptbus.scheduler.schedules.state import ScheduleState


def spec(**fields: object) -> ScheduleSpec:
    return ScheduleSpec.model_validate({"name": "s1", "command_id": "c1", **fields})


def iso(ticks: list[datetime]) -> list[str]:
    return [t.isoformat() for t in ticks]


def test_cron_fire_times_follow_the_zone_across_both_dst_changes() -> None:
    berlin = spec(cron="30 2 * * *", timezone="Europe/Berlin")
    # 02:30 does not exist on 29 March (clocks jump 02:00 -> 03:00): it fires once, right after the gap.
    assert iso(berlin.ticks_after(datetime(2026, 3, 27, 12, tzinfo=UTC), 3)) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    # 02:30 happens twice on 25 October (03:00 -> 02:00): it fires once.
    assert iso(berlin.ticks_after(datetime(2026, 10, 24, 12, tzinfo=UTC), 3)) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # Weekdays at 09:00 in New York: the same wall time, a different UTC hour after 8 March.
    ny = spec(cron="0 9 * * 1-5", timezone="America/New_York")
    utc = [t.astimezone(UTC).hour for t in ny.ticks_after(datetime(2026, 3, 6, 12, tzinfo=UTC), 3)]
    assert utc == [14, 13, 13]


def test_every_s_ticks_are_whole_multiples_every_scheduler_agrees_on() -> None:
    every = spec(every_s=5)
    ticks = every.ticks_after(datetime(2026, 1, 1, 0, 0, 7, 500000, tzinfo=UTC), 3)
    assert [t.second for t in ticks] == [10, 15, 20]
    assert every.due_ticks(ticks[0], ticks[2]) == ticks[1:]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "not valid"),
        ({"cron": "* * *"}, "cron", "five fields"),
        ({"every_s": 5, "timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
        ({"every_s": 0}, "every_s", "greater than or equal to 1"),
        ({"every_s": 5, "cron": "* * * * *"}, None, "exactly one of cron and every_s"),
        ({}, None, "exactly one of cron and every_s"),
        ({"every_s": 5, "overlap": "sometimes"}, "overlap", "skip"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(fields: dict[str, object], field: str | None, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    error = caught.value.errors()[0]
    assert error["loc"] == ((field,) if field else ())
    assert words in error["msg"]


T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
LATE = 30.0


def state(**fields: object) -> ScheduleState:
    created = ScheduleCreated(schedule_id=schedule_id("s1"), spec=spec(every_s=10, **fields), occurred_at=T0)
    return ScheduleState.created(created, seq=7)


def fire(st: ScheduleState, now: datetime) -> list[ScheduleFired]:
    """What a scheduler records at `now`, applied as the fold would."""
    out = []
    for tick in st.due(now, LATE):
        outcome, run_id, reason = st.outcome(tick)
        event = ScheduleFired(
            schedule_id=st.schedule_id, generation=st.generation, tick=tick.at, outcome=outcome,
            run_id=run_id, reason=reason, missed=tick.missed,
        )  # fmt: skip
        st.apply(event)
        out.append(event)
    return out


def test_on_time_ticks_fire_one_by_one_and_after_downtime_catch_up_last_runs_only_the_latest() -> None:
    st = state(catch_up="last", overlap="allow")
    fired = fire(st, T0 + timedelta(seconds=21))
    assert [(f.tick - T0).seconds for f in fired] == [10, 20]
    assert fire(st, T0 + timedelta(seconds=25)) == []
    # Ten minutes without a scheduler: the ticks before 30 s ago were missed, the latest of them runs.
    fired = fire(st, T0 + timedelta(seconds=620))
    missed, *on_time = fired
    assert missed.outcome is FiredOutcome.STARTED and (missed.tick - T0).seconds == 580 and missed.missed == 55
    assert [(f.tick - T0).seconds for f in on_time] == [590, 600, 610, 620]
    assert missed.run_id == tick_run_id(st.schedule_id, 7, missed.tick)


def test_catch_up_none_records_the_missed_ticks_as_skipped() -> None:
    st = state(catch_up="none", overlap="allow")
    missed, *on_time = fire(st, T0 + timedelta(seconds=600))
    assert missed.outcome is FiredOutcome.SKIPPED and missed.run_id is None and "missed" in missed.reason
    assert all(f.outcome is FiredOutcome.STARTED for f in on_time)


def test_overlap_skip_and_queue_while_the_previous_run_still_runs() -> None:
    skip = state(overlap="skip")
    first, second = fire(skip, T0 + timedelta(seconds=20))
    assert first.outcome is FiredOutcome.STARTED
    assert second.outcome is FiredOutcome.SKIPPED and str(first.run_id) in second.reason
    assert first.run_id is not None
    assert skip.run_ended(first.run_id) is None
    assert fire(skip, T0 + timedelta(seconds=30))[0].outcome is FiredOutcome.STARTED

    queue = state(overlap="queue")
    started, waits, full = fire(queue, T0 + timedelta(seconds=30))
    assert (started.outcome, waits.outcome, full.outcome) == (
        FiredOutcome.STARTED,
        FiredOutcome.QUEUED,
        FiredOutcome.SKIPPED,
    )
    assert started.run_id is not None
    assert queue.run_ended(started.run_id) == waits.run_id  # its turn comes when the first one ends


def test_a_paused_schedule_fires_nothing_and_resumes_without_the_paused_ticks() -> None:
    st = state(overlap="allow")
    st.apply(SchedulePaused(schedule_id=st.schedule_id, occurred_at=T0 + timedelta(seconds=1)))
    assert fire(st, T0 + timedelta(seconds=100)) == []
    st.apply(ScheduleResumed(schedule_id=st.schedule_id, occurred_at=T0 + timedelta(seconds=100)))
    assert [(f.tick - T0).seconds for f in fire(st, T0 + timedelta(seconds=115))] == [110]
