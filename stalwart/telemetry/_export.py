"""Span export through the OpenTelemetry SDK: OTLP/HTTP and console, guarded and batched.

Spans are built post hoc with deterministic ids, so they are handed to the SDK as finished
``ReadableSpan`` objects; each exporter sits behind its own ``BatchSpanProcessor`` (a background
thread with a bounded queue). An exporter that fails or raises is counted and logged, never raised.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from stalwart.telemetry._spans import SpanRecord

__all__ = ["ExportPipeline", "GuardedExporter", "to_readable_span"]

_log = logging.getLogger("stalwart.telemetry")
_SCOPE = InstrumentationScope("stalwart.telemetry", "0.1.0")
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT, "server": SpanKind.SERVER}


def to_readable_span(span: SpanRecord, resource: Resource) -> ReadableSpan:
    """An SDK span for a finished :class:`SpanRecord` (ids and times kept as recorded)."""
    flags = TraceFlags(TraceFlags.SAMPLED)
    trace_id = int(span.trace_id, 16)
    ctx = SpanContext(trace_id, int(span.span_id, 16), is_remote=False, trace_flags=flags)
    parent = (
        SpanContext(trace_id, int(span.parent_span_id, 16), is_remote=False, trace_flags=flags)
        if span.parent_span_id
        else None
    )
    status = Status(StatusCode.OK) if span.ok else Status(StatusCode.ERROR, span.error or "error")
    return ReadableSpan(
        name=span.name,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes=span.attributes,
        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=status,
        start_time=int(span.start * 1e9),
        end_time=int(span.end * 1e9),
        instrumentation_scope=_SCOPE,
    )


class GuardedExporter(SpanExporter):
    """Wraps an exporter: a failure or exception is counted (``on_failure(name)``) and logged."""

    def __init__(
        self, name: str, inner: SpanExporter, on_failure: Callable[[str], None], log_every_s: float = 30.0
    ) -> None:
        self.name = name
        self.inner = inner
        self.on_failure = on_failure
        self.failures = 0
        self._log_every_s = log_every_s
        self._last_log = 0.0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self._failed(f"{type(exc).__name__}: {exc}")
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._failed("export returned FAILURE")
        return result

    def _failed(self, why: str) -> None:
        with self._lock:
            self.failures += 1
            now = time.monotonic()
            should_log = now - self._last_log >= self._log_every_s
            if should_log:
                self._last_log = now
        try:
            self.on_failure(self.name)
        except Exception:  # noqa: BLE001, S110 - telemetry never raises into its host
            pass
        if should_log:
            _log.warning("span exporter %s failed (%d failures so far): %s", self.name, self.failures, why)

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:  # noqa: BLE001, S110 - telemetry never raises into its host
            pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception:  # noqa: BLE001 - telemetry never raises into its host
            return False


class ExportPipeline:
    """The SDK exporters in use, each behind a batch processor."""

    def __init__(
        self,
        exporters: list[GuardedExporter],
        *,
        service_name: str = "stalwart",
        schedule_delay_ms: float = 1000,
        max_queue_size: int = 8192,
    ) -> None:
        self.resource = Resource.create({"service.name": service_name})
        self.exporters = exporters
        self._processors = [
            BatchSpanProcessor(
                e,
                max_queue_size=max_queue_size,
                schedule_delay_millis=schedule_delay_ms,
                max_export_batch_size=512,
            )
            for e in exporters
        ]

    def __bool__(self) -> bool:
        return bool(self._processors)

    def submit(self, spans: list[SpanRecord]) -> None:
        for s in spans:
            readable = to_readable_span(s, self.resource)
            for p in self._processors:
                p.on_end(readable)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        ok = True
        for p in self._processors:
            try:
                ok = p.force_flush(int(timeout_s * 1000)) and ok
            except Exception:  # noqa: BLE001 - telemetry never raises into its host
                ok = False
        return ok

    def shutdown(self) -> None:
        for p in self._processors:
            try:
                p.shutdown()
            except Exception:  # noqa: BLE001, S110 - telemetry never raises into its host
                pass


def build_pipeline(
    *,
    otlp_endpoint: str | None,
    otlp_headers: dict[str, str],
    otlp_timeout_s: float,
    console: bool,
    service_name: str,
    on_failure: Callable[[str], None],
    schedule_delay_ms: float = 1000,
    extra: list[tuple[str, SpanExporter]] | None = None,
) -> ExportPipeline:
    """The SDK exporters the settings ask for (OTLP/HTTP, console), plus any ``extra`` ones."""
    exporters: list[GuardedExporter] = []
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from stalwart.telemetry._config import traces_url

        otlp = OTLPSpanExporter(
            endpoint=traces_url(otlp_endpoint), headers=otlp_headers or None, timeout=otlp_timeout_s
        )
        exporters.append(GuardedExporter("otlp", otlp, on_failure))
    if console:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporters.append(GuardedExporter("console", ConsoleSpanExporter(out=sys.stderr), on_failure))
    for name, exp in extra or []:
        exporters.append(GuardedExporter(name, exp, on_failure))
    return ExportPipeline(exporters, service_name=service_name, schedule_delay_ms=schedule_delay_ms)
