"""OTLP/HTTP export against a real wire-level receiver on loopback, and a failing exporter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from stalwart.telemetry import Metrics, Telemetry, TelemetrySettings, root_span_id, step_span_id
from tests.unit.test_telemetry_spans import TRACE, llm_entry, make_run, tool_entry


class _Receiver(BaseHTTPRequestHandler):
    requests: list[ExportTraceServiceRequest]
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        assert self.path == "/v1/traces"
        assert self.headers["Content-Type"] == "application/x-protobuf"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        type(self).requests.append(req)
        self.send_response(self.status)
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"requests": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", handler
    server.shutdown()
    server.server_close()


def _attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = (
            [x.string_value for x in v.array_value.values] if kind == "array_value" else getattr(v, kind)
        )
    return out


async def test_spans_reach_an_otlp_http_receiver(receiver: tuple[str, type[_Receiver]]) -> None:
    url, handler = receiver
    m = Metrics()
    tel = Telemetry(
        config=TelemetrySettings(otlp_endpoint=url, service_name="stalwart-test"), metrics=m, alerts=False
    )
    run = make_run()
    tel.run_started(run)
    tel.step_committed(run, llm_entry())
    tel.step_committed(run, tool_entry())
    tel.run_finished(run, "COMPLETED", duration_s=5.0, cost_usd=0.006, tokens=1500)
    await tel.close()
    spans = [
        s for req in handler.requests for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    resources = {
        kv.value.string_value
        for req in handler.requests
        for rs in req.resource_spans
        for kv in rs.resource.attributes
        if kv.key == "service.name"
    }
    assert resources == {"stalwart-test"}
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"workflow.run", "chat gpt-4o-2024-08-06", "execute_tool lookup_order"}
    assert {s.trace_id.hex() for s in spans} == {TRACE}
    root, chat = by_name["workflow.run"], by_name["chat gpt-4o-2024-08-06"]
    assert root.span_id.hex() == root_span_id(run.id) and root.parent_span_id == b""
    assert chat.span_id.hex() == step_span_id(run.id, 0, 1) and chat.parent_span_id == root.span_id
    assert chat.start_time_unix_nano == 1001 * 10**9 and chat.end_time_unix_nano == 1002 * 10**9
    a = _attrs(chat)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.usage.input_tokens"] == 1200 and a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["org.id"] == "acme" and a["success"] is True
    assert tel.pipeline.exporters[0].failures == 0


async def test_a_failing_collector_is_counted_and_logged_never_raised(
    receiver: tuple[str, type[_Receiver]], caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = receiver
    handler.status = 400  # not retried by the exporter: fails at once
    m = Metrics()
    tel = Telemetry(config=TelemetrySettings(otlp_endpoint=url, otlp_timeout_s=2), metrics=m, alerts=False)
    run = make_run()
    tel.step_committed(run, llm_entry())
    await tel.flush()
    await tel.close()
    assert handler.requests, "the receiver saw the attempt"
    assert tel.pipeline.exporters[0].failures >= 1
    assert m.export_failures.labels("otlp")._value.get() >= 1
    assert "span exporter otlp failed" in caplog.text
    assert tel.hook_errors == 0


async def test_an_exporter_that_raises_is_contained() -> None:
    from opentelemetry.sdk.trace.export import SpanExporter

    class Exploding(SpanExporter):
        def export(self, spans: Any) -> Any:
            raise RuntimeError("collector on fire")

    m = Metrics()
    tel = Telemetry(config=TelemetrySettings(), metrics=m, alerts=False, exporters=[("boom", Exploding())])
    tel.step_committed(make_run(), llm_entry())
    await tel.close()
    assert m.export_failures.labels("boom")._value.get() == 1
