"""The overhead of a governed MCP tool call over a raw SDK call, p50 and p99.

Three ways to call the same tool (``echo`` of ``tests/mcp_servers/benign_server.py``) N times, one
after another, each on an already-started server:

- **raw SDK, plain process**: the official SDK's ``stdio_client`` + ``ClientSession.call_tool``
  on ``python -m benign_server`` (no isolation, no governance): the floor.
- **raw SDK, sandboxed**: the same, with the server started by the bubblewrap argv Stalwart uses
  (isolation costs at start, not per call: this shows it).
- **governed**: ``ctx.tool(docs.tool("echo"), ...)`` inside a workflow on SQLite: allowlist, Cedar
  (resource ``mcp:docs::echo``) and risk as a journaled policy step, the pin check, argument
  validation against the pinned schema, the guard's scan of the result, the journaled tool step and
  its audit entry, each committed. Timed around ``ctx.tool`` inside one run.

Usage: ``python bench/mcp.py [--calls N]``; prints a table and writes ``bench/results/mcp-DATE.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ROOT / "tests" / "mcp_servers"
# This file is named mcp.py: its own directory must not shadow the SDK's ``mcp`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def raw(calls: int, argv: list[str], cwd: str | None) -> list[float]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=argv[0], args=argv[1:], cwd=cwd)
    out = []
    with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 - /dev/null, opened once before the session
        async with stdio_client(params, errlog=errlog) as (r, w), ClientSession(r, w) as session:
            await session.initialize()
            for i in range(calls + 10):
                t = time.perf_counter()
                await session.call_tool("echo", {"text": f"hello {i}"})
                if i >= 10:
                    out.append((time.perf_counter() - t) * 1000)
    return out


async def governed(calls: int) -> list[float]:
    import stalwart as sw

    timings: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        app = sw.App("bench-mcp", db=f"sqlite:///{tmp}/bench.db")
        docs = app.mcp("docs", command=["python", "-m", "benign_server"], code=str(SERVERS))

        @app.workflow(name="bench", version="1", tools=[docs.tool("echo")])
        async def bench(ctx: sw.Context, n: int) -> int:
            for i in range(n):
                t = time.perf_counter()
                await ctx.tool(docs.tool("echo"), text=f"hello {i}")
                timings.append((time.perf_counter() - t) * 1000)
            return n

        try:
            await docs.approve(by="bench")
            async with app.worker(concurrency=1):
                await app.result(await app.start("bench", 10), timeout=300)  # warm-up: session, guard, policy
                timings.clear()
                await app.result(await app.start("bench", calls), timeout=600)
        finally:
            await app.close()
    return timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    from stalwart.sandbox import SandboxLimits, StdioServerSandbox

    sandboxed = StdioServerSandbox(SandboxLimits()).argv(["python", "-m", "benign_server"], code_dir=str(SERVERS))
    results = {
        "raw SDK, plain process": asyncio.run(raw(args.calls, [sys.executable, "-m", "benign_server"], str(SERVERS))),
        "raw SDK, sandboxed": asyncio.run(raw(args.calls, sandboxed, None)),
        "governed ctx.tool": asyncio.run(governed(args.calls)),
    }
    floor = statistics.median(results["raw SDK, plain process"])
    print(f"{'path':28} {'p50 ms':>8} {'p99 ms':>8} {'p50 over raw':>13}")
    rows = {}
    for name, xs in results.items():
        p50, p99 = statistics.median(xs), _pct(xs, 0.99)
        rows[name] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "n": len(xs)}
        print(f"{name:28} {p50:8.2f} {p99:8.2f} {p50 - floor:+12.2f}")
    out = ROOT / "bench" / "results" / f"mcp-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"calls": args.calls, "results": rows, "cpus": os.cpu_count()}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
