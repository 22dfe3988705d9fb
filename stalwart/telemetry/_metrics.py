"""Prometheus metrics: the catalogue, a per-process registry, exposition and the worker's port.

Each worker process owns its registry and serves it on its own ``--metrics-port``; Prometheus
sums across targets. When ``PROMETHEUS_MULTIPROC_DIR`` is set before Stalwart is imported, values
live in shared files instead and :func:`metrics_exposition` aggregates every process of the host
(the server's ``/metrics`` in a multi-process deployment).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "METRICS",
    "METRIC_NAMES",
    "Metrics",
    "metrics_exposition",
    "serve_metrics",
]

RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300, 600, 1800, 3600, 14400, 86400)
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
COST_BUCKETS = (0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 100)
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 3, 5, 10)


class Metrics:
    """Every metric Stalwart exports, on one registry (a fresh one per instance for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = r
        # -- the table ---------------------------------------------------------------
        self.run_duration = Histogram(
            "agent_run_duration_seconds",
            "Run wall time from creation to a final state.",
            ["workflow", "org", "success"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "agent_tokens_total",
            "Model tokens, by direction (input|output).",
            ["model", "org", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "agent_cost_usd_total", "Model spend in US dollars.", ["workflow", "org"], registry=r
        )
        self.tool_duration = Histogram(
            "agent_tool_duration_seconds",
            "Tool call duration (each attempt).",
            ["tool"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self.tool_errors = Counter(
            "agent_tool_errors_total",
            "Failed tool attempts, by error type.",
            ["tool", "error_type"],
            registry=r,
        )
        self.review_queue = Gauge(
            "agent_human_review_queue_depth",
            "Reviews waiting for a human decision.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.kill_switch = Gauge(
            "agent_kill_switch_active",
            "1 while the kill switch is engaged.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.pii = Counter(
            "agent_pii_detections_total", "PII entities detected by the guard, by type.", ["type"], registry=r
        )
        # -- on top ---------------------------------------------------------------------------
        self.runs_started = Counter(
            "agent_runs_started_total",
            "Run claims by a worker (resumed: a later claim).",
            ["workflow", "resumed"],
            registry=r,
        )
        self.runs_finished = Counter(
            "agent_runs_finished_total",
            "Runs that reached a final state.",
            ["workflow", "org", "status"],
            registry=r,
        )
        self.run_cost = Histogram(
            "agent_run_cost_usd",
            "Model spend per finished run.",
            ["workflow"],
            buckets=COST_BUCKETS,
            registry=r,
        )
        self.run_budget_ratio = Histogram(
            "agent_run_budget_ratio",
            "Run spend divided by its USD budget.",
            ["workflow"],
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.steps = Counter("agent_steps_total", "Committed step attempts.", ["kind", "status"], registry=r)
        self.retries = Counter(
            "agent_step_retries_total", "Step attempts that failed and will be retried.", ["kind"], registry=r
        )
        self.llm_latency = Histogram(
            "agent_llm_latency_seconds",
            "Model call latency (gateway-measured).",
            ["model"],
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "agent_llm_cache_requests_total",
            "Model calls by response-cache result (hit|miss).",
            ["model", "result"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "agent_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["name"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_open = Counter(
            "agent_breaker_open_total", "Calls refused or breakers opened.", ["name"], registry=r
        )
        self.budget_alerts = Counter(
            "agent_budget_alerts_total", "Budget threshold crossings.", ["dimension", "threshold"], registry=r
        )
        self.budget_exceeded = Counter(
            "agent_budget_exceeded_total", "Runs stopped by a budget.", ["workflow"], registry=r
        )
        self.dlq = Counter("agent_dlq_total", "Runs sent to the dead-letter queue.", ["workflow"], registry=r)
        self.dlq_depth = Gauge(
            "agent_dlq_depth",
            "Runs currently in the dead-letter queue.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.queue_depth = Gauge(
            "agent_queue_depth",
            "Runs by queue state (pending|waiting|running).",
            ["state"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.inflight = Gauge(
            "agent_worker_inflight_runs",
            "Runs this worker is executing.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.guard_scans = Counter(
            "agent_guard_scans_total",
            "Guard verdicts, by source and action.",
            ["source", "action"],
            registry=r,
        )
        self.unauthorized = Counter(
            "agent_unauthorized_tool_calls_total",
            "Tool calls refused because the tool is not allowed.",
            ["tool"],
            registry=r,
        )
        self.mcp_quarantined = Counter(
            "agent_mcp_quarantined_total",
            "Calls refused because the MCP tool's definition is not approved (changed since its pin, or new).",
            ["server"],
            registry=r,
        )
        self.export_failures = Counter(
            "agent_telemetry_export_failures_total",
            "Span export batches that failed, by exporter.",
            ["exporter"],
            registry=r,
        )
        self.spans_dropped = Counter(
            "agent_telemetry_spans_dropped_total", "Spans dropped because a buffer was full.", registry=r
        )

    def exposition(self) -> bytes:
        """This registry in the Prometheus text format."""
        return generate_latest(self.registry)


METRIC_NAMES: frozenset[str] = frozenset(
    {
        "agent_run_duration_seconds",
        "agent_tokens_total",
        "agent_cost_usd_total",
        "agent_tool_duration_seconds",
        "agent_tool_errors_total",
        "agent_human_review_queue_depth",
        "agent_kill_switch_active",
        "agent_pii_detections_total",
        "agent_runs_started_total",
        "agent_runs_finished_total",
        "agent_run_cost_usd",
        "agent_run_budget_ratio",
        "agent_steps_total",
        "agent_step_retries_total",
        "agent_llm_latency_seconds",
        "agent_llm_cache_requests_total",
        "agent_breaker_state",
        "agent_breaker_open_total",
        "agent_budget_alerts_total",
        "agent_budget_exceeded_total",
        "agent_dlq_total",
        "agent_dlq_depth",
        "agent_queue_depth",
        "agent_worker_inflight_runs",
        "agent_guard_scans_total",
        "agent_unauthorized_tool_calls_total",
        "agent_mcp_quarantined_total",
        "agent_telemetry_export_failures_total",
        "agent_telemetry_spans_dropped_total",
    }
)
"""Every metric family name exported (histograms add ``_bucket``, ``_sum``, ``_count``)."""

METRICS = Metrics()
"""The process's metrics. Creating it touches no file, socket or thread."""


def metrics_exposition(metrics: Metrics | None = None) -> tuple[bytes, str]:
    """``(body, content_type)`` for a ``/metrics`` endpoint.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, the values of every process on the host are merged.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and metrics is None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return (metrics or METRICS).exposition(), CONTENT_TYPE_LATEST


def serve_metrics(port: int, addr: str = "127.0.0.1", metrics: Metrics | None = None) -> Any:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread (a worker's ``--metrics-port``).

    Returns the HTTP server; ``server.shutdown()`` stops it. Port 0 picks a free port
    (``server.server_port``).
    """
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=(metrics or METRICS).registry)
    return server
