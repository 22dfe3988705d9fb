"""Cold start of one trivial Python tool, side by side: plain subprocess, Stalwart's BwrapSandbox,
gVisor ``runsc do --network=none`` (when installed), and the same tool end to end through
``ctx.tool`` (mint a credential, sandbox, journal the step).

Run as root (so tools run under the sandbox uid with cgroups, as in production):
    .venv/bin/python bench/sandbox.py [--n 200]
Targets: p50 <= 20 ms and p99 <= 50 ms for the sandbox.
"""

from __future__ import annotations

import os
import sys
import time

# Only cheap imports at module level: the sandboxed runs import this module to find ``ping``.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3.11"
TRIVIAL = "import sys; sys.stdout.write(str(int(sys.argv[1]) + 1))"


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


async def bwrap_sandbox(n: int) -> list[float]:
    from stalwart.sandbox import BwrapSandbox, ToolInvocation

    sb = BwrapSandbox()
    inv = ToolInvocation(
        tool_name="ping", module="bench.sandbox", qualname="ping", code_root=ROOT, kwargs_json='{"n": 1}'
    )
    await sb.run(inv)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        o = await sb.run(inv)
        out.append((time.perf_counter() - t) * 1000)
        assert o.ok and o.result_json == "2", o
    return out


async def runsc(n: int) -> list[float] | None:
    import asyncio
    import shutil

    exe = shutil.which("runsc")
    if exe is None:
        return None
    out = []
    for _ in range(n):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            exe,
            "--network=none",
            "do",
            PY,
            "-I",
            "-S",
            "-c",
            TRIVIAL,
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        data, err = await proc.communicate()
        if data != b"2":
            print(f"runsc failed: {err.decode()[-300:]}", file=sys.stderr)
            return None
        out.append((time.perf_counter() - t) * 1000)
    return out


async def ctx_tool(n: int) -> tuple[list[float], list[float]] | None:
    import tempfile

    import stalwart as sw

    this = sys.modules.get("bench.sandbox")
    if this is None:
        sys.path.insert(0, ROOT)
        import bench.sandbox as this  # the sandbox imports the tool by this name

    with tempfile.TemporaryDirectory() as d:
        app = sw.App("bench", db=f"sqlite:///{d}/bench.db")
        tool = app.tool(scopes=["read:orders"], timeout_s=10)(this.ping)

        @app.workflow(name="one_tool", version="1", tools=[tool])
        async def one_tool(ctx: sw.Context, inp: dict) -> int:
            return await ctx.tool(tool, n=inp["x"])  # type: ignore[no-any-return]

        runs, sandboxed = [], []
        async with app.worker(concurrency=4):
            for i in range(n + 1):
                t = time.perf_counter()
                run_id = await app.start("one_tool", {"x": i}, org="acme")
                assert await app.result(run_id, timeout=30) == i + 1
                if i:
                    runs.append((time.perf_counter() - t) * 1000)
                    for e in await app.journal(run_id):
                        ms = (getattr(e, "meta", None) or {}).get("sandbox_ms")
                        if ms is not None:
                            sandboxed.append(float(ms))
        await app.close()
        return runs, sandboxed


def row(name: str, xs: list[float] | None, note: str = "") -> str:
    import statistics

    if not xs:
        return f"| {name} | – | – | – | {note or 'not run'} |"
    return f"| {name} | {statistics.median(xs):.1f} | {pct(xs, 90):.1f} | {pct(xs, 99):.1f} | {note} |"


async def main() -> None:
    import argparse
    import platform
    import statistics

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    n = args.n
    print(
        f"# sandbox cold start, n={n}, {os.cpu_count()} cores, {platform.platform()}, "
        f"python {platform.python_version()}, uid {os.geteuid()}"
    )
    plain = await plain_subprocess(n)
    sandbox = await bwrap_sandbox(n)
    gvisor = await runsc(max(20, n // 5))
    e2e = None
    e2e_note = ""
    if not args.skip_e2e:
        try:
            e2e = await ctx_tool(max(20, n // 4))
        except Exception as exc:  # noqa: BLE001 - the engine row is optional in this table
            e2e_note = f"failed: {type(exc).__name__}: {exc}"[:120]
    print("| path | p50 ms | p90 ms | p99 ms | note |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(row("plain subprocess (python -I -S)", plain))
    print(row("Stalwart BwrapSandbox", sandbox, "uid switch, cgroups, seccomp, rlimits, runner"))
    print(
        row(
            "gVisor runsc do --network=none",
            gvisor,
            "" if gvisor else "runsc not installed (apt-get install runsc) or failed",
        )
    )
    print(
        row("ctx.tool end to end (run start→result)", e2e[0] if e2e else None, e2e_note or "whole 1-step run")
    )
    print(row("ctx.tool: sandbox part (journal meta)", e2e[1] if e2e else None, e2e_note))
    ok50, ok99 = statistics.median(sandbox) <= 20, pct(sandbox, 99) <= 50
    print(
        f"\ntarget p50 <= 20 ms: {'met' if ok50 else 'MISSED'}; p99 <= 50 ms: {'met' if ok99 else 'MISSED'}"
    )


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())
