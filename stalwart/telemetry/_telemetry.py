"""``Telemetry``: the hooks the engine calls. Cheap, never raising, never blocking the hot path.

Each hook updates in-process metrics and builds spans from recorded data; spans are queued and
exported in the background (the SDK's batch threads for OTLP/console, an asyncio task for the
store). Any failure inside a hook is counted and logged once in a while, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from stalwart.telemetry._alert_monitor import AlertMonitor
from stalwart.telemetry._alerts import Alert
from stalwart.telemetry._config import TelemetrySettings, resolve_telemetry_settings
from stalwart.telemetry._export import ExportPipeline, build_pipeline
from stalwart.telemetry._ids import child_span_id, step_span_id, trace_id_of
from stalwart.telemetry._labels import LabelLimiter
from stalwart.telemetry._metrics import METRICS, Metrics
from stalwart.telemetry._semconv import ATTR, SPAN
from stalwart.telemetry._spans import RunLike, SpanRecord, run_span, step_spans
from stalwart.telemetry._store_sink import StoreSpanSink, load_spans

__all__ = ["Telemetry"]

_log = logging.getLogger("stalwart.telemetry")
_BREAKER = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


def _default_redactor() -> Callable[[str], str] | None:
    try:
        from stalwart.guard import redact
    except Exception:  # noqa: BLE001 - telemetry never raises into its host
        return None

    def _redact(text: str) -> str:
        return redact(text).text

    return _redact


class Telemetry:
    """Traces, metrics and alert inputs for one process.

    ``settings``: a ``stalwart.settings.Settings`` (its ``telemetry`` section, when present) or
    ``None`` (``STALWART_TELEMETRY__*`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``). ``store``: persist spans
    there (``attach_store`` later also works). ``clock``: Unix seconds, injected for tests.
    ``metrics``: a private :class:`Metrics` for tests (default: the process's ``METRICS``).
    """

    def __init__(
        self,
        settings: Any = None,
        *,
        store: Any = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        config: TelemetrySettings | None = None,
        redactor: Callable[[str], str] | None = None,
        exporters: list[tuple[str, Any]] | None = None,
        alerts: bool = True,
    ) -> None:
        self.config = config or resolve_telemetry_settings(settings)
        self.clock = clock
        self.metrics = metrics or METRICS
        self.labels = LabelLimiter(self.config.max_label_values)
        self.hook_errors = 0
        self._last_hook_log = 0.0
        self._redactor = (redactor or _default_redactor()) if self.config.capture_content else None
        m = self.metrics
        self.pipeline: ExportPipeline = build_pipeline(
            otlp_endpoint=self.config.otlp_endpoint,
            otlp_headers=self.config.otlp_headers,
            otlp_timeout_s=self.config.otlp_timeout_s,
            console=self.config.console,
            service_name=self.config.service_name,
            on_failure=lambda name: m.export_failures.labels(name).inc(),
            schedule_delay_ms=self.config.flush_interval_s * 1000,
            extra=exporters,
        )
        self.sink: StoreSpanSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self._children: dict[str, int] = {}
        self.alerts: AlertMonitor | None = None
        """Evaluates the alert rules from these metrics in the background (``alerts=True``)."""
        if alerts:
            self.alerts = AlertMonitor(
                self.metrics,
                webhook_url=getattr(settings, "webhook_url", None),
                store=store,
                source=f"{socket.gethostname()}:{os.getpid()}",
            )
        if store is not None:
            self.attach_store(store)

    # -- wiring ------------------------------------------------------------------------------
    def attach_store(self, store: Any) -> None:
        """Persist spans in ``store`` (when ``telemetry.store_spans`` is on)."""
        if store is None:
            return
        if self.alerts is not None:
            self.alerts.store = store
        if not self.config.store_spans:
            return
        m = self.metrics
        self.sink = StoreSpanSink(
            store,
            on_failure=lambda name: m.export_failures.labels(name).inc(),
            on_drop=lambda n: m.spans_dropped.inc(n),
        )

    def _failed(self, hook: str, exc: BaseException) -> None:
        self.hook_errors += 1
        now = time.monotonic()
        if now - self._last_hook_log > 30.0:
            self._last_hook_log = now
            _log.warning(
                "telemetry hook %s failed (%d so far): %s: %s",
                hook,
                self.hook_errors,
                type(exc).__name__,
                exc,
            )

    def _emit(self, spans: list[SpanRecord]) -> None:
        if not spans:
            return
        if self.sink is not None:
            self.sink.add(spans)
            self._ensure_task()
        if self.pipeline:
            self.pipeline.submit(spans)

    def _ensure_task(self) -> None:
        if self._task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: spans wait for flush()
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._background(), name="stalwart-telemetry")

    async def _background(self) -> None:
        assert self._wake is not None
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.flush_interval_s)
            self._wake.clear()
            try:
                if self.sink is not None:
                    await self.sink.flush()
                if self.alerts is not None:
                    await self.alerts.tick(self.clock())
            except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
                self._failed("background", exc)

    # -- hooks -------------------------------------------------------------------------------
    def run_started(self, run: RunLike) -> None:
        """A worker claimed ``run`` (its first claim, or a resume after a wait, crash or takeover)."""
        try:
            resumed = "true" if int(getattr(run, "epoch", 1) or 1) > 1 else "false"
            self.metrics.runs_started.labels(self.labels("workflow", run.workflow), resumed).inc()
            self._ensure_task()
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("run_started", exc)

    def step_committed(self, run: RunLike, entry: Any) -> None:
        """A journal entry was committed: count it and emit its span (waiting entries: no span yet)."""
        try:
            self._step_metrics(run, entry)
            if self.config.store_spans or self.pipeline:  # no exporter: traces come from the journal
                self._emit(step_spans(run, entry, end=self.clock(), content_redactor=self._redactor))
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("step_committed", exc)

    def _step_metrics(self, run: RunLike, entry: Any) -> None:
        m, lab = self.metrics, self.labels
        kind, status = entry.kind, entry.status
        m.steps.labels(lab("kind", kind), status).inc()
        if status == "retrying":
            m.retries.labels(lab("kind", kind)).inc()
        meta: dict[str, Any] = entry.meta or {}
        if kind == "llm":
            if status == "completed":
                model = lab("model", meta.get("model") or meta.get("model_id") or "unknown")
                org = lab("org", run.org)
                tin, tout = int(meta.get("tokens_in") or 0), int(meta.get("tokens_out") or 0)
                if tin:
                    m.tokens.labels(model, org, "input").inc(tin)
                if tout:
                    m.tokens.labels(model, org, "output").inc(tout)
                cost = float(meta.get("cost_usd") or 0.0)
                if cost > 0:
                    m.cost.labels(lab("workflow", run.workflow), org).inc(cost)
                m.cache.labels(model, "hit" if meta.get("cached") else "miss").inc()
                if meta.get("latency_ms") is not None and not meta.get("cached"):
                    m.llm_latency.labels(model).observe(float(meta["latency_ms"]) / 1000.0)
            for alert in meta.get("budget_alerts") or ():
                if isinstance(alert, dict):
                    m.budget_alerts.labels(
                        lab("dimension", alert.get("dimension")), lab("threshold", alert.get("threshold"))
                    ).inc()
        elif kind == "tool" and status != "waiting":
            tool = lab("tool", entry.name)
            if meta.get("duration_ms") is not None:
                m.tool_duration.labels(tool).observe(float(meta["duration_ms"]) / 1000.0)
            elif entry.started_at is not None:
                end = entry.finished_at if entry.finished_at is not None else self.clock()
                m.tool_duration.labels(tool).observe(max(0.0, end - entry.started_at))
            if status in ("failed", "retrying"):
                err = entry.error or {}
                m.tool_errors.labels(
                    tool, lab("error_type", err.get("type") or err.get("code") or "error")
                ).inc()
                if err.get("code") == "circuit_open":
                    m.breaker_open.labels(tool).inc()

    def run_finished(
        self,
        run: RunLike,
        status: str,
        *,
        duration_s: float,
        cost_usd: float,
        tokens: int,
        budget_usd: float | None = None,
        error: dict[str, Any] | None = None,
        budget_exceeded: bool = False,
    ) -> None:
        """``run`` reached a final ``status``: observe duration and spend, and end its root span."""
        try:
            m, lab = self.metrics, self.labels
            st = str(getattr(status, "value", status)).upper()
            wf, org = lab("workflow", run.workflow), lab("org", run.org)
            m.run_duration.labels(wf, org, "true" if st == "COMPLETED" else "false").observe(
                max(0.0, duration_s)
            )
            m.runs_finished.labels(wf, org, lab("status", st)).inc()
            m.run_cost.labels(wf).observe(max(0.0, cost_usd))
            if budget_usd:
                m.run_budget_ratio.labels(wf).observe(max(0.0, cost_usd) / budget_usd)
            if budget_exceeded:
                m.budget_exceeded.labels(wf).inc()
            if st == "DEAD_LETTER":
                m.dlq.labels(wf).inc()
            end = float(run.created_at) + max(0.0, duration_s)
            self._emit([run_span(run, st, end=end, cost_usd=cost_usd, tokens=tokens, error=error)])
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("run_finished", exc)

    def guard_verdict(
        self,
        source: str,
        action: str,
        score: float,
        pii_types: list[str],
        *,
        run: RunLike | None = None,
        seq: int | None = None,
        attempt: int = 1,
        started_at: float | None = None,
        duration_ms: float = 0.0,
    ) -> None:
        """The guard scanned text from ``source`` (user|tool|model). With ``run`` and ``seq`` a
        ``guard.scan`` span is emitted under that step's span."""
        try:
            m, lab = self.metrics, self.labels
            m.guard_scans.labels(lab("source", source), lab("action", action)).inc()
            for t in pii_types:
                m.pii.labels(lab("type", t)).inc()
            if run is not None and seq is not None:
                attrs: dict[str, Any] = {
                    ATTR.GUARD_SOURCE: source,
                    ATTR.GUARD_ACTION: action,
                    ATTR.GUARD_SCORE: float(score),
                    ATTR.GUARD_PII_TYPES: list(pii_types),
                }
                self._child(
                    run,
                    seq,
                    attempt,
                    SPAN.GUARD,
                    attrs,
                    started_at,
                    duration_ms,
                    ok=action != "block",
                    error_type="GuardBlocked" if action == "block" else "",
                )
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("guard_verdict", exc)

    def policy_decision(
        self,
        tool: str,
        decision: str,
        *,
        run: RunLike | None = None,
        seq: int | None = None,
        attempt: int = 1,
        started_at: float | None = None,
        duration_ms: float = 0.0,
    ) -> None:
        """The policy engine decided on a tool call; with ``run`` and ``seq`` a ``policy.evaluate`` span."""
        try:
            allowed = decision.lower() in ("allow", "allowed", "permit")
            if run is not None and seq is not None:
                attrs: dict[str, Any] = {ATTR.POLICY_DECISION: decision, ATTR.POLICY_TOOL: tool}
                self._child(
                    run,
                    seq,
                    attempt,
                    SPAN.POLICY,
                    attrs,
                    started_at,
                    duration_ms,
                    ok=allowed,
                    error_type="" if allowed else "PolicyDenied",
                )
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("policy_decision", exc)

    def _child(
        self,
        run: RunLike,
        seq: int,
        attempt: int,
        name: str,
        extra: dict[str, Any],
        started_at: float | None,
        duration_ms: float,
        *,
        ok: bool,
        error_type: str,
    ) -> None:
        from stalwart.telemetry._spans import _common

        parent = step_span_id(run.id, seq, attempt)
        n = self._children.get(f"{parent}:{name}", 0)
        if len(self._children) > 10_000:
            self._children.clear()
        self._children[f"{parent}:{name}"] = n + 1
        end = self.clock()
        start = started_at if started_at is not None else end - duration_ms / 1000.0
        attrs = _common(run, latency_ms=duration_ms, ok=ok, error_type=error_type)
        attrs.update(extra)
        self._emit(
            [
                SpanRecord(
                    trace_id_of(run.id, run.trace_id),
                    child_span_id(parent, name, n),
                    parent,
                    name,
                    start,
                    max(start, start + duration_ms / 1000.0),
                    attrs,
                    ok,
                    None if ok else error_type,
                    "internal",
                    run.id,
                )
            ]
        )

    def set_kill_switch(self, active: bool) -> None:
        """Mirror the kill switch flag (1 engaged, 0 released)."""
        try:
            self.metrics.kill_switch.set(1 if active else 0)
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("set_kill_switch", exc)

    def set_review_queue_depth(self, n: int) -> None:
        """Reviews waiting for a human decision, as last seen."""
        try:
            self.metrics.review_queue.set(max(0, int(n)))
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("set_review_queue_depth", exc)

    def mcp_quarantined(self, server: str) -> None:
        """A call reached an MCP tool of ``server`` whose definition is not approved (alerted on)."""
        try:
            self.metrics.mcp_quarantined.labels(self.labels("server", server)).inc()
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("mcp_quarantined", exc)

    def unauthorized_tool_call(self, tool: str) -> None:
        """A workflow asked for a tool it is not allowed to use."""
        try:
            self.metrics.unauthorized.labels(self.labels("tool", tool)).inc()
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("unauthorized_tool_call", exc)

    def set_breaker_state(self, name: str, state: str) -> None:
        """A circuit breaker (``tool:NAME`` or ``model:NAME``) is now closed, half_open or open."""
        try:
            value = _BREAKER.get(state.lower(), 0)
            label = self.labels("breaker", name)
            self.metrics.breaker_state.labels(label).set(value)
            if value == 2:
                self.metrics.breaker_open.labels(label).inc()
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("set_breaker_state", exc)

    def set_queue_depth(
        self,
        *,
        pending: int | None = None,
        waiting: int | None = None,
        running: int | None = None,
        dead_letter: int | None = None,
    ) -> None:
        """Runs by state as last counted in the store (any subset)."""
        try:
            for state, n in (("pending", pending), ("waiting", waiting), ("running", running)):
                if n is not None:
                    self.metrics.queue_depth.labels(state).set(max(0, int(n)))
            if dead_letter is not None:
                self.metrics.dlq_depth.set(max(0, int(dead_letter)))
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("set_queue_depth", exc)

    def clear_fleet_gauges(self) -> None:
        """This process stopped (or never started) counting the fleet: queue depth has no series,
        the review queue and DLQ depth read 0, so ``max()`` and ``sum()`` over processes both give
        the leader's count, never a stale or doubled one."""
        try:
            self.metrics.queue_depth.clear()
            self.metrics.review_queue.set(0)
            self.metrics.dlq_depth.set(0)
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("clear_fleet_gauges", exc)

    def set_inflight(self, n: int) -> None:
        """Runs this worker process is executing now."""
        try:
            self.metrics.inflight.set(max(0, int(n)))
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("set_inflight", exc)

    def current_alerts(self, now: float | None = None) -> list[Alert]:
        """Evaluate the alert rules on this process's metrics now (for ``stalwart alerts``)."""
        if self.alerts is None:
            return []
        at = self.clock() if now is None else now
        self.alerts.observe(at)
        return self.alerts.evaluate(at)

    # -- reading -----------------------------------------------------------------------------
    async def trace(self, run_id: str) -> list[SpanRecord]:
        """The persisted spans of a run (flushing this process's buffer first)."""
        await self.flush()
        if self.sink is None:
            return []
        return await load_spans(self.sink.store, run_id)

    # -- lifecycle ---------------------------------------------------------------------------
    async def flush(self, timeout_s: float = 10.0) -> None:
        """Write buffered spans to the store and push queued spans through every exporter."""
        try:
            if self.sink is not None:
                await self.sink.flush()
            if self.pipeline:
                await asyncio.to_thread(self.pipeline.force_flush, timeout_s)
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed("flush", exc)

    async def close(self) -> None:
        """Flush, stop the background task and shut the exporters down."""
        self._closed = True
        if self._task is not None:
            if self._wake is not None:
                self._wake.set()
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        await self.flush()
        if self.alerts is not None:
            await self.alerts.drain()
        if self.pipeline:
            await asyncio.to_thread(self.pipeline.shutdown)
