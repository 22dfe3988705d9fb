"""HTTP API benchmark: concurrent clients on loopback start runs and poll them.

Starts ``stalwart server`` (``python -m stalwart.api._cli``) as a subprocess against a fresh
database (a temporary SQLite file, or a throwaway PostgreSQL database created with CREATE DATABASE
and dropped afterwards), waits for it, then runs ``--clients`` concurrent clients for
``--seconds``: each loops ``POST /v1/runs`` (an ``echo`` run) then ``GET /v1/runs/{id}``. Reports
starts/s and p50/p99 latency of both calls, per store, and appends the API table to
``bench/README.md`` with ``--write``. Authentication and rate limiting stay on (limits raised
above the offered load so they are measured, not hit).

    .venv/bin/python bench/api.py [--stores sqlite,postgres] [--clients 32] [--seconds 10] [--worker]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("STALWART_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY = "sw_benchadmin0001_" + "B" * 40


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


class Database:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._dir = tempfile.mkdtemp(prefix="stalwart-bench-")
        self.name = f"bench_api_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self._dir}/bench.db"
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.name}"')
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{self.name}"

    def __exit__(self, *exc: object) -> None:
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _server(db: str, port: int, worker: bool, redis: str | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **({"STALWART_REDIS_URL": redis} if redis else {}),
        "STALWART_DB": db,
        "STALWART_APP": "tests.e2e.apps:app",
        "STALWART_ADMIN_KEY": KEY,
        "STALWART_API_KEY_RATE_PER_MIN": "100000000",
        "STALWART_API_ORG_RATE_PER_MIN": "100000000",
        "PYTHONPATH": str(ROOT),
    }
    args = [sys.executable, "-m", "stalwart.api._cli", "--port", str(port), "--log-level", "warning"]
    if not worker:
        args.append("--no-worker")
    return subprocess.Popen(args, cwd=tempfile.gettempdir(), env=env, stdout=subprocess.DEVNULL)


class _Conn:
    """A minimal HTTP/1.1 keep-alive client (the client must cost far less CPU than the server:
    both share the host's cores)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.w.write(head + body)
        assert self.r is not None
        status_line = await self.r.readline()
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await self.r.readexactly(length)
        return int(status_line.split(b" ", 2)[1]), data

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


async def _clients(port: int, clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    starts: list[float] = []
    polls: list[float] = []
    errors = 0
    t_begin = time.perf_counter()
    t_measure = t_begin + warmup
    t_end = t_measure + seconds

    async def one(i: int) -> None:
        nonlocal errors
        conn = _Conn(port)
        n = 0
        try:
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                status, data = await conn.request(
                    "POST",
                    "/v1/runs",
                    json.dumps({"workflow": "echo", "input": {"client": i, "n": n}}).encode(),
                )
                t1 = time.perf_counter()
                if status != 201:
                    errors += 1
                    continue
                g, _ = await conn.request("GET", f"/v1/runs/{json.loads(data)['id']}")
                t2 = time.perf_counter()
                if g != 200:
                    errors += 1
                if t0 >= t_measure and t1 <= t_end:
                    starts.append(t1 - t0)
                    polls.append(t2 - t1)
                n += 1
        finally:
            conn.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return {
        "starts": len(starts),
        "starts_per_s": len(starts) / seconds,
        "errors": errors,
        "start_p50_ms": _pct(starts, 0.5) * 1000,
        "start_p99_ms": _pct(starts, 0.99) * 1000,
        "get_p50_ms": _pct(polls, 0.5) * 1000,
        "get_p99_ms": _pct(polls, 0.99) * 1000,
        "start_mean_ms": statistics.fmean(starts) * 1000 if starts else float("nan"),
    }


def bench(store: str, clients: int, seconds: float, worker: bool, redis: str | None = None) -> dict[str, Any]:
    with Database(store) as db:
        port = _port()
        proc = _server(db, port, worker, redis)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            else:
                raise SystemExit("the server did not start")
            result = asyncio.run(_clients(port, clients, seconds, warmup=2.0))
        finally:
            proc.terminate()
            proc.wait(30)
    return {
        "store": store,
        "rate_limits": "redis" if redis else "store",
        "clients": clients,
        "seconds": seconds,
        "embedded_worker": worker,
        **result,
    }


def _table(rows: list[dict[str, Any]], cores: int) -> str:
    head = (
        "| store | rate-limit buckets | embedded worker | clients | starts/s | start p50 | start p99 | poll p50 | poll p99 | errors |\n"
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    body = "".join(
        f"| {r['store']} | {r['rate_limits']} | {'yes' if r['embedded_worker'] else 'no'} | {r['clients']} | {r['starts_per_s']:.0f} | "
        f"{r['start_p50_ms']:.1f} ms | {r['start_p99_ms']:.1f} ms | {r['get_p50_ms']:.1f} ms | "
        f"{r['get_p99_ms']:.1f} ms | {r['errors']} |\n"
        for r in rows
    )
    return (
        head
        + body
        + f"\n{cores} cores ({platform.processor() or platform.machine()}), server and clients on the same host.\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--worker",
        action="store_true",
        help="also measure with the embedded worker executing the runs in the server process",
    )
    ap.add_argument("--redis", default=None, help="also measure with rate-limit buckets in this Redis URL")
    ap.add_argument("--write", action="store_true", help="write the table into bench/README.md and results/")
    a = ap.parse_args()
    rows = [
        bench(s, a.clients, a.seconds, w, r)
        for s in a.stores.split(",")
        for r in ([None, a.redis] if a.redis else [None])
        for w in ([False, True] if a.worker else [False])
    ]
    cores = os.cpu_count() or 0
    table = _table(rows, cores)
    print(table)
    if a.write:
        day = time.strftime("%Y-%m-%d")
        out = ROOT / "bench" / "results" / f"api-{day}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"date": day, "cores": cores, "rows": rows}, indent=2))
        readme = ROOT / "bench" / "README.md"
        text = readme.read_text() if readme.exists() else "# Benchmarks\n"
        section = (
            f"\n## API\n\n`.venv/bin/python bench/api.py --write` ({day}): {__doc__.split(chr(10))[2].strip()} "
            f"Clients loop start → poll for {a.seconds:.0f} s after a 2 s warm-up.\n\n{table}"
        )
        if "\n## API\n" in text:
            before, _, rest = text.partition("\n## API\n")
            nxt = rest.find("\n## ")
            text = before + section + (rest[nxt:] if nxt >= 0 else "")
        else:
            text += section
        readme.write_text(text)


if __name__ == "__main__":
    main()
