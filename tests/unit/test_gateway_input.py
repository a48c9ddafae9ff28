"""Pure pieces of strict input: what a 422 may echo, which content types are JSON, bounded times, and the
retention settings."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from scriptbus.events.bus import BusSettings
from scriptbus.events.streams import Retention
from scriptbus.gateway.content_type import is_json
from scriptbus.gateway.errors import EXCERPT_CHARS, excerpt, validation_errors
from scriptbus.gateway.schemas import RunCreate, utc_instant


def test_an_excerpt_is_short_and_always_encodes() -> None:
    assert excerpt("x" * 10_000) == "x" * EXCERPT_CHARS + "…"
    assert excerpt("a\ud800b") == "a\\ud800b"
    assert excerpt(math.inf) == "inf" and excerpt(math.nan) == "nan"
    assert excerpt({"k": [1, 2]}) == {"k": [1, 2]}
    big = excerpt({"script": "y" * 5000})
    assert isinstance(big, str) and big.startswith('{"script":"yyy') and len(big) == EXCERPT_CHARS + 1
    for value in ("\udfff" * 500, {"\ud800": math.inf}, [b"\xff"], None, 2**70):
        json.dumps(excerpt(value), allow_nan=False).encode()


def test_validation_errors_name_the_field_and_encode_whatever_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        RunCreate.model_validate({"script": "echo \ud800", "timeout_s": math.inf, "timeout": 1})
    errors = validation_errors(RequestValidationError(caught.value.errors()))
    assert sorted(tuple(e["loc"]) for e in errors) == [("script",), ("timeout",), ("timeout_s",)]
    json.dumps({"detail": errors}, ensure_ascii=False, allow_nan=False).encode()


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("", False),
        (None, False),
    ],
)
def test_which_content_types_are_json(content_type: str | None, expected: bool) -> None:
    assert is_json(content_type) is expected


def test_times_are_taken_to_utc_within_range() -> None:
    assert utc_instant(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert utc_instant(datetime(2026, 1, 1, 2, tzinfo=plus_two)) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        utc_instant(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    with pytest.raises(ValueError):
        utc_instant(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-23))))


def test_retention_settings_say_unset_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SCRIPTBUS_EVENTS_MAX_AGE_S", "SCRIPTBUS_EVENTS_MAX_BYTES"):
        monkeypatch.delenv(name, raising=False)
    assert BusSettings().events_retention() == Retention(max_age_s=None, max_bytes=None)
    monkeypatch.setenv("SCRIPTBUS_EVENTS_MAX_AGE_S", "2592000")
    monkeypatch.setenv("SCRIPTBUS_EVENTS_MAX_BYTES", "-1")
    assert BusSettings().events_retention() == Retention(max_age_s=2592000, max_bytes=-1)
    for bad in ("1000", "0", "-2"):
        monkeypatch.setenv("SCRIPTBUS_EVENTS_MAX_BYTES", bad)
        with pytest.raises(ValidationError):
            BusSettings()
    monkeypatch.setenv("SCRIPTBUS_EVENTS_MAX_BYTES", "-1")
    monkeypatch.setenv("SCRIPTBUS_EVENTS_MAX_AGE_S", "inf")
    with pytest.raises(ValidationError):
        BusSettings()
