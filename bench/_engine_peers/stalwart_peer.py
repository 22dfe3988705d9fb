"""Stalwart: a 10-step workflow of trivial async steps, through start() + an in-process worker."""

from __future__ import annotations

import asyncio
import logging

from _common import CONCURRENCY, STEPS, WARMUP, Timer, parse_args, report

import stalwart as sw


async def triv(i: int) -> int:
    return i


def build(url: str) -> sw.App:
    app = sw.App("bench", db=url)

    @app.workflow(name="t10", version="1")
    async def t10(ctx: sw.Context, x: int) -> int:
        for i in range(STEPS):
            await ctx.step(f"s{i}", triv, i)
        return x

    return app


async def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = build(args.url)
    await app.connect()
    try:
        async with app.worker(concurrency=CONCURRENCY):
            for i in range(WARMUP):
                await app.result(await app.start("t10", -1 - i), timeout=60)
            expected = list(range(args.runs))
            if args.workload == "seq":
                results = []
                with Timer() as t:
                    for i in expected:
                        rid = await app.start("t10", i)
                        results.append(await app.result(rid, timeout=60))
            else:
                with Timer() as t:
                    rids = await asyncio.gather(*(app.start("t10", i) for i in expected))
                    results = await asyncio.gather(*(app.result(r, timeout=300) for r in rids))
    finally:
        await app.close()
    report(args, t.seconds, results, expected)


if __name__ == "__main__":
    asyncio.run(main())
