"""Executor settings from the environment and flags."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scriptbus.executor.settings import ExecutorSettings, parse_labels
from scriptbus.executor.sizing import default_max_concurrency


def test_environment_lists_and_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTBUS_HOST", "web-1")
    monkeypatch.setenv("SCRIPTBUS_POOLS", "default, gpu")
    monkeypatch.setenv("SCRIPTBUS_LABELS", "zone=eu,rack=7")
    monkeypatch.setenv("SCRIPTBUS_MAX_CONCURRENCY", "3")
    settings = ExecutorSettings()
    assert settings.pools == ["default", "gpu"]
    assert settings.labels == {"zone": "eu", "rack": "7"}
    assert settings.max_concurrency == 3
    # The host's own queue is always served too.
    assert settings.targets == ["default", "gpu", "web-1"]


def test_defaults_and_flag_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SCRIPTBUS_HOST", "SCRIPTBUS_POOLS", "SCRIPTBUS_LABELS", "SCRIPTBUS_MAX_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    settings = ExecutorSettings()
    assert settings.pools == ["default"] and settings.max_concurrency == default_max_concurrency()
    assert settings.max_output_bytes == 256 * 1024 * 1024 and settings.heartbeat_interval_s == 2.0
    assert settings.targets[-1] == settings.host
    flagged = ExecutorSettings(host="box", pools=["box"], labels=parse_labels(["a=b=c"]))
    assert flagged.targets == ["box"] and flagged.labels == {"a": "b=c"}


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValidationError):
        ExecutorSettings(host="has.dot")
    with pytest.raises(ValidationError):
        ExecutorSettings(pools=["a b"])
    with pytest.raises(ValueError):
        parse_labels(["novalue"])
