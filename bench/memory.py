"""Memory and data-plane benchmark: memory recall latency, artifact put/get, database growth per
1,000 runs with and without the artifact store.

    .venv/bin/python bench/memory.py [--quick] [--write]

* recall: ``Memory.recall`` end to end (guard redaction of the query, embedding, vector search)
  and the search alone, over 1,000 items of the queried user among 5,000 (5 users), for the
  labelled lexical embedder and all-MiniLM-L6-v2 (when the ``memory`` extra is installed), on
  SQLite (sqlite-vec when this interpreter can load it, else exact) and PostgreSQL (pgvector when
  the server has it, else exact). Items are bulk-loaded already redacted.
* artifacts: ``ArtifactStore.put`` / ``get`` (AES-GCM with the org key, sha256 check) on a directory
  and on a local S3-compatible server (moto, in-process thread), 1 KiB / 64 KiB / 1 MiB.
* growth: 1,000 runs of a 3-step workflow through the real engine on SQLite (a small triage
  result, an 8 KiB model output, a 32 KiB tool result), journaled inline vs. the two large values
  put in the artifact store (the journal keeps the reference). Database bytes after a WAL checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stalwart as sw
from stalwart.guard import Guard
from stalwart.memory import LexicalEmbedder, Memory
from stalwart.memory._search import to_blob
from stalwart.store import open_store
from stalwart.store._artifacts import ArtifactStore, FileBlobs, S3Blobs
from stalwart.store._sql import SqlRunner

PG_ADMIN = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WORDS = ["order", "refund", "blender", "parcel", "late", "broken", "shirt", "colour", "size", "billing", "invoice", "card", "email", "phone", "delivery", "courier", "address", "warehouse", "jug", "cracked", "lid", "motor", "noise", "return", "label", "exchange", "voucher", "store", "credit", "manager", "apology", "discount", "subscription", "cancel", "renewal", "password", "account", "login"]


def _text(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def _load_items(store, embedder, users: int, per_user: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    sql = SqlRunner(store)
    mem = Memory(store, Guard(), embedder=embedder)
    await mem.index.open()
    ins, mode = mem.index.insert_sql()
    now = time.time()
    for u in range(users):
        texts = [f"{_text(rng)} #{u}-{i}" for i in range(per_user)]
        vecs = await asyncio.to_thread(embedder.embed, texts)
        stmts = []
        for i, (t, v) in enumerate(zip(texts, vecs, strict=True)):
            params = [f"{u}-{i}", "acme", f"u{u}", "semantic", "fact", t, None, f"h{u}-{i}", embedder.name, len(v),
                      to_blob(v), now, now + 86400]
            if mode == "pgvector":
                params.append("[" + ",".join(f"{x:.7g}" for x in v) + "]")
            stmts.append((ins, params))
        for i in range(0, len(stmts), 500):
            await sql.transaction(stmts[i : i + 500])


async def bench_recall(url: str, embedder, guard: Guard, queries: int) -> dict:  # type: ignore[no-untyped-def]
    store = await open_store(url, migrate=True)
    try:
        await _load_items(store, embedder, users=5, per_user=1000)
        mem = Memory(store, guard, embedder=embedder)
        await mem.open()
        rng = random.Random(11)
        qs = [_text(rng, 6) for _ in range(queries)]
        for q in qs[:5]:
            await mem.recall("acme", "u0", q, k=5)
        e2e, search = [], []
        for q in qs:
            t0 = time.perf_counter()
            r = await mem.recall("acme", "u0", q, k=5)
            e2e.append((time.perf_counter() - t0) * 1000)
            assert len(r.items) == 5
        vecs = await asyncio.to_thread(embedder.embed, qs)
        for v in vecs:
            t0 = time.perf_counter()
            await mem.index.search(v, org="acme", user="u0", embedder=embedder.name, now=time.time(), k=5, tier=None)
            search.append((time.perf_counter() - t0) * 1000)
        return {"store": store.kind, "backend": mem.backend, "embedder": embedder.name,
                "e2e_p50_ms": statistics.median(e2e), "e2e_p95_ms": _pct(e2e, 95),
                "search_p50_ms": statistics.median(search), "search_p95_ms": _pct(search, 95)}
    finally:
        await store.close()


async def bench_artifacts(blobs, store, iters: int) -> list[dict]:  # type: ignore[no-untyped-def]
    arts = ArtifactStore(store, blobs, master_key=bytes(range(32)))
    out = []
    for size in (1024, 64 * 1024, 1024 * 1024):
        puts, gets = [], []
        for i in range(iters):
            data = os.urandom(size)
            t0 = time.perf_counter()
            ref = await arts.put("acme", data, run_id=f"r{i}")
            puts.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            assert await arts.get(ref) == data
            gets.append((time.perf_counter() - t0) * 1000)
        out.append({"backend": blobs.kind, "size": size, "put_p50_ms": statistics.median(puts),
                    "get_p50_ms": statistics.median(gets)})
    return out


def _db_bytes(path: str) -> int:
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    return int(n)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


async def bench_growth(runs: int, with_artifacts: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    db = str(tmp / "stalwart.db")
    app = sw.App("bench-growth", db=f"sqlite:///{db}")
    store = await app.connect()
    arts = ArtifactStore(store, FileBlobs(tmp / "artifacts"), master_key=bytes(range(32))) if with_artifacts else None
    rng = random.Random(3)
    vocab = [_text(rng, 1) + str(i) for i in range(5000)]

    def model_output(seed: int) -> str:
        r = random.Random(seed)
        return " ".join(r.choice(vocab) for _ in range(1100))[: 8 * 1024]

    def tool_result(seed: int) -> dict:
        r = random.Random(seed + 1)
        return {"rows": [{"sku": f"S{r.randrange(10**6)}", "note": " ".join(r.choice(vocab) for _ in range(20))}
                         for _ in range(170)]}

    async def keep(org: str, run_id: str, value: object) -> object:
        if arts is None:
            return value
        return await arts.externalize(org, value, limit=4096, run_id=run_id)

    @app.workflow(name="grow", version="1")
    async def grow(ctx: sw.Context, ticket: dict) -> dict:
        tri = await ctx.step("triage", lambda t: {"order_id": t["order_id"], "intent": "refund"}, ticket)
        out = await ctx.step("model_output", keep, ctx.org, ctx.run_id, model_output(ticket["n"]))
        res = await ctx.step("tool_result", keep, ctx.org, ctx.run_id, tool_result(ticket["n"]))
        return {"order_id": tri["order_id"], "model": bool(out), "tool": bool(res)}

    before = _db_bytes(db)
    t0 = time.perf_counter()
    async with app.worker(concurrency=32):
        ids = [await app.start("grow", {"order_id": f"A-{i}", "n": i}, org="acme") for i in range(runs)]
        for rid in ids:
            await app.result(rid, timeout=120)
    wall = time.perf_counter() - t0
    await app.close()
    after = _db_bytes(db)
    art_bytes = _dir_bytes(tmp / "artifacts")
    scale = 1000 / runs
    return {"artifacts": with_artifacts, "runs": runs, "db_mib_per_1000": (after - before) * scale / 2**20,
            "artifact_mib_per_1000": art_bytes * scale / 2**20, "runs_per_s": runs / wall}


def _pg_db() -> tuple[str, str] | None:
    try:
        import psycopg

        name = f"bench_memory_{os.getpid()}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL not available ({exc}); skipping its recall figures", file=sys.stderr)
        return None


def _drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main_async(a: argparse.Namespace) -> dict:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    guard = Guard().load()
    embedders = [LexicalEmbedder()]
    try:
        from stalwart.memory import load_embedder

        embedders.append(load_embedder())
    except Exception as exc:  # noqa: BLE001
        print(f"MiniLM not available ({exc}); lexical only", file=sys.stderr)
    queries = 40 if a.quick else 200
    recall = []
    for emb in embedders:
        tmp = tempfile.mkdtemp(prefix="bench-recall-")
        recall.append(await bench_recall(f"sqlite:///{tmp}/m.db", emb, guard, queries))
        pg = _pg_db()
        if pg:
            try:
                recall.append(await bench_recall(pg[0], emb, guard, queries))
            finally:
                _drop_pg(pg[1])
    iters = 10 if a.quick else 40
    tmp = Path(tempfile.mkdtemp(prefix="bench-art-"))
    store = await open_store(f"sqlite:///{tmp}/a.db", migrate=True)
    artifacts = await bench_artifacts(FileBlobs(tmp / "blobs"), store, iters)
    try:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        s3 = S3Blobs("bench", endpoint_url=f"http://{host}:{port}", access_key="k", secret_key="s")
        await s3.ensure_bucket()
        artifacts += await bench_artifacts(s3, store, iters)
        await s3.aclose()
        server.stop()
    except ImportError:
        print("moto not installed; skipping S3 figures", file=sys.stderr)
    await store.close()
    runs = 200 if a.quick else 1000
    growth = [await bench_growth(runs, False), await bench_growth(runs, True)]
    return {"recall": recall, "artifacts": artifacts, "growth": growth}


def _tables(r: dict) -> str:
    lines = ["| store | search backend | embedder | recall p50 / p95 ms (redact + embed + search) | search only p50 / p95 ms |",
             "| --- | --- | --- | --- | --- |"]
    for x in r["recall"]:
        lines.append(f"| {x['store']} | {x['backend']} | {x['embedder']} | {x['e2e_p50_ms']:.2f} / {x['e2e_p95_ms']:.2f} "
                     f"| {x['search_p50_ms']:.2f} / {x['search_p95_ms']:.2f} |")
    lines += ["", "| artifact backend | size | put p50 ms | get p50 ms |", "| --- | --- | --- | --- |"]
    for x in r["artifacts"]:
        size = f"{x['size'] // 1024} KiB" if x["size"] < 2**20 else f"{x['size'] // 2**20} MiB"
        lines.append(f"| {x['backend']} | {size} | {x['put_p50_ms']:.2f} | {x['get_p50_ms']:.2f} |")
    lines += ["", ("| 1,000 runs (triage + 8 KiB model output + 32 KiB tool result) | database growth | "
              "artifact store growth | runs/s |"), "| --- | --- | --- | --- |"]
    for x in r["growth"]:
        label = "large values in the artifact store (journal keeps the hash)" if x["artifacts"] else "everything inline in the journal"
        lines.append(f"| {label} | {x['db_mib_per_1000']:.1f} MiB | {x['artifact_mib_per_1000']:.1f} MiB | {x['runs_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="write bench/results/memory-DATE.json and the README section")
    a = ap.parse_args()
    t0 = time.time()
    result = asyncio.run(main_async(a))
    table = _tables(result)
    print(table)
    print(f"total {time.time() - t0:.0f} s on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if a.write:
        day = time.strftime("%Y-%m-%d")
        out = ROOT / "bench" / "results" / f"memory-{day}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"date": day, "cores": os.cpu_count(), "python": sys.version.split()[0], **result},
                                  indent=2))
        readme = ROOT / "bench" / "README.md"
        text = readme.read_text() if readme.exists() else "# Benchmarks\n"
        section = (f"\n## Memory and artifacts\n\n`.venv/bin/python bench/memory.py --write` ({day}, "
                   f"{os.cpu_count()} cores, Python {sys.version.split()[0]}). "
                   + " ".join(__doc__.split("\n\n")[2:]).replace("\n", " ") + "\n\n" + table)
        if "\n## Memory and artifacts\n" in text:
            before, _, rest = text.partition("\n## Memory and artifacts\n")
            nxt = rest.find("\n## ")
            text = before + section + (rest[nxt:] if nxt >= 0 else "")
        else:
            text += section
        readme.write_text(text)


if __name__ == "__main__":
    main()
