"""The ``local`` provider: an offline, deterministic stand-in for a model. It is NOT a real LLM.

It answers from a scripted policy, rules over the prompt variables: facts are pulled from the
variables (or, without variables, from the last user message) with plain regular expressions,
then poured into the requested JSON Schema, a tool call, or a short labelled text. Token usage is
counted with the bundled tokenizer. Same input, same output, always.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from stalwart.gateway._providers._base import canonical_tool
from stalwart.gateway._tokens import count_messages, count_text, encoding_for
from stalwart.gateway._types import LOCAL_LABEL, ProviderRequest, ProviderResponse

__all__ = ["LOCAL_MODEL_ID", "LocalProvider", "LocalRule", "extract_facts"]

LOCAL_MODEL_ID = "local-scripted-1"

_ORDER = re.compile(r"\b([A-Z]{1,4}-\d{3,10})\b")
_MONEY = [
    re.compile(r"[$€£]\s?(\d{1,7}(?:,\d{3})*(?:\.\d{1,2})?)"),
    re.compile(r"\b(\d{1,7}(?:\.\d{1,2})?)\s?(?:usd|dollars?|eur|euros?|gbp)\b", re.IGNORECASE),
]
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_INTENTS = [
    (
        "refund",
        re.compile(
            r"refund|money back|reimburs|charged (?:me )?twice|double charge|return (?:it|this|the)",
            re.IGNORECASE,
        ),
    ),
    ("cancel", re.compile(r"\bcancel", re.IGNORECASE)),
    ("complaint", re.compile(r"broken|damaged|terrible|unacceptable|angry|complain", re.IGNORECASE)),
    ("question", re.compile(r"\?|how do|where is|when will|can i|question", re.IGNORECASE)),
]
_URGENT = re.compile(r"urgent|asap|immediately|right now|!!|emergency", re.IGNORECASE)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_flatten(v, str(k)))
            if prefix:
                out.setdefault(f"{prefix}_{k}", v)
    elif prefix:
        out[prefix] = value
    return out


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_text_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(_text_of(v) for v in value)
    return "" if value is None else str(value)


def extract_facts(variables: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The facts the scripted policy answers from: flattened variables plus regex findings."""
    facts = _flatten(variables)
    text = _text_of(variables) if variables else ""
    if not text:
        users = [m for m in messages if m.get("role") == "user"]
        text = _text_of(users[-1].get("content")) if users else ""
    facts["_text"] = text
    if (m := _ORDER.search(text)) and "order_id" not in facts:
        facts["order_id"] = m.group(1)
    if "amount_cents" not in facts:
        for pat in _MONEY:
            if m := pat.search(text):
                facts["amount_cents"] = round(float(m.group(1).replace(",", "")) * 100)
                break
    if (m := _EMAIL.search(text)) and "email" not in facts:
        facts["email"] = m.group(0)
    if "intent" not in facts:
        facts["intent"] = next((name for name, pat in _INTENTS if pat.search(text)), "other")
    if "urgency" not in facts:
        big = int(facts.get("amount_cents") or 0) >= 50_000
        facts["urgency"] = "high" if _URGENT.search(text) or big else "normal"
    return facts


def _fill(schema: dict[str, Any], facts: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
    if "$ref" in schema:
        return _fill(defs.get(schema["$ref"].split("/")[-1], {}), facts, defs, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            if name in facts and facts[name] is None and len(options) < len(schema[key]):
                return None
            return _fill(options[0] if options else {"type": "null"}, facts, defs, name)
    kind = schema.get("type")
    value = facts.get(name)
    if "enum" in schema:
        choices = schema["enum"]
        if value in choices:
            return value
        for c in choices:
            if isinstance(c, str) and isinstance(value, str) and (c in value or value in c):
                return c
        fallback = [c for c in choices if c in ("other", "unknown", "normal", "medium", "low")]
        return fallback[0] if fallback else choices[0]
    if "const" in schema:
        return schema["const"]
    if kind == "object":
        props = schema.get("properties", {})
        sub = {**facts, **value} if isinstance(value, dict) else facts
        return {k: _fill(v, sub, defs, k) for k, v in props.items()}
    if kind == "array":
        return value if isinstance(value, list) else []
    if kind == "integer":
        try:
            return int(value) if value is not None else int(schema.get("default", schema.get("minimum", 0)))
        except (TypeError, ValueError):
            return 0
    if kind == "number":
        try:
            return (
                float(value) if value is not None else float(schema.get("default", schema.get("minimum", 0)))
            )
        except (TypeError, ValueError):
            return 0.0
    if kind == "boolean":
        return bool(value) if value is not None else bool(schema.get("default", False))
    if kind == "null":
        return None
    if value is None:
        return str(schema.get("default", "unknown" if name else ""))
    return (
        value
        if isinstance(value, str)
        else json.dumps(value)
        if isinstance(value, (dict, list))
        else str(value)
    )


def answer_with_schema(schema: dict[str, Any], facts: dict[str, Any]) -> str:
    """A JSON document shaped by ``schema`` with values taken from ``facts`` where names match."""
    return json.dumps(_fill(schema, facts, schema.get("$defs", {})), sort_keys=False)


LocalRule = Callable[[ProviderRequest, dict[str, Any]], "ProviderResponse | None"]
"""A scripted rule: return an answer, or ``None`` to let the next rule decide."""


def _tool_rule(req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse | None:
    if not req.tools or any(m.get("role") == "tool" for m in req.messages):
        return None
    for tool in map(canonical_tool, req.tools):
        params = tool["parameters"]
        required = params.get("required", [])
        if all(r in facts for r in required):
            args = {k: facts[k] for k in params.get("properties", {}) if k in facts}
            call = {"id": f"call_local_{tool['name']}", "name": tool["name"], "arguments": args}
            return ProviderResponse("", 0, 0, LOCAL_MODEL_ID, "tool_calls", [call])
    return None


def _schema_rule(req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse | None:
    if req.json_schema is None:
        return None
    return ProviderResponse(answer_with_schema(req.json_schema, facts), 0, 0, LOCAL_MODEL_ID, "stop")


def _text_rule(req: ProviderRequest, facts: dict[str, Any]) -> ProviderResponse:
    tool_results = [str(m.get("content") or "") for m in req.messages if m.get("role") == "tool"]
    if tool_results:
        body = "based on the tool result: " + tool_results[-1][:300]
    else:
        summary = {k: facts[k] for k in ("order_id", "intent", "amount_cents", "urgency") if k in facts}
        body = f"task {req.task or 'chat'}; facts {json.dumps(summary, sort_keys=True)}"
    return ProviderResponse(f"[{LOCAL_LABEL}] {body}", 0, 0, LOCAL_MODEL_ID, "stop")


class LocalProvider:
    """The offline scripted model. ``rules`` run before the built-in ones (tool call, schema, text)."""

    name = "local"
    supports_json_schema = True
    label = LOCAL_LABEL

    def __init__(self, rules: list[LocalRule] | None = None) -> None:
        self._rules: list[LocalRule] = [*(rules or []), _tool_rule, _schema_rule]

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        facts = extract_facts(req.vars, req.messages)
        resp = next((r for rule in self._rules if (r := rule(req, facts)) is not None), None)
        if resp is None:
            resp = _text_rule(req, facts)
        text = resp.text
        tokens_out = count_text(text) + sum(count_text(json.dumps(c["arguments"])) for c in resp.tool_calls)
        finish = resp.finish_reason
        if tokens_out > req.max_tokens:
            enc = encoding_for(LOCAL_MODEL_ID)
            text = enc.decode(enc.encode(text, disallowed_special=())[: req.max_tokens])
            tokens_out, finish = req.max_tokens, "length"
        return ProviderResponse(
            text=text,
            tokens_in=count_messages(req.messages, LOCAL_MODEL_ID, req.tools),
            tokens_out=tokens_out,
            response_model=f"{LOCAL_MODEL_ID} (offline, not a real LLM)",
            finish_reason=finish,
            tool_calls=resp.tool_calls,
        )

    async def aclose(self) -> None:
        return None
