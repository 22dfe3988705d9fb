"""One trivial Python tool, side by side in one run: plain subprocess, Stalwart's BwrapSandbox
cold (a fresh sandbox started for the call), the single-use warm pool (a sandbox started ahead of
the call, module imported, used once), gVisor ``runsc do --network=none`` (when installed), each
for a bare module (``ping`` below, standard library only) and a real app module
(``bench/sandbox_app.py``: ``import stalwart as sw``, an ``App``, ``@app.tool``); and the app
module's tool end to end through ``ctx.tool`` in a workflow, cold and with the pool warm.

Run as root (so tools run under the sandbox uid with cgroups, as in production):
    .venv/bin/python bench/sandbox.py [--n 100]
"Pool warm" means the pool had its entry ready when the call came (the benchmark waits for the
background refill between calls, as the gaps between a workflow's steps do); "pool, back to back"
does not wait, and shows what happens when calls outpace the refill.
Targets (issue 16): ctx.tool of the app module's tool, pool warm: p50 <= 15 ms, p99 <= 40 ms.
"""

from __future__ import annotations

import os
import sys
import time

# Only cheap imports at module level: the sandboxed runs import this module to find ``ping``.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3.11"
TRIVIAL = "import sys; sys.stdout.write(str(int(sys.argv[1]) + 1))"


BARE = "bench.sandbox"
APP = "bench.sandbox_app"


def ping(n: int) -> int:
    """The trivial tool (also what the end-to-end workflow calls, sandboxed)."""
    return n + 1


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def plain_subprocess(n: int) -> list[float]:
    import asyncio

    out = []
    for _ in range(n):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            PY, "-I", "-S", "-c", TRIVIAL, "1", stdout=asyncio.subprocess.PIPE
        )
        data, _ = await proc.communicate()
        assert data == b"2"
        out.append((time.perf_counter() - t) * 1000)
    return out


async def bwrap_sandbox(n: int, module: str, mode: str) -> list[float]:
    """``mode``: ``cold`` (pool off), ``warm`` (wait for the refill before each call), ``burst``."""
    from stalwart.sandbox import BwrapSandbox, ToolInvocation

    sb = BwrapSandbox(pool=mode != "cold")
    inv = ToolInvocation(tool_name="ping", module=module, qualname="ping", code_root=ROOT, kwargs_json='{"n": 1}')
    for _ in range(2):  # preflight, page cache, and a call rate for the pool
        await sb.run(inv)
    out = []
    try:
        for _ in range(n):
            if mode == "warm":
                await sb.pool.settle()
            t = time.perf_counter()
            o = await sb.run(inv)
            out.append((time.perf_counter() - t) * 1000)
            assert o.ok and o.result_json == "2", o
            assert mode != "warm" or o.pooled, "a warm-pool call was not served from the pool"
    finally:
        await sb.aclose()
    return out


async def runsc(n: int, module: str | None = None) -> list[float] | None:
    """``runsc do``: the bare one-liner, or (``module``) importing the module and calling ``ping``."""
    import asyncio
    import shutil

    exe = shutil.which("runsc")
    if exe is None:
        return None
    if module is None:
        cmd = [PY, "-I", "-S", "-c", TRIVIAL, "1"]
    else:
        code = f"import sys; sys.path.insert(0, {ROOT!r}); from {module} import ping; sys.stdout.write(str(ping(1)))"
        cmd = [sys.executable, "-I", "-c", code]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            exe,
            "--network=none",
            "do",
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        data, err = await proc.communicate()
        if data != b"2":
            print(f"runsc failed: {err.decode()[-300:]}", file=sys.stderr)
            return None
        out.append((time.perf_counter() - t) * 1000)
    return out


async def ctx_tool(n: int, warm: bool) -> tuple[list[float], list[float], int]:
    """The app module's tool through ``ctx.tool`` in a one-step workflow, sequential. Returns the
    whole run (start to result), the tool step (its journal ``duration_ms``), and how many calls
    the pool served."""
    import tempfile

    import stalwart as sw

    sys.path.insert(0, ROOT)
    from bench import sandbox_app

    with tempfile.TemporaryDirectory() as d:
        app = sw.App("bench", db=f"sqlite:///{d}/bench.db")
        if not warm:
            app.settings.sandbox.pool_max_processes = 0
        tool = app.tool(scopes=["read:orders"], timeout_s=10)(sandbox_app.ping)

        @app.workflow(name="one_tool", version="1", tools=[tool])
        async def one_tool(ctx: sw.Context, inp: dict) -> int:
            return await ctx.tool(tool, n=inp["x"])  # type: ignore[no-any-return]

        runs, steps, pooled = [], [], 0
        async with app.worker(concurrency=4):
            for i in range(n + 2):
                if warm and app._sandbox is not None:
                    await app._sandbox.pool.settle()
                t = time.perf_counter()
                run_id = await app.start("one_tool", {"x": i}, org="acme")
                assert await app.result(run_id, timeout=30) == i + 1
                if i < 2:
                    continue  # the first calls give the pool its rate
                runs.append((time.perf_counter() - t) * 1000)
                for e in await app.journal(run_id):
                    meta = getattr(e, "meta", None) or {}
                    if e.kind == "tool" and meta.get("duration_ms") is not None:
                        steps.append(float(meta["duration_ms"]))
                        pooled += bool(meta.get("sandbox_pooled"))
        await app.close()
        return runs, steps, pooled


def row(name: str, xs: list[float] | None, note: str = "") -> str:
    import statistics

    if not xs:
        return f"| {name} | – | – | – | {note or 'not run'} |"
    return f"| {name} | {statistics.median(xs):.1f} | {pct(xs, 90):.1f} | {pct(xs, 99):.1f} | {note} |"


async def main() -> None:
    import argparse
    import datetime
    import platform
    import statistics

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    n = args.n
    load = f"{os.getloadavg()[0]:.2f}"
    print(
        f"# sandbox, {datetime.date.today()}, n={n}, {os.cpu_count()} cores, load {load}, "
        f"{platform.platform()}, python {platform.python_version()}, uid {os.geteuid()}"
    )
    rows: list[tuple[str, list[float] | None, str]] = [
        ("plain subprocess (python -I -S)", await plain_subprocess(n), "")
    ]
    for label, module in (("bare module", BARE), ("app module", APP)):
        rows.append((f"bwrap cold, {label}", await bwrap_sandbox(n, module, "cold"), "a fresh sandbox per call"))
        rows.append((f"warm pool, {label}", await bwrap_sandbox(n, module, "warm"), "entry ready at call time"))
        rows.append((f"warm pool back to back, {label}", await bwrap_sandbox(n, module, "burst"), "no wait"))
    g = max(10, n // 5)
    missing = "" if shutil_which("runsc") else "runsc not installed (apt-get install runsc)"
    rows.append(("gVisor runsc do, bare one-liner", await runsc(g), missing))
    rows.append(("gVisor runsc do, app module", await runsc(g, APP), missing))
    warm_e2e = cold_e2e = None
    if not args.skip_e2e:
        cold_e2e = await ctx_tool(max(20, n // 4), warm=False)
        warm_e2e = await ctx_tool(n, warm=True)
        rows.append(("ctx.tool app module, cold: run start→result", cold_e2e[0], "whole 1-step run"))
        rows.append(("ctx.tool app module, cold: tool step", cold_e2e[1], "journal duration_ms"))
        rows.append(("ctx.tool app module, pool warm: run start→result", warm_e2e[0], "whole 1-step run"))
        rows.append(
            ("ctx.tool app module, pool warm: tool step", warm_e2e[1], f"{warm_e2e[2]}/{len(warm_e2e[1])} pooled")
        )
    print("| path | p50 ms | p90 ms | p99 ms | note |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, xs, note in rows:
        print(row(name, xs, note))
    if warm_e2e and warm_e2e[1]:
        steps = warm_e2e[1]
        ok50, ok99 = statistics.median(steps) <= 15, pct(steps, 99) <= 40
        print(f"\ntarget ctx.tool step, pool warm, p50 <= 15 ms: {'met' if ok50 else 'MISSED'}; "
              f"p99 <= 40 ms: {'met' if ok99 else 'MISSED'}")


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())
