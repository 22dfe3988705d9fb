"""stalwart.telemetry — traces, structured logs, metrics, alerts and ``explain``.

The engine calls the hooks of :class:`Telemetry` (cheap, never raising; export happens in the
background). Spans are built post hoc from journal entries with deterministic ids, so a run keeps
one trace across crashes, resumes and workers; they go to OTLP/HTTP, the console and the store.
Metrics are Prometheus (:data:`METRICS`, :func:`serve_metrics`, :func:`metrics_exposition`); the
alert rules of ``deploy/prometheus/alerts.yml`` are also evaluated in-process
(:class:`AlertMonitor`, :func:`evaluate_alerts`). :func:`explain` answers "why did this run cost
this much and take this long?" from a journal alone.
"""

from stalwart.telemetry._alert_monitor import AlertMonitor, load_alerts
from stalwart.telemetry._alerts import (
    ALERT_RULES,
    Alert,
    AlertRule,
    AlertSample,
    evaluate_alerts,
    histogram_quantile,
)
from stalwart.telemetry._config import TelemetrySettings, resolve_telemetry_settings
from stalwart.telemetry._explain import Explanation, StepRow, explain, format_duration
from stalwart.telemetry._ids import root_span_id, step_span_id, trace_id_of
from stalwart.telemetry._logging import (
    bind_run_context,
    bind_step_context,
    configure_logging,
    get_logger,
    log_context,
)
from stalwart.telemetry._metrics import METRIC_NAMES, METRICS, Metrics, metrics_exposition, serve_metrics
from stalwart.telemetry._render import trace_text
from stalwart.telemetry._semconv import ATTR, GEN_AI, SPAN
from stalwart.telemetry._spans import SpanRecord, run_span, step_spans, trace_from_journal
from stalwart.telemetry._store_sink import erase_spans, load_spans
from stalwart.telemetry._telemetry import Telemetry

__all__ = [
    "ALERT_RULES",
    "ATTR",
    "GEN_AI",
    "METRICS",
    "METRIC_NAMES",
    "SPAN",
    "Alert",
    "AlertMonitor",
    "AlertRule",
    "AlertSample",
    "Explanation",
    "Metrics",
    "SpanRecord",
    "StepRow",
    "Telemetry",
    "TelemetrySettings",
    "bind_run_context",
    "bind_step_context",
    "configure_logging",
    "erase_spans",
    "evaluate_alerts",
    "explain",
    "format_duration",
    "get_logger",
    "histogram_quantile",
    "load_alerts",
    "load_spans",
    "log_context",
    "metrics_exposition",
    "resolve_telemetry_settings",
    "root_span_id",
    "run_span",
    "serve_metrics",
    "step_span_id",
    "step_spans",
    "trace_from_journal",
    "trace_id_of",
    "trace_text",
]
