"""The gateway against a real HTTP server on loopback that injects provider faults."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from stalwart.errors import ConfigError, OutputValidationError, ProviderError
from stalwart.gateway import CallContext, Gateway, LLMRequest
from stalwart.settings import ModelEntry, RouteEntry, Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # until pytest's pythonpath has the repo root
from tests.fakes import FakeLLMServer

KEY = "sk-test-VERYSECRET-4f2a9c"
PRIMARY, BACKUP, CLAUDE = "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "claude-3-5-haiku-20241022"


class Answer(BaseModel):
    answer: str
    score: int


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(timeout_s=2.0) as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.reset()
    return server


def settings(srv: FakeLLMServer, route: list[str], *, timeout_s: float = 5.0) -> Settings:
    def oai(model: str) -> ModelEntry:
        return ModelEntry(
            provider="openai",
            model=model,
            base_url=srv.openai_url,
            api_key_env="STALWART_TEST_KEY",
            price_in_per_mtok=2.5,
            price_out_per_mtok=10.0,
            timeout_s=timeout_s,
        )

    return Settings(
        models={
            "primary": oai(PRIMARY),
            "backup": oai(BACKUP),
            "claude": ModelEntry(
                provider="anthropic",
                model=CLAUDE,
                base_url=srv.anthropic_url,
                api_key_env="STALWART_TEST_KEY",
                price_in_per_mtok=0.8,
                price_out_per_mtok=4.0,
                timeout_s=timeout_s,
            ),
        },
        routes={"default": RouteEntry(models=route)},
    )


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALWART_TEST_KEY", KEY)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.calls.append(delay)


def ask(text: str = "hello", **kw: object) -> LLMRequest:
    return LLMRequest("chat", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def test_runs_complete_while_a_third_of_calls_fail(srv: FakeLLMServer) -> None:
    srv.fail_ratio(1 / 3, kinds=("500", "503", "429:0", "malformed", "cut"))
    gw = Gateway(settings(srv, ["primary", "backup", "claude"]), sleep=Sleeps())
    gw.breakers.threshold = 1000
    results = [await gw.complete(ask(f"q{i}", stream=i % 2 == 0), CallContext(f"r{i}")) for i in range(60)]
    assert len(results) == 60 and all(r.text.startswith("fake answer to: q") for r in results)
    failed = sum(1 for r in srv.requests if r.fault)
    assert failed >= 60 * 0.2, "the fault injector must actually have failed calls"
    assert sum(1 for r in results if len(r.attempts) > 1) > 0
    await gw.aclose()


async def test_without_fallbacks_the_failure_is_a_retryable_provider_error(srv: FakeLLMServer) -> None:
    srv.inject("500", "500", model=PRIMARY)
    gw = Gateway(settings(srv, ["primary"]), sleep=Sleeps())
    with pytest.raises(ProviderError) as info:
        await gw.complete(ask(), CallContext("r"))
    assert info.value.retryable and info.value.status == 500
    assert [a["kind"] for a in info.value.details["attempts"]] == ["server", "server"]
    await gw.aclose()


async def test_429_retry_after_is_honoured(srv: FakeLLMServer) -> None:
    srv.inject("429:2", model=PRIMARY)
    sleeps = Sleeps()
    gw = Gateway(settings(srv, ["primary", "backup"]), sleep=sleeps)
    res = await gw.complete(ask(), CallContext("r"))
    assert sleeps.calls == [2.0]
    assert res.model == "primary" and [a["outcome"] for a in res.attempts] == ["error", "ok"]
    assert res.attempts[0]["status"] == 429 and res.attempts[0]["waited_s"] == 2.0
    assert srv.count(model=PRIMARY) == 2 and srv.count(model=BACKUP) == 0
    await gw.aclose()


async def test_retry_after_too_long_falls_back_instead_of_waiting(srv: FakeLLMServer) -> None:
    srv.inject("429:120", model=PRIMARY)
    sleeps = Sleeps()
    gw = Gateway(settings(srv, ["primary", "backup"]), sleep=sleeps, max_retry_wait_s=30)
    res = await gw.complete(ask(), CallContext("r"))
    assert sleeps.calls == [] and res.model == "backup"
    await gw.aclose()


async def test_stream_cut_mid_answer_falls_back_and_is_never_a_success(srv: FakeLLMServer) -> None:
    srv.inject("cut", "cut", model=PRIMARY)
    gw = Gateway(settings(srv, ["primary", "backup"]), sleep=Sleeps())
    res = await gw.complete(ask("tell me a long story please", stream=True), CallContext("r"))
    assert res.model == "backup" and res.finish_reason == "stop"
    assert res.text == "fake answer to: tell me a long story please"
    assert [a.get("kind") for a in res.attempts[:2]] == ["stream_cut", "stream_cut"]
    assert res.routing["skipped"][0]["model"] == "primary"
    srv.inject("cut", "cut", model=PRIMARY)
    alone = Gateway(settings(srv, ["primary"]), sleep=Sleeps())
    with pytest.raises(ProviderError, match="mid-answer|before the answer finished"):
        await alone.complete(ask("again", stream=True), CallContext("r"))
    await gw.aclose()
    await alone.aclose()


async def test_timeout_malformed_refusal_and_overflow_fall_back(srv: FakeLLMServer) -> None:
    gw = Gateway(settings(srv, ["primary", "claude"], timeout_s=0.5), sleep=Sleeps(), attempts_per_model=1)
    for fault, kind in [
        ("timeout:1.5", "timeout"),
        ("malformed", "malformed"),
        ("refusal", "content_filter"),
        ("overflow", "context_overflow"),
    ]:
        srv.inject(fault, model=PRIMARY)
        res = await gw.complete(ask(), CallContext("r"))
        assert res.model == "claude" and res.provider == "anthropic", fault
        assert res.attempts[0]["kind"] == kind
    await gw.aclose()


async def test_breaker_opens_and_skips_a_failing_model(srv: FakeLLMServer) -> None:
    srv.inject(*["500"] * 10, model=PRIMARY)
    gw = Gateway(settings(srv, ["primary", "backup"]), sleep=Sleeps(), attempts_per_model=1)
    gw.breakers.threshold = 3
    for _ in range(3):
        assert (await gw.complete(ask(), CallContext("r"))).model == "backup"
    res = await gw.complete(ask(), CallContext("r"))
    assert res.model == "backup" and {"model": "primary", "why": "breaker open"} in res.routing["skipped"]
    assert srv.count(model=PRIMARY) == 3
    await gw.aclose()


async def test_schema_violation_gets_a_correction_then_succeeds(srv: FakeLLMServer) -> None:
    srv.inject("schema", model=PRIMARY)
    gw = Gateway(settings(srv, ["primary"]), sleep=Sleeps())
    res = await gw.complete(ask(output=Answer), CallContext("r"))
    assert res.value == Answer(answer="example", score=1)
    assert [a["outcome"] for a in res.attempts] == ["invalid_output", "ok"]
    second = srv.requests[-1].body
    assert second["response_format"]["type"] == "json_schema"
    assert "did not match the required JSON schema" in second["messages"][-1]["content"]
    assert res.tokens_in == sum(a["tokens_in"] for a in res.attempts) > res.attempts[0]["tokens_in"] > 0
    assert res.cost_usd > 0
    await gw.aclose()


async def test_schema_violation_three_times_falls_back_to_the_next_candidate(srv: FakeLLMServer) -> None:
    srv.inject("schema", "schema", "schema", model=CLAUDE)
    gw = Gateway(settings(srv, ["claude", "primary"]), sleep=Sleeps())
    res = await gw.complete(ask(output=Answer), CallContext("r"))
    assert res.model == "primary" and res.value == Answer(answer="example", score=1)
    assert srv.count(model=CLAUDE) == 3 and srv.count(model=PRIMARY) == 1
    assert [a["outcome"] for a in res.attempts] == ["invalid_output"] * 3 + ["ok"]
    (skipped,) = res.routing["skipped"]
    assert skipped["model"] == "claude" and skipped["why"].startswith("failed: invalid_output: model 'claude'")
    assert res.routing["reason"].startswith("fallback")
    assert res.tokens_in == sum(a["tokens_in"] for a in res.attempts)  # the wrong answers are paid for too
    await gw.aclose()


async def test_schema_violation_three_times_on_the_last_candidate_is_a_non_retryable_output_validation_error(
    srv: FakeLLMServer,
) -> None:
    srv.inject("schema", "schema", "schema", model=CLAUDE)
    gw = Gateway(settings(srv, ["claude"]), sleep=Sleeps())
    with pytest.raises(OutputValidationError) as info:
        await gw.complete(ask(output=Answer), CallContext("r"))
    assert info.value.retryable is False
    assert info.value.details["routing"]["candidates"] == ["claude"]
    assert srv.count(model=CLAUDE) == 3 and srv.count(model=PRIMARY) == 0
    await gw.aclose()


async def test_anthropic_tool_use_round_trip(srv: FakeLLMServer) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "find an order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
    gw = Gateway(settings(srv, ["claude"]))
    res = await gw.complete(ask("where is A-1?", tools=[tool]), CallContext("r"))
    assert (
        res.tool_calls and res.tool_calls[0]["name"] == "lookup_order" and res.finish_reason == "tool_calls"
    )
    body = srv.requests[-1].body
    assert body["tools"][0]["input_schema"]["properties"] == {"order_id": {"type": "string"}}
    await gw.aclose()


async def test_api_key_never_appears_in_errors_or_logs(
    srv: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    srv.inject("401", model=PRIMARY)
    gw = Gateway(settings(srv, ["primary", "backup"]), sleep=Sleeps())
    with pytest.raises(ProviderError) as info:
        await gw.complete(ask(), CallContext("r"))
    assert "Incorrect API key provided" in str(info.value), "the server did echo the key"
    assert srv.count(model=BACKUP) == 0, "an auth failure is not a reason to fall back"
    srv.inject("500", "500", model=PRIMARY)
    res = await gw.complete(ask(), CallContext("r"))
    blobs = [str(info.value), repr(info.value), str(info.value.to_dict()), str(res.to_json()), caplog.text]
    assert not any(KEY in b for b in blobs)
    await gw.aclose()


async def test_missing_key_and_unknown_model_name_the_setting(
    srv: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STALWART_TEST_KEY")
    gw = Gateway(settings(srv, ["primary"]))
    with pytest.raises(ConfigError, match=r"models\.primary\.api_key_env .*STALWART_TEST_KEY"):
        await gw.complete(ask(), CallContext("r"))
    with pytest.raises(ConfigError, match=r"\[models\.gpt5\]"):
        await gw.complete(ask(model="gpt5"), CallContext("r"))
    assert srv.count() == 0
