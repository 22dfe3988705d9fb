"""Spans built from journal entries: names, GenAI attributes, deterministic ids, opt-in content."""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.store import JournalEntry, RunRecord
from stalwart.telemetry import (
    ATTR,
    GEN_AI,
    Metrics,
    SpanRecord,
    Telemetry,
    TelemetrySettings,
    root_span_id,
    step_span_id,
    step_spans,
    trace_from_journal,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
COMMON = (
    ATTR.WORKFLOW_VERSION,
    ATTR.ORG_ID,
    ATTR.USER_ID,
    ATTR.MODEL_NAME,
    ATTR.TOKENS_INPUT,
    ATTR.TOKENS_OUTPUT,
    ATTR.COST_USD,
    ATTR.LATENCY_MS,
    ATTR.SUCCESS,
    ATTR.ERROR_TYPE,
)


def make_run(**kw: Any) -> RunRecord:
    base: dict[str, Any] = {
        "id": "run-1",
        "workflow": "refund",
        "version": "3",
        "status": "RUNNING",
        "input_json": "{}",
        "output_json": None,
        "error": None,
        "org": "acme",
        "user": "u1",
        "idempotency_key": None,
        "created_at": 1000.0,
        "updated_at": 1000.0,
        "finished_at": None,
        "owner": "w1",
        "epoch": 1,
        "lease_expires_at": None,
        "wake_at": None,
        "trace_id": TRACE,
        "generation": 0,
        "seq_base": 0,
        "cancel_requested": False,
        "phase": "",
        "parent_id": None,
        "meta": {},
    }
    base.update(kw)
    return RunRecord(**base)


LLM_META = {
    "model": "primary",
    "provider": "openai",
    "model_id": "gpt-4o-2024-08-06",
    "response_model": "gpt-4o-2024-08-06",
    "tokens_in": 1200,
    "tokens_out": 300,
    "cost_usd": 0.006,
    "cached": False,
    "latency_ms": 812.5,
    "routing": {"chosen": "primary", "reason": "first choice", "skipped": []},
    "finish_reason": "stop",
    "template_hash": "abc",
}


def llm_entry(seq: int = 0, **kw: Any) -> JournalEntry:
    base: dict[str, Any] = {
        "run_id": "run-1",
        "seq": seq,
        "kind": "llm",
        "name": "triage",
        "status": "completed",
        "result_json": '{"text": "mail bob@example.com"}',
        "started_at": 1001.0,
        "finished_at": 1002.0,
        "meta": dict(LLM_META),
    }
    base.update(kw)
    return JournalEntry(**base)


def tool_entry(seq: int = 1, **kw: Any) -> JournalEntry:
    base: dict[str, Any] = {
        "run_id": "run-1",
        "seq": seq,
        "kind": "tool",
        "name": "lookup_order",
        "status": "completed",
        "result_json": "{}",
        "started_at": 1002.5,
        "finished_at": 1003.0,
        "meta": {
            "args": {"order_id": "A1"},
            "sandbox": "process",
            "duration_ms": 420.0,
            "mutating": False,
            "idempotency_key": "run-1:1",
        },
    }
    base.update(kw)
    return JournalEntry(**base)


def test_chat_span_carries_genai_and_common_attributes() -> None:
    [span] = step_spans(make_run(), llm_entry())
    assert span.name == "chat gpt-4o-2024-08-06"  # semconv: {operation} {gen_ai.request.model}
    assert span.name == f"chat {span.attributes[GEN_AI.REQUEST_MODEL]}"
    assert span.kind == "client"
    a = span.attributes
    assert a[GEN_AI.OPERATION_NAME] == "chat"
    assert a[GEN_AI.PROVIDER_NAME] == "openai"
    assert a[GEN_AI.REQUEST_MODEL] == "gpt-4o-2024-08-06"
    assert a[GEN_AI.RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert a[GEN_AI.USAGE_INPUT_TOKENS] == 1200 and a[GEN_AI.USAGE_OUTPUT_TOKENS] == 300
    assert a[GEN_AI.RESPONSE_FINISH_REASONS] == ["stop"]
    assert a[ATTR.WORKFLOW_VERSION] == "3" and a[ATTR.ORG_ID] == "acme" and a[ATTR.USER_ID] == "u1"
    assert a[ATTR.MODEL_NAME] == "primary"
    assert a[ATTR.TOKENS_INPUT] == 1200 and a[ATTR.COST_USD] == 0.006 and a[ATTR.LATENCY_MS] == 812.5
    assert a[ATTR.SUCCESS] is True and a[ATTR.ERROR_TYPE] == ""
    assert span.trace_id == TRACE and span.parent_span_id == root_span_id("run-1")
    assert GEN_AI.INPUT_MESSAGES not in a and GEN_AI.OUTPUT_MESSAGES not in a  # content is opt-in


def test_tool_review_and_step_span_names() -> None:
    run = make_run()
    [tool] = step_spans(run, tool_entry())
    assert tool.name == "execute_tool lookup_order"
    assert tool.attributes[GEN_AI.TOOL_NAME] == "lookup_order"
    assert tool.attributes[GEN_AI.TOOL_CALL_ID] == "run-1:1"
    assert tool.attributes[ATTR.LATENCY_MS] == 420.0
    review = JournalEntry(
        "run-1", 2, "review", "refund over limit", "completed", "{}", started_at=1003.0, finished_at=1063.0
    )
    [rspan] = step_spans(run, review)
    assert rspan.name == "review.wait" and rspan.attributes[ATTR.WAIT_MS] == 60000.0
    [plain] = step_spans(
        run,
        JournalEntry("run-1", 3, "step", "amount", "completed", "1", started_at=1063.0, finished_at=1063.1),
    )
    assert plain.name == "step amount"
    for span in (tool, rspan, plain):
        assert all(k in span.attributes for k in COMMON), span.name


def test_policy_and_guard_children_from_meta() -> None:
    meta = dict(
        LLM_META,
        guard=[
            {
                "source": "user",
                "action": "flag",
                "score": 0.7,
                "pii_types": ["EMAIL_ADDRESS"],
                "latency_ms": 3,
            }
        ],
    )
    spans = step_spans(make_run(), llm_entry(meta=meta))
    assert [s.name for s in spans] == ["chat gpt-4o-2024-08-06", "guard.scan"]
    assert spans[1].parent_span_id == spans[0].span_id
    assert spans[1].attributes[ATTR.GUARD_PII_TYPES] == ["EMAIL_ADDRESS"]
    tmeta = {"duration_ms": 5, "policy": {"decision": "deny", "latency_ms": 1}}
    tspans = step_spans(
        make_run(), tool_entry(status="failed", meta=tmeta, error={"type": "PolicyDenied", "message": "no"})
    )
    assert [s.name for s in tspans] == ["execute_tool lookup_order", "policy.evaluate"]
    assert not tspans[1].ok and tspans[0].attributes[ATTR.ERROR_TYPE] == "PolicyDenied"


def test_waiting_entries_have_no_span_and_attempts_have_distinct_ids() -> None:
    run = make_run()
    waiting = JournalEntry("run-1", 4, "review", "approve", "waiting", started_at=1.0)
    assert step_spans(run, waiting) == []
    retry = tool_entry(
        status="retrying", attempts=1, finished_at=None, error={"type": "ToolTimeout", "message": "slow"}
    )
    [failed] = step_spans(run, retry, end=1004.0)
    [ok] = step_spans(run, tool_entry(attempts=2))
    assert failed.span_id == step_span_id("run-1", 1, 1) != ok.span_id == step_span_id("run-1", 1, 2)
    assert failed.end == 1004.0 and not failed.ok and failed.attributes[ATTR.ERROR_TYPE] == "ToolTimeout"


def test_a_resumed_run_joins_the_same_trace() -> None:
    """Two workers (two Telemetry objects) produce spans of one trace with the same ids."""

    async def emit(entries: list[JournalEntry], epoch: int) -> list[SpanRecord]:
        got: list[SpanRecord] = []
        tel = Telemetry(config=TelemetrySettings(store_spans=True), metrics=Metrics(), alerts=False)
        tel._emit = got.extend  # type: ignore[method-assign]
        run = make_run(epoch=epoch)
        tel.run_started(run)
        for e in entries:
            tel.step_committed(run, e)
        return got

    first = asyncio.run(emit([llm_entry()], 1))
    second = asyncio.run(emit([tool_entry()], 2))
    rebuilt = trace_from_journal(make_run(), [llm_entry(), tool_entry()])
    assert {s.trace_id for s in first + second} == {TRACE}
    assert [s.span_id for s in first + second] == [s.span_id for s in rebuilt[1:]]


def test_invalid_stored_trace_id_is_replaced_deterministically() -> None:
    a = step_spans(make_run(trace_id="not-hex"), llm_entry())[0]
    b = step_spans(make_run(trace_id=""), llm_entry())[0]
    assert a.trace_id == b.trace_id and len(a.trace_id) == 32 and int(a.trace_id, 16)


def test_content_only_when_opted_in_and_redacted() -> None:
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace("bob@example.com", "{{EMAIL_1}}")

    meta = dict(LLM_META, prompt="write to bob@example.com")
    [span] = step_spans(make_run(), llm_entry(meta=meta), content_redactor=redact)
    assert span.attributes[GEN_AI.INPUT_MESSAGES] == "write to {{EMAIL_1}}"
    assert span.attributes[GEN_AI.OUTPUT_MESSAGES] == "mail {{EMAIL_1}}"
    assert all("bob@example.com" not in str(v) for v in span.attributes.values())
    assert len(seen) == 2

    got: list[SpanRecord] = []
    off = Telemetry(
        config=TelemetrySettings(capture_content=False, store_spans=True), metrics=Metrics(), alerts=False, redactor=redact
    )
    off._emit = got.extend  # type: ignore[method-assign]
    off.step_committed(make_run(), llm_entry(meta=meta))
    assert GEN_AI.INPUT_MESSAGES not in got[0].attributes


def test_span_record_round_trips_through_json() -> None:
    import json

    for span in trace_from_journal(
        make_run(status="COMPLETED", finished_at=1010.0), [llm_entry(), tool_entry()]
    ):
        assert SpanRecord.from_dict(json.loads(json.dumps(span.to_dict()))) == span
