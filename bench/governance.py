"""Governance benchmark.

    python bench/governance.py [--quick] [--pg URL]

Prints: audit appends/s on SQLite (one event per transaction, and 8-event steps), on PostgreSQL
(1 and 16 concurrent appenders: the chain-head lock serialises commits), verify entries/s
(chain-only with every checkpoint signature checked, and with Merkle roots), inclusion-proof
time, and Cedar decision p50/p99.
Targets (issue 6): >= 10,000 appends/s on SQLite; verify >= 500,000 entries/s; Cedar p99 < 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stalwart.governance import AuditEvent, AuditLog, PolicyEngine, verify_chain
from stalwart.store import open_store

PG = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def event(i: int) -> AuditEvent:
    return AuditEvent(
        "step.completed",
        action="tool:lookup_order",
        actor="agent:refund@1",
        resource="lookup_order",
        decision="allow",
        org_id="acme",
        user_id="c-17",
        run_id=f"run-{i % 1000}",
        trace_id="0" * 32,
        workflow_version="refund@1",
        policy_version="refund-2026.11+89f87f6fd18c",
        risk_score=12.5,
        details={"latency_ms": 12, "tokens": 321, "outcome": "ok", "seq": i},
    )


async def appends(store, n: int, batch: int) -> float:  # type: ignore[no-untyped-def]
    audit = AuditLog(store, checkpoint_every=1000)
    t = time.perf_counter()
    for i in range(0, n, batch):
        await audit.append([event(i + j) for j in range(batch)])
    return n / (time.perf_counter() - t)


async def concurrent(store, n: int, workers: int) -> float:  # type: ignore[no-untyped-def]
    audit = AuditLog(store, checkpoint_every=1000)

    async def one(w: int) -> None:
        for i in range(n // workers):
            await audit.append([event(i)])

    t = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(workers)))
    return (n // workers * workers) / (time.perf_counter() - t)


async def verify(store, audit) -> None:  # type: ignore[no-untyped-def]
    key = await audit.public_key()
    for merkle in (False, True):
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            r = await verify_chain(store, key, merkle=merkle)
            best = max(best, r.checked / (time.perf_counter() - t))
            assert r.ok, r
        label = "chain + Merkle roots" if merkle else "chain, every checkpoint signature"
        print(
            f"  verify ({label}): {best:,.0f} entries/s over {r.checked:,} entries, {r.checkpoints} checkpoints"
        )


async def sqlite_bench(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(f"sqlite:///{tmp}/bench.db", migrate=True)
        print("SQLite (WAL, synchronous=NORMAL)")
        print(f"  append, 1 event per transaction: {await appends(store, n // 4, 1):,.0f} events/s")
        print(f"  append, 8-event steps:           {await appends(store, n, 8):,.0f} events/s")
        audit = AuditLog(store, checkpoint_every=1000)
        await audit.checkpoint()
        await verify(store, audit)
        ids = [e.event_id for e in await audit.events(run_ids=["run-7"])][:5]
        t = time.perf_counter()
        for i in ids:
            assert (await audit.prove(i)).verify(await audit.public_key())
        print(
            f"  inclusion proof over the whole log: {(time.perf_counter() - t) / len(ids) * 1000:.0f} ms each"
        )
        await store.close()


async def pg_bench(admin: str, n: int) -> None:
    import psycopg

    name = f"stalwart_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        store = await open_store(admin.rsplit("/", 1)[0] + f"/{name}", migrate=True, pool_max=16)
        print("PostgreSQL (chain head row-locked per transaction)")
        print(f"  append, 1 appender, 1 event/tx:    {await concurrent(store, n // 10, 1):,.0f} events/s")
        print(f"  append, 16 appenders, 1 event/tx:  {await concurrent(store, n // 5, 16):,.0f} events/s")
        print(f"  append, 1 appender, 8-event steps: {await appends(store, n // 2, 8):,.0f} events/s")
        audit = AuditLog(store, checkpoint_every=1000)
        await audit.checkpoint()
        await verify(store, audit)
        await store.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cedar_bench(n: int) -> None:
    policy = PolicyEngine(ROOT / "stalwart" / "examples" / "policies", clock=lambda: 1_795_521_600.0)
    agent = {"workflow": "refund", "version": "1", "org": "acme", "role": "support"}
    refund = {"tool": "issue_refund", "sensitivity": "high", "mutating": True}
    for i in range(500):
        policy.authorize(agent, "call_tool", refund, {"amount": i})
    samples = []
    for i in range(n):
        t = time.perf_counter()
        policy.authorize(agent, "call_tool", refund, {"amount": i * 7 % 20_000, "risk": i % 100})
        samples.append(time.perf_counter() - t)
    samples.sort()
    p50, p99 = samples[n // 2] * 1e6, samples[int(n * 0.99)] * 1e6
    print(
        f"Cedar ({policy.version}): p50 {p50:.0f} us, p99 {p99:.0f} us, mean {statistics.mean(samples) * 1e6:.0f} us"
        f" over {n:,} decisions"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pg", default=PG, help="admin URL of a PostgreSQL server ('' to skip)")
    args = ap.parse_args()
    n = 40_000 if args.quick else 200_000
    print(f"governance bench, {os.cpu_count()} CPUs, n={n:,}")
    await sqlite_bench(n)
    if args.pg:
        try:
            await pg_bench(args.pg, n)
        except Exception as exc:  # noqa: BLE001 - the bench reports and carries on
            print(f"PostgreSQL skipped: {exc}")
    cedar_bench(20_000 if args.quick else 100_000)


if __name__ == "__main__":
    asyncio.run(main())
