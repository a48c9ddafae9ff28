"""The gateway serves on uvloop and httptools when they are installed, and on asyncio and h11 without."""

from __future__ import annotations

import asyncio
import sys

import pytest

from scriptbus.gateway.__main__ import fast_http, fast_loop


def test_uvloop_and_httptools_when_installed() -> None:
    factory = fast_loop()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
        assert loop.run_until_complete(asyncio.sleep(0, result="ran")) == "ran"
    finally:
        loop.close()
    assert fast_http() == "httptools"


def test_asyncio_and_h11_without_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.setitem(sys.modules, "httptools", None)
    assert fast_loop() is None
    assert fast_http() == "h11"
