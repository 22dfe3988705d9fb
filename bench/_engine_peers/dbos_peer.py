"""DBOS Transact: the same 10-step workflow as ``@DBOS.workflow`` over 10 ``@DBOS.step``s.

seq: each run is a direct ``await t10(i)`` (DBOS's cheapest durable path: it checkpoints the
workflow and every step to its system database before returning).
conc, variant ``queue`` (default): 1,000 ``Queue.enqueue_async`` on a queue registered with
``worker_concurrency=100`` and ``polling_interval_sec=0.01`` (the default 1 s would cap it near
100 runs/s; we give DBOS its best setting), then every handle's ``get_result()``.
conc, variant ``start``: ``DBOS.start_workflow_async`` for all 1,000 under a semaphore of 100.
"""

from __future__ import annotations

import asyncio
import logging
import os

os.environ.setdefault("DBOS__CLOUD", "")
os.environ.pop("DBOS_CONDUCTOR_KEY", None)

from _common import CONCURRENCY, STEPS, WARMUP, Timer, parse_args, report  # noqa: E402
from dbos import DBOS, DBOSConfig  # noqa: E402


@DBOS.step()
async def triv(i: int) -> int:
    return i


@DBOS.workflow()
async def t10(x: int) -> int:
    for i in range(STEPS):
        await triv(i)
    return x


async def main() -> None:
    args = parse_args()
    config: DBOSConfig = {
        "name": "bench",
        "system_database_url": args.url,
        "log_level": "WARNING",
        "sys_db_pool_size": 20,
    }
    DBOS(config=config)
    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    queue = await DBOS.register_queue_async("bench", worker_concurrency=CONCURRENCY, polling_interval_sec=0.01)
    variant = args.variant or ("queue" if args.workload == "conc" else "direct")
    try:
        for i in range(WARMUP):
            await t10(-1 - i)
        expected = list(range(args.runs))
        if args.workload == "seq":
            results = []
            with Timer() as t:
                for i in expected:
                    results.append(await t10(i))
        elif variant == "queue":
            with Timer() as t:
                handles = await asyncio.gather(*(queue.enqueue_async(t10, i) for i in expected))
                results = await asyncio.gather(*(h.get_result() for h in handles))
        else:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> int:
                async with sem:
                    h = await DBOS.start_workflow_async(t10, i)
                    return await h.get_result()

            with Timer() as t:
                results = await asyncio.gather(*(one(i) for i in expected))
    finally:
        DBOS.destroy()
    report(args, t.seconds, list(results), expected, note=variant)


if __name__ == "__main__":
    asyncio.run(main())
