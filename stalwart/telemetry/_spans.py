"""Spans as plain values, built post hoc from a run and its journal entries (pure).

A journal entry carries ``started_at``/``finished_at``, so its span is built after the commit,
from recorded data alone: the same entry gives the same span on any worker, and a trace can be
rebuilt from the journal when no exporter was running.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stalwart.telemetry._ids import child_span_id, root_span_id, step_span_id, trace_id_of
from stalwart.telemetry._semconv import ATTR, GEN_AI, SPAN

__all__ = ["RunLike", "SpanRecord", "run_span", "step_spans", "trace_from_journal"]

AttrValue = str | bool | int | float | list[str]


class RunLike(Protocol):
    """What telemetry reads from a run (``RunRecord`` and ``RunInfo`` both fit)."""

    id: str
    workflow: str
    version: str
    org: str
    user: str
    trace_id: str
    created_at: float


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span. Times are Unix seconds; ids are lower-case hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start: float
    end: float
    attributes: dict[str, AttrValue]
    ok: bool = True
    error: str | None = None
    kind: str = "internal"
    """``internal`` or ``client`` (model calls leave the process)."""
    run_id: str = ""
    events: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (what the store keeps)."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "attributes": self.attributes,
            "ok": self.ok,
            "error": self.error,
            "kind": self.kind,
            "run_id": self.run_id,
            "events": list(self.events),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpanRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            trace_id=d["trace_id"],
            span_id=d["span_id"],
            parent_span_id=d.get("parent_span_id"),
            name=d["name"],
            start=float(d["start"]),
            end=float(d["end"]),
            attributes=dict(d.get("attributes") or {}),
            ok=bool(d.get("ok", True)),
            error=d.get("error"),
            kind=d.get("kind", "internal"),
            run_id=d.get("run_id", ""),
            events=tuple(d.get("events") or ()),
        )

    @property
    def duration_ms(self) -> float:
        return max(0.0, (self.end - self.start) * 1000.0)


def _common(
    run: RunLike,
    *,
    model: str = "",
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: float = 0.0,
    latency_ms: float = 0.0,
    ok: bool = True,
    error_type: str = "",
) -> dict[str, AttrValue]:
    return {
        ATTR.RUN_ID: run.id,
        ATTR.WORKFLOW_NAME: run.workflow,
        ATTR.WORKFLOW_VERSION: run.version,
        ATTR.ORG_ID: run.org or "",
        ATTR.USER_ID: run.user or "",
        ATTR.MODEL_NAME: model,
        ATTR.TOKENS_INPUT: int(tokens_in),
        ATTR.TOKENS_OUTPUT: int(tokens_out),
        ATTR.COST_USD: float(cost),
        ATTR.LATENCY_MS: round(float(latency_ms), 3),
        ATTR.SUCCESS: ok,
        ATTR.ERROR_TYPE: error_type,
    }


def _num(meta: dict[str, Any], key: str, default: float = 0.0) -> float:
    try:
        return float(meta.get(key) or default)
    except (TypeError, ValueError):
        return default


def _error_type(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    return str(error.get("type") or error.get("code") or "error")


Redactor = Callable[[str], str]


def step_spans(
    run: RunLike, entry: Any, *, end: float | None = None, content_redactor: Redactor | None = None
) -> list[SpanRecord]:
    """The span of one journal entry (one attempt of one step), plus its guard/policy children.

    ``entry`` is a ``JournalEntry``. ``end`` stands in for ``finished_at`` when the entry has none
    (a failed attempt that will be retried). Entries still waiting produce no span: the same span
    id is produced once they complete. ``content_redactor`` (opt-in) puts redacted prompt and
    response text on model spans.
    """
    if entry.status == "waiting" or entry.started_at is None:
        return []
    start = float(entry.started_at)
    stop = float(entry.finished_at if entry.finished_at is not None else (end if end is not None else start))
    stop = max(stop, start)
    meta: dict[str, Any] = entry.meta or {}
    ok = entry.status == "completed"
    err_type = "" if ok else _error_type(entry.error)
    trace = trace_id_of(run.id, run.trace_id)
    sid = step_span_id(run.id, entry.seq, entry.attempts)
    parent = root_span_id(run.id)
    elapsed_ms = (stop - start) * 1000.0
    kind = entry.kind
    span_kind = "internal"
    model = ""
    tin = tout = 0
    cost = 0.0
    latency = elapsed_ms
    extra: dict[str, AttrValue] = {}
    if kind == "llm":
        model = str(meta.get("model") or meta.get("model_id") or "unknown")
        tin, tout = int(_num(meta, "tokens_in")), int(_num(meta, "tokens_out"))
        cost = _num(meta, "cost_usd")
        latency = _num(meta, "latency_ms", elapsed_ms)
        request_model = str(meta.get("model_id") or model)
        # semconv names a client span `{gen_ai.operation.name} {gen_ai.request.model}`; the registry
        # entry's name ("primary", "local") stays in stalwart.model.name.
        name = SPAN.CHAT.format(model=request_model)
        span_kind = "client"
        extra = {
            GEN_AI.OPERATION_NAME: GEN_AI.OP_CHAT,
            GEN_AI.PROVIDER_NAME: str(meta.get("provider") or ""),
            GEN_AI.REQUEST_MODEL: request_model,
            GEN_AI.RESPONSE_MODEL: str(meta.get("response_model") or meta.get("model_id") or model),
            GEN_AI.USAGE_INPUT_TOKENS: tin,
            GEN_AI.USAGE_OUTPUT_TOKENS: tout,
            GEN_AI.RESPONSE_FINISH_REASONS: [str(meta["finish_reason"])] if meta.get("finish_reason") else [],
            ATTR.CACHE_HIT: bool(meta.get("cached", False)),
        }
        routing = meta.get("routing")
        if isinstance(routing, dict) and routing.get("reason"):
            extra[ATTR.ROUTING_REASON] = str(routing["reason"])
        if content_redactor is not None:
            extra.update(_content(meta, entry.result_json, content_redactor))
    elif kind == "tool":
        name = SPAN.EXECUTE_TOOL.format(name=entry.name)
        latency = _num(meta, "duration_ms", elapsed_ms)
        extra = {
            GEN_AI.OPERATION_NAME: GEN_AI.OP_EXECUTE_TOOL,
            GEN_AI.TOOL_NAME: entry.name,
            GEN_AI.TOOL_CALL_ID: str(meta.get("idempotency_key") or f"{run.id}:{entry.seq}"),
            ATTR.TOOL_SANDBOX: str(meta.get("sandbox") or ""),
            ATTR.TOOL_MUTATING: bool(meta.get("mutating", False)),
        }
    elif kind == "review":
        name = SPAN.REVIEW
        extra = {"review.name": entry.name, ATTR.WAIT_MS: round(elapsed_ms, 3)}
    elif kind == "sleep":
        name = SPAN.SLEEP
        extra = {ATTR.WAIT_MS: round(elapsed_ms, 3)}
    elif kind == "signal":
        name = SPAN.SIGNAL.format(name=str(meta.get("signal") or entry.name.removeprefix("signal:")))
        extra = {ATTR.WAIT_MS: round(elapsed_ms, 3), "signal.timed_out": bool(meta.get("timed_out", False))}
    elif kind == "compensation":
        name = SPAN.COMPENSATION.format(name=entry.name)
    else:
        name = SPAN.STEP.format(name=entry.name)
    attrs = _common(
        run,
        model=model,
        tokens_in=tin,
        tokens_out=tout,
        cost=cost,
        latency_ms=latency,
        ok=ok,
        error_type=err_type,
    )
    attrs.update(extra)
    attrs[ATTR.STEP_SEQ] = int(entry.seq)
    attrs[ATTR.STEP_KIND] = kind
    attrs[ATTR.STEP_NAME] = entry.name
    attrs[ATTR.STEP_ATTEMPT] = int(entry.attempts)
    attrs[ATTR.STEP_STATUS] = entry.status
    message = None if ok else str((entry.error or {}).get("message") or err_type)[:500]
    spans = [SpanRecord(trace, sid, parent, name, start, stop, attrs, ok, message, span_kind, run.id)]
    spans.extend(_children(run, trace, sid, start, meta, model))
    return spans


def _children(
    run: RunLike, trace: str, parent: str, start: float, meta: dict[str, Any], model: str
) -> list[SpanRecord]:
    """``policy.evaluate`` and ``guard.scan`` spans recorded in the entry's meta by the engine."""
    out: list[SpanRecord] = []
    policy = meta.get("policy")
    if isinstance(policy, dict):
        lat = _num(policy, "latency_ms")
        decision = str(policy.get("decision") or "")
        allowed = decision.lower() in ("allow", "allowed", "permit")
        attrs = _common(
            run, model=model, latency_ms=lat, ok=allowed, error_type="" if allowed else "PolicyDenied"
        )
        attrs[ATTR.POLICY_DECISION] = decision
        out.append(
            SpanRecord(
                trace,
                child_span_id(parent, SPAN.POLICY),
                parent,
                SPAN.POLICY,
                start,
                start + lat / 1000.0,
                attrs,
                allowed,
                None if allowed else decision,
                "internal",
                run.id,
            )
        )
    scans = meta.get("guard")
    if isinstance(scans, dict):
        scans = [scans]
    if isinstance(scans, list):
        for n, scan in enumerate(scans):
            if not isinstance(scan, dict):
                continue
            lat = _num(scan, "latency_ms")
            action = str(scan.get("action") or "allow")
            attrs = _common(
                run,
                model=model,
                latency_ms=lat,
                ok=action != "block",
                error_type="" if action != "block" else "GuardBlocked",
            )
            attrs[ATTR.GUARD_SOURCE] = str(scan.get("source") or "")
            attrs[ATTR.GUARD_ACTION] = action
            attrs[ATTR.GUARD_SCORE] = _num(scan, "score")
            attrs[ATTR.GUARD_PII_TYPES] = [str(t) for t in scan.get("pii_types") or []]
            out.append(
                SpanRecord(
                    trace,
                    child_span_id(parent, SPAN.GUARD, n),
                    parent,
                    SPAN.GUARD,
                    start,
                    start + lat / 1000.0,
                    attrs,
                    action != "block",
                    None,
                    "internal",
                    run.id,
                )
            )
    return out


def _content(meta: dict[str, Any], result_json: str | None, redact: Redactor) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    prompt = meta.get("prompt") or meta.get("messages")
    if prompt:
        text = prompt if isinstance(prompt, str) else json.dumps(prompt, default=str)
        out[GEN_AI.INPUT_MESSAGES] = redact(text)[:8000]
    if result_json:
        try:
            value = json.loads(result_json)
        except ValueError:
            value = result_json
        answer: Any = value.get("text") if isinstance(value, dict) and "text" in value else value
        out[GEN_AI.OUTPUT_MESSAGES] = redact(
            answer if isinstance(answer, str) else json.dumps(answer, default=str)
        )[:8000]
    return out


def run_span(
    run: RunLike,
    status: str,
    *,
    end: float,
    cost_usd: float = 0.0,
    tokens: int = 0,
    tokens_in: int | None = None,
    tokens_out: int | None = None,
    error: dict[str, Any] | None = None,
) -> SpanRecord:
    """The ``workflow.run`` root span, from the run's creation to ``end``."""
    ok = status.upper() not in ("FAILED", "CANCELLED", "DEAD_LETTER")
    start = float(run.created_at)
    stop = max(float(end), start)
    tin = tokens_in if tokens_in is not None else 0
    tout = tokens_out if tokens_out is not None else max(0, int(tokens) - tin)
    attrs = _common(
        run,
        tokens_in=tin,
        tokens_out=tout,
        cost=cost_usd,
        latency_ms=(stop - start) * 1000.0,
        ok=ok,
        error_type="" if ok else (_error_type(error) or status.upper()),
    )
    attrs[ATTR.RUN_STATUS] = status.upper()
    attrs["tokens.total"] = int(tokens)
    message = None if ok else str((error or {}).get("message") or status)[:500]
    return SpanRecord(
        trace_id_of(run.id, run.trace_id),
        root_span_id(run.id),
        None,
        SPAN.WORKFLOW_RUN,
        start,
        stop,
        attrs,
        ok,
        message,
        "internal",
        run.id,
    )


def trace_from_journal(run: Any, journal: list[Any]) -> list[SpanRecord]:
    """Rebuild a run's trace from its journal alone (no exporter needed), root span first.

    Only the last attempt of each step is in the journal, so earlier failed attempts are absent.
    """
    spans: list[SpanRecord] = []
    tokens_in = tokens_out = 0
    cost = 0.0
    for e in journal:
        spans.extend(step_spans(run, e))
        if e.kind == "llm" and e.status == "completed" and e.meta:
            tokens_in += int(_num(e.meta, "tokens_in"))
            tokens_out += int(_num(e.meta, "tokens_out"))
            cost += _num(e.meta, "cost_usd")
    status = getattr(run.status, "value", run.status)
    end = run.finished_at or max((s.end for s in spans), default=run.created_at)
    root = run_span(
        run,
        str(status),
        end=end,
        cost_usd=cost,
        tokens=tokens_in + tokens_out,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        error=getattr(run, "error", None),
    )
    return [root, *spans]
