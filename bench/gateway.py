"""Gateway per-call overhead: Stalwart vs LiteLLM against the same loopback OpenAI-compatible server.

    .venv/bin/python bench/gateway.py [--n 400]

Overhead excludes the provider's own latency: each side's p50 minus the p50 of a raw HTTP round
trip (alternated call by call with it) with the same body from the same kind of client (async httpx for Stalwart, whose SDK is
async; sync httpx for LiteLLM's ``completion``). Stalwart runs with routing (two candidates),
a run budget, a per-org monthly cap (store counters), breakers and the response-cache lookup
(SQLite store) on, and serialises each result as the engine journals it. LiteLLM runs in
``bench/.venv`` (see bench/requirements.txt); without it its column is skipped with a message.
Also reports the cache hit rate of a repeated workload (Zipf-like draws over 200 prompts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx

from stalwart.gateway import Budget, CallContext, Gateway, LLMRequest
from stalwart.settings import ModelEntry, RouteEntry, Settings
from stalwart.store import open_store
from tests.fakes import FakeLLMServer

MODEL = "gpt-4o-2024-08-06"
BENCH_VENV_PY = ROOT / "bench" / ".venv" / "bin" / "python"

LITELLM_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import httpx, litellm
    litellm.telemetry = False
    url, n, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    def body(i):
        return {"model": model, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 64}
    raw, lite = [], []
    with httpx.Client(base_url=url) as client:
        for i in range(30):
            client.post("/chat/completions", json=body(i), headers={"Authorization": "Bearer x"})
            litellm.completion(model="openai/" + model, api_base=url, api_key="x",
                               messages=body(i)["messages"], max_tokens=64)
        for i in range(n):
            t = time.perf_counter()
            client.post("/chat/completions", json=body(i), headers={"Authorization": "Bearer x"}).json()
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            litellm.completion(model="openai/" + model, api_base=url, api_key="x",
                               messages=body(i)["messages"], max_tokens=64)
            lite.append(time.perf_counter() - t)
    print(json.dumps({"raw": raw, "litellm": lite, "version": litellm.__version__ if hasattr(litellm, "__version__") else ""}))
    """
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


def settings(srv: FakeLLMServer) -> Settings:
    def entry(model: str) -> ModelEntry:
        return ModelEntry(
            provider="openai",
            model=model,
            base_url=srv.openai_url,
            price_in_per_mtok=2.5,
            price_out_per_mtok=10.0,
        )

    return Settings(
        models={"primary": entry(MODEL), "backup": entry("gpt-4o-mini-2024-07-18")},
        routes={"default": RouteEntry(models=["primary", "backup", "local"])},
    )


async def stalwart_side(srv: FakeLLMServer, n: int, tmp: Path) -> dict[str, list[float]]:
    store = await open_store(f"sqlite:///{tmp}/bench.db", migrate=True)
    gw = Gateway(settings(srv), store, org_monthly_caps={"acme": Budget(max_usd=1e9)})
    budget = Budget(max_tokens=10**12, max_usd=1e9)
    raw: list[float] = []
    ours: list[float] = []
    body = lambda i: {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"question {i}"}],
        "max_tokens": 64,
    }
    async with httpx.AsyncClient(base_url=srv.openai_url) as client:

        async def one(i: int) -> None:
            req = LLMRequest(
                "chat", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=64, cacheable=True
            )
            res = await gw.complete(req, CallContext(f"run-{i}", org="acme", user="u", budget=budget))
            json.dumps(res.to_json())

        for i in range(30):
            await client.post("/chat/completions", json=body(i), headers={"Authorization": "Bearer x"})
            await one(-i - 1)
        for i in range(n):
            t = time.perf_counter()
            (
                await client.post("/chat/completions", json=body(i), headers={"Authorization": "Bearer x"})
            ).json()
            raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            await one(i)
            ours.append(time.perf_counter() - t)
    await gw.aclose()
    await store.close()
    return {"raw": raw, "stalwart": ours}


async def cache_workload(
    srv: FakeLLMServer, tmp: Path, calls: int = 600, distinct: int = 200
) -> dict[str, float]:
    store = await open_store(f"sqlite:///{tmp}/cache.db", migrate=True)
    gw = Gateway(settings(srv), store)
    rng = random.Random(7)
    weights = [1 / (k + 1) for k in range(distinct)]
    before = srv.count()
    hits = 0
    for i in range(calls):
        k = rng.choices(range(distinct), weights)[0]
        res = await gw.complete(
            LLMRequest(
                "faq", messages=[{"role": "user", "content": f"faq {k}"}], max_tokens=64, temperature=0
            ),
            CallContext(f"c{i}"),
        )
        hits += res.cached
    await gw.aclose()
    await store.close()
    return {
        "calls": calls,
        "distinct": distinct,
        "hit_rate": hits / calls,
        "provider_calls": srv.count() - before,
    }


def litellm_side(srv: FakeLLMServer, n: int) -> dict[str, object] | str:
    if not BENCH_VENV_PY.exists():
        return (
            "LiteLLM skipped: bench/.venv is missing (python3 -m venv bench/.venv; then the two pip lines "
            "in bench/requirements.txt)"
        )
    proc = subprocess.run(
        [str(BENCH_VENV_PY), "-c", LITELLM_SCRIPT, srv.openai_url, str(n), MODEL],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    if proc.returncode != 0:
        return "LiteLLM skipped: it failed to run: " + proc.stderr.strip().splitlines()[-1][:300]
    return json.loads(proc.stdout.strip().splitlines()[-1])


class ServerProcess:
    """The fake server in its own process, so that no client shares its interpreter lock."""

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.llm_server"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.openai_url = self.url + "/v1"
        return self

    def count(self) -> int:
        return -1

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="measured calls per side")
    args = ap.parse_args()
    n = max(50, args.n)
    with ServerProcess() as srv, tempfile.TemporaryDirectory() as tmp:
        ours = asyncio.run(stalwart_side(srv, n, Path(tmp)))  # type: ignore[arg-type]
        lite = litellm_side(srv, n)  # type: ignore[arg-type]
    with FakeLLMServer() as local_srv, tempfile.TemporaryDirectory() as tmp:
        cache = asyncio.run(cache_workload(local_srv, Path(tmp)))
    ms = 1000.0
    s_raw, s_gw = pct(ours["raw"], 50) * ms, pct(ours["stalwart"], 50) * ms
    s_over = s_gw - s_raw
    s_over95 = pct(ours["stalwart"], 95) * ms - pct(ours["raw"], 95) * ms
    print(
        f"# Gateway overhead ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, n={n} per side, loopback fake server)"
    )
    print()
    print("| client | raw HTTP p50 (ms) | client p50 (ms) | overhead p50 (ms) | overhead p95 (ms) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| Stalwart gateway (routing, budget, org cap, breakers, cache lookup, journal JSON) "
        f"| {s_raw:.3f} | {s_gw:.3f} | {s_over:.3f} | {s_over95:.3f} |"
    )
    if isinstance(lite, str):
        print(f"| LiteLLM completion | – | – | – | – |\n\n{lite}")
    else:
        l_raw, l_c = pct(lite["raw"], 50) * ms, pct(lite["litellm"], 50) * ms  # type: ignore[arg-type]
        l_over = l_c - l_raw
        l_over95 = pct(lite["litellm"], 95) * ms - pct(lite["raw"], 95) * ms  # type: ignore[arg-type]
        print(
            f"| LiteLLM {lite.get('version') or '1.80.0'} completion | {l_raw:.3f} | {l_c:.3f} | {l_over:.3f} "
            f"| {l_over95:.3f} |"
        )
        ratio = s_over / l_over if l_over > 0 else float("inf")
        print()
        print(
            f"Stalwart overhead / LiteLLM overhead at p50: {ratio:.2f} (target <= 0.33): "
            f"{'PASS' if ratio <= 1 / 3 else 'FAIL'}"
        )
    print()
    print(
        f"Cache on a repeated workload: {cache['calls']} calls over {cache['distinct']} prompts (Zipf-like): "
        f"hit rate {cache['hit_rate']:.1%} (target > 40%), provider calls {cache['provider_calls']}"
    )


if __name__ == "__main__":
    main()
