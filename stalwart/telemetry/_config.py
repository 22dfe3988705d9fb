"""Telemetry configuration: the ``[telemetry]`` settings section and how it is resolved.

Resolution: ``Settings.telemetry`` when the settings object has that section, else the
``STALWART_TELEMETRY__*`` environment variables; the OTLP endpoint falls back to the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from stalwart.errors import ConfigError
from stalwart.settings import TelemetrySettings

__all__ = ["TelemetrySettings", "resolve_telemetry_settings"]


def resolve_telemetry_settings(
    settings: Any = None, env: Mapping[str, str] | None = None
) -> TelemetrySettings:
    """Find the telemetry section of a ``Settings`` object, or build one from the environment."""
    env = os.environ if env is None else env
    section = getattr(settings, "telemetry", None)
    if isinstance(section, TelemetrySettings):
        out = section
    elif section is not None:
        out = TelemetrySettings.model_validate(
            section.model_dump() if hasattr(section, "model_dump") else dict(section)
        )
    else:
        prefix = "STALWART_TELEMETRY__"
        raw: dict[str, Any] = {}
        for key, value in env.items():
            if key.upper().startswith(prefix):
                name = key[len(prefix) :].lower()
                raw[name] = _parse_headers(value) if name == "otlp_headers" else value
        try:
            out = TelemetrySettings.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"telemetry.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None
    if out.otlp_endpoint is None:
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        endpoint = traces or (base.rstrip("/") + "/v1/traces" if base else None)
        if endpoint:
            out = out.model_copy(update={"otlp_endpoint": endpoint})
    return out


def _parse_headers(value: str) -> dict[str, str]:
    pairs = (p.split("=", 1) for p in value.split(",") if "=" in p)
    return {k.strip(): v.strip() for k, v in pairs}


def traces_url(endpoint: str) -> str:
    """``http://host:4318`` → ``http://host:4318/v1/traces``; a full traces URL is kept."""
    e = endpoint.rstrip("/")
    return e if e.endswith("/v1/traces") else e + "/v1/traces"
