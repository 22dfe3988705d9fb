"""Telemetry configuration: the ``[telemetry]`` settings section and how it is resolved.

Resolution: ``Settings.telemetry`` when the settings object has that section, else the
``STALWART_TELEMETRY__*`` environment variables; the OTLP endpoint falls back to the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stalwart.errors import ConfigError

__all__ = ["TelemetrySettings", "resolve_telemetry_settings"]


class TelemetrySettings(BaseModel):
    """The ``[telemetry]`` section (``STALWART_TELEMETRY__*``)."""

    model_config = ConfigDict(extra="forbid")

    otlp_endpoint: str | None = None
    """OTLP/HTTP base URL (``http://collector:4318``) or full traces URL (``…/v1/traces``).
    Unset: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, then ``OTEL_EXPORTER_OTLP_ENDPOINT``; none: no OTLP export."""
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers for the OTLP exporter (an API key belongs in an environment variable)."""
    otlp_timeout_s: float = Field(5.0, gt=0)
    """Per-export timeout of the OTLP exporter."""
    console: bool = False
    """Also print finished spans as JSON to stderr (debugging only)."""
    store_spans: bool = True
    """Persist spans in the store so the CLI and the console show traces without a collector."""
    capture_content: bool = False
    """Put prompt and response text on model spans, redacted. Off unless opted in."""
    service_name: str = "stalwart"
    """``service.name`` resource attribute."""
    max_label_values: int = Field(200, ge=1)
    """Distinct values kept per metric label (org, workflow, model, tool…); the rest become ``other``."""
    flush_interval_s: float = Field(1.0, gt=0)
    """How often buffered spans are persisted / exported in the background."""


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
