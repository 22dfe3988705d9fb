"""``[fleet]`` settings: defaults, environment overrides, and a clear error for a bad value."""

from __future__ import annotations

import pytest

from stalwart.errors import ConfigError
from stalwart.settings import load_settings


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.fleet.enabled is True and s.fleet.lease_s == 30.0 and s.fleet.retention_interval_s == 3600.0
    monkeypatch.setenv("STALWART_FLEET__LEASE_S", "6")
    monkeypatch.setenv("STALWART_FLEET__ENABLED", "false")
    s = load_settings()
    assert s.fleet.lease_s == 6.0 and s.fleet.enabled is False


@pytest.mark.parametrize(("var", "value"), [("LEASE_S", "0"), ("GAUGES_INTERVAL_S", "-1"), ("BOGUS", "1")])
def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(f"STALWART_FLEET__{var}", value)
    with pytest.raises(ConfigError, match=r"fleet"):
        load_settings()
