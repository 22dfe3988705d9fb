"""Telemetry settings: the [telemetry] section, STALWART_TELEMETRY__*, OTEL_EXPORTER_OTLP_* fallbacks."""

from __future__ import annotations

import pytest

from stalwart.errors import ConfigError
from stalwart.settings import Settings
from stalwart.telemetry import TelemetrySettings, resolve_telemetry_settings


def test_environment_and_otel_fallbacks() -> None:
    env = {
        "STALWART_TELEMETRY__CONSOLE": "true",
        "STALWART_TELEMETRY__OTLP_HEADERS": "x-key=1, y=2",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
    }
    cfg = resolve_telemetry_settings(None, env)  # no settings object: the environment alone
    assert cfg.console is True and cfg.otlp_headers == {"x-key": "1", "y": "2"}
    assert cfg.otlp_endpoint == "http://collector:4318/v1/traces"
    traces = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/v1/traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b",
    }
    assert resolve_telemetry_settings(None, traces).otlp_endpoint == "http://t/v1/traces"
    assert resolve_telemetry_settings(None, {}).otlp_endpoint is None
    assert resolve_telemetry_settings(None, {}).capture_content is False


def test_a_settings_section_wins_and_bad_values_name_the_setting() -> None:
    class WithSection:
        telemetry = TelemetrySettings(otlp_endpoint="http://explicit:4318", store_spans=False)

    cfg = resolve_telemetry_settings(WithSection(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other"})
    assert cfg.otlp_endpoint == "http://explicit:4318" and cfg.store_spans is False
    with pytest.raises(ConfigError, match="telemetry.flush_interval_s"):
        resolve_telemetry_settings(None, {"STALWART_TELEMETRY__FLUSH_INTERVAL_S": "-1"})
