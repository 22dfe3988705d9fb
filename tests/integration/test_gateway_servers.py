"""The gateway against the conventions of servers users run (Ollama, vLLM, llama.cpp-server),
played by the loopback OpenAI-protocol server: tagged model names, no prices, one system
message, and parameters a server does not support."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.errors import BudgetExceeded, ConfigError, ProviderError
from stalwart.gateway import Budget, CallContext, Gateway, LLMRequest
from stalwart.settings import ModelEntry, RouteEntry, Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes import FakeLLMServer

TAGGED = "llama3.1:latest"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.reset()
    server.reply("fine")
    return server


def gateway(srv: FakeLLMServer, **entry: object) -> Gateway:
    e = ModelEntry(provider="openai", model=TAGGED, base_url=srv.openai_url, **entry)  # type: ignore[arg-type]
    return Gateway(Settings(models={"ollama": e}, routes={"default": RouteEntry(models=["ollama"])}))


def ask(*messages: dict[str, str], **kw: object) -> LLMRequest:
    msgs = list(messages) or [{"role": "user", "content": "hi"}]
    return LLMRequest("chat", messages=msgs, **kw)  # type: ignore[arg-type]


async def test_a_floating_tag_is_refused_unless_the_entry_pins_it(srv: FakeLLMServer) -> None:
    with pytest.raises(ConfigError, match=r"floating alias.*models\.ollama\.pinned = true"):
        await gateway(srv).complete(ask(), CallContext(run_id="r"))
    gw = gateway(srv, pinned=True)
    result = await gw.complete(ask(), CallContext(run_id="r"))
    assert result.text == "fine" and srv.requests[-1].model == TAGGED
    await gw.aclose()


async def test_without_prices_cost_is_unknown_and_loud_token_caps_hold_usd_caps_refuse(
    srv: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    gw = gateway(srv, pinned=True)
    with caplog.at_level(logging.WARNING, logger="stalwart.gateway"):
        result = await gw.complete(ask(), CallContext(run_id="r"))
    assert result.cost_known is False and result.cost_usd == 0
    assert "UNKNOWN" in caplog.text
    srv.reply("word " * 300)
    capped = CallContext(run_id="r2", budget=Budget(max_tokens=60))
    out = await gw.complete(ask(max_tokens=500), capped)
    assert out.tokens_in + out.tokens_out <= 60  # max_tokens lowered to fit the token cap
    with pytest.raises(BudgetExceeded, match="cost of ollama is unknown"):
        await gw.complete(ask(), CallContext(run_id="r3", budget=Budget(max_usd=1.0)))
    await gw.aclose()


async def test_developer_messages_fold_into_the_one_system_message(srv: FakeLLMServer) -> None:
    srv.strict_roles = True  # like many llama.cpp / Ollama chat templates
    gw = gateway(srv, pinned=True)
    msgs = (
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
    )
    result = await gw.complete(ask(*msgs), CallContext(run_id="r"))
    sent = srv.requests[-1].body["messages"]
    assert result.text == "fine"
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"] == "Be brief.\n\nAnswer in French."
    await gw.aclose()
    # A server that takes the developer role gets it as is.
    srv.strict_roles = False
    gw = gateway(srv, pinned=True, developer_role="developer")
    await gw.complete(ask(*msgs), CallContext(run_id="r"))
    assert [m["role"] for m in srv.requests[-1].body["messages"]] == ["system", "developer", "user"]
    await gw.aclose()


async def test_an_unsupported_parameter_is_dropped_once_and_remembered(srv: FakeLLMServer) -> None:
    srv.reject_param("temperature")
    gw = gateway(srv, pinned=True)
    result = await gw.complete(ask(temperature=0.2), CallContext(run_id="r"))
    assert result.text == "fine"
    first, retry = srv.requests[-2:]
    assert "temperature" in first.body and "temperature" not in retry.body
    # Remembered per model: the next call goes without it at once.
    await gw.complete(ask(temperature=0.2), CallContext(run_id="r"))
    assert len(srv.requests) == 3 and "temperature" not in srv.requests[-1].body
    await gw.aclose()


async def test_max_tokens_refused_is_renamed_and_a_genuine_bad_request_still_fails(
    srv: FakeLLMServer,
) -> None:
    srv.reject_param("max_tokens")
    gw = gateway(srv, pinned=True)
    await gw.complete(ask(max_tokens=50), CallContext(run_id="r"))
    assert srv.requests[-1].body.get("max_completion_tokens") == 50
    assert "max_tokens" not in srv.requests[-1].body
    # The output cap itself is never dropped (budgets rely on it): a refusal of it fails the call.
    srv.reject_param("max_completion_tokens")
    n = len(srv.requests)
    with pytest.raises(ProviderError, match="Unsupported parameter"):
        await gw.complete(ask(max_tokens=50), CallContext(run_id="r"))
    assert len(srv.requests) - n == 1
    await gw.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_providers_stream_their_tokens_as_they_come(srv: FakeLLMServer, provider: str) -> None:
    srv.reply("streamed piece by piece, as produced")
    url = srv.openai_url if provider == "openai" else srv.anthropic_url
    model = "gpt-4o-2024-08-06" if provider == "openai" else "claude-3-5-sonnet-20241022"
    e = ModelEntry(provider=provider, model=model, base_url=url, price_in_per_mtok=1, price_out_per_mtok=2)  # type: ignore[arg-type]
    gw = Gateway(Settings(models={"m": e}, routes={"default": RouteEntry(models=["m"])}))
    pieces: list[str] = []

    async def on_delta(piece: str) -> None:
        pieces.append(piece)

    result = await gw.complete(ask(), CallContext(run_id="r"), on_delta=on_delta)
    assert len(pieces) > 2 and "".join(pieces) == result.text == "streamed piece by piece, as produced"
    assert srv.requests[-1].body.get("stream") is True and result.tokens_out > 0
    # A stream cut mid-answer is a failure, never a partial success (and not retried once streamed).
    srv.inject("cut")
    with pytest.raises(ProviderError):
        await gw.complete(ask(), CallContext(run_id="r"), on_delta=on_delta)
    await gw.aclose()
