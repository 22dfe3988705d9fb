"""``stalwart demo``'s model choice and the line it prints per model call (pure: no model runs)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from stalwart.cli._demo_models import demo_settings, model_banner, model_calls
from stalwart.errors import ConfigError
from stalwart.gateway import Gateway
from stalwart.settings import ModelEntry, Settings


def test_the_default_routes_every_model_step_to_the_embedded_model_then_local() -> None:
    s = demo_settings(Settings(), "embedded")
    assert s.models["embedded"].provider == "embedded" and s.models["embedded"].model == "SmolLM2-135M-Instruct"
    assert {task: r.models for task, r in s.routes.items()} == {"default": ["embedded", "local"]}
    gw = Gateway(s)  # the registry accepts it: every route names a known entry
    assert [m.name for m in gw.registry.route("triage")] == ["embedded", "local"]
    assert "SmolLM2-135M-Instruct, real model" in model_banner(s)
    assert "fallback: local (offline, not a real LLM)" in model_banner(s)


def test_local_keeps_the_scripted_model_alone_even_over_configured_routes() -> None:
    configured = Settings(models={"small": ModelEntry(provider="embedded", model="SmolLM2-135M-Instruct")},
                          routes={"triage": {"models": ["small"]}})
    s = demo_settings(configured, "local")
    assert {task: r.models for task, r in s.routes.items()} == {"default": ["local"]}
    assert [m.name for m in Gateway(s).registry.route("triage")] == ["local"]
    assert model_banner(s) == "Model: [bold]local (offline, not a real LLM)[/bold]."


def test_a_configured_entry_can_answer_and_an_unknown_name_is_refused() -> None:
    configured = Settings(models={"small": ModelEntry(provider="embedded", model="SmolLM2-135M-Instruct")})
    assert demo_settings(configured, "small").routes["default"].models == ["small", "local"]
    with pytest.raises(ConfigError, match=r"demo --model 'nope' is not a \[models.nope\] entry.*known: embedded, "
                                          r"local, small"):
        demo_settings(configured, "nope")


def _llm(name: str, meta: dict[str, Any], value: Any = None, error: dict[str, Any] | None = None) -> Any:
    result = None if value is None else json.dumps({"value": value})
    return SimpleNamespace(kind="llm", name=name, meta=meta, result_json=result, error=error)


def test_each_model_call_says_who_answered_and_where_it_fell_back() -> None:
    s = demo_settings(Settings(), "embedded")
    why = ("failed: invalid_output: model 'embedded' answered 3 times without matching Triage: amount_cents: "
           "Value error, 10 is not the amount the ticket states in cents ($12.50 is 1250)")
    journal = [
        SimpleNamespace(kind="tool", name="lookup_order", meta={}, result_json="{}", error=None),
        _llm("triage", {"model": "local", "tokens_in": 900, "tokens_out": 140, "latency_ms": 2500.0,
                        "routing": {"chosen": "local", "skipped": [{"model": "embedded", "why": why}]}},
             {"order_id": "A-1001", "amount_cents": 1000}),
        _llm("reply", {"model": "embedded", "tokens_in": 160, "tokens_out": 40, "latency_ms": 1200.0,
                       "routing": {"chosen": "embedded", "skipped": []}}, {"email": "{{EMAIL_1}}", "body": "[x]"}),
        _llm("summary", {}, error={"message": "model 'local' answered 3 times without matching Summary"}),
    ]
    triage, reply, failed = model_calls(journal, s)
    assert triage.startswith("[yellow]triage: FALLBACK[/yellow] embedded answered 3 times without matching "
                             "Triage: amount_cents: 10 is not the amount the ticket states")
    assert "→ answered by [bold]local (offline, not a real LLM)[/bold] (900+140 tok, 2.5 s)" in triage
    assert triage.endswith('{"order_id": "A-1001", "amount_cents": 1000}')
    assert reply.startswith("reply: answered by [bold]embedded (SmolLM2-135M-Instruct, real model, in-process, "
                            "CPU)[/bold] (160+40 tok, 1.2 s)")
    assert "FALLBACK" not in reply and r'"\[x]"' in reply  # the model's text is escaped, not read as markup
    assert failed.startswith("[red]summary: no model answered[/red] (model 'local' answered 3 times")


def test_a_provider_failure_is_named_as_such() -> None:
    s = demo_settings(Settings(), "embedded")
    meta = {"model": "local", "routing": {"skipped": [
        {"model": "embedded", "why": "breaker open"},  # not tried: not a fallback
        {"model": "embedded", "why": "failed: timeout: embedded model 'embedded' timed out"}]}}
    (line,) = model_calls([_llm("triage", meta, {"ok": 1})], s)
    assert "FALLBACK[/yellow] embedded failed: timeout: embedded model 'embedded' timed out → answered by" in line
    assert "breaker" not in line
