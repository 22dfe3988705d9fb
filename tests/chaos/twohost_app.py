"""The app of the two-host test: imported by `stalwart worker` processes that share nothing but
PostgreSQL and an S3 server.

``big_report`` returns 200 KiB, so its result goes to the artifact store; ``pause`` holds the run
on the first host long enough to kill it there (``TWOHOST_PAUSE_S``), and ``measure`` reads the
big result back on whichever host finishes the run. ``pay`` calls a mutating tool that a policy
approved at run time can forbid.
"""

from __future__ import annotations

import os
import time

import stalwart as sw

app = sw.App("twohost")

BIG_KIB = 200


@app.tool(sandbox="none")
def big_report(kib: int) -> dict:
    """A report of ``kib`` KiB."""
    return {"kib": kib, "body": "r" * (kib * 1024)}


def pause() -> str:
    time.sleep(float(os.environ.get("TWOHOST_PAUSE_S", "0")))
    return str(os.getpid())


def measure(report: dict) -> int:
    return len(report["body"])


@app.workflow(name="report", version="1", tools=[big_report])
async def report(ctx: sw.Context, inp: dict) -> dict:
    big = await ctx.tool(big_report, kib=int(inp.get("kib", BIG_KIB)))
    paused_on = await ctx.step("pause", pause)
    size = await ctx.step("measure", measure, big)
    return {"size": size, "paused_on": paused_on, "finished_on": str(os.getpid())}


@app.tool(sandbox="none", mutating=True, scopes=["write:payments"])
def wire(account: str, cents: int, *, idempotency_key: str) -> dict:
    """Pretend to move money."""
    return {"account": account, "cents": cents, "ref": idempotency_key}


@app.workflow(name="pay", version="1", tools=[wire])
async def pay(ctx: sw.Context, inp: dict) -> dict:
    return await ctx.tool(wire, account=str(inp["account"]), cents=int(inp["cents"]))
