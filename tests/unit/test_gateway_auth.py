"""Which addresses count as loopback, and when the gateway refuses to start."""

from __future__ import annotations

import pytest

from scriptbus.gateway.auth import exposure_error, is_loopback
from scriptbus.gateway.settings import GatewaySettings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.1", "example.com", "localhost.evil"])
def test_exposed_addresses(host: str) -> None:
    assert not is_loopback(host)


def test_exposed_without_tokens_is_refused_with_the_way_out() -> None:
    problem = exposure_error(GatewaySettings().model_copy(update={"host": "0.0.0.0"}))
    assert problem is not None and "SCRIPTBUS_API_TOKENS" in problem and "127.0.0.1" in problem


def test_exposed_with_tokens_or_loopback_without_is_allowed() -> None:
    settings = GatewaySettings().model_copy(update={"host": "0.0.0.0", "api_tokens": " a , ,b "})
    assert settings.tokens == {"a", "b"}
    assert exposure_error(settings) is None
    assert exposure_error(GatewaySettings().model_copy(update={"host": "127.0.0.1", "api_tokens": ""})) is None


def test_a_shared_scriptbus_host_is_not_the_gateways_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # SCRIPTBUS_HOST names an executor's host in a shared environment; the gateway must not bind to it.
    monkeypatch.setenv("SCRIPTBUS_HOST", "build-1")
    monkeypatch.setenv("SCRIPTBUS_GATEWAY_PORT", "9999")
    settings = GatewaySettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 9999)
