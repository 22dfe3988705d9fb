"""The durable-engine benchmark: Stalwart side by side with its peers, in one run.

    bash bench/setup.sh && bench/.venv/bin/python bench/engine.py [--quick] [--only NAME[,NAME]]

Systems (each measurement runs in its own subprocess, so imports and event loops never mix):
Stalwart on SQLite (WAL) and PostgreSQL, DBOS Transact (SQLite and PostgreSQL system database),
LangGraph (functional API, SqliteSaver and PostgresSaver) and the raw floor (one INSERT+COMMIT per
step with sqlite3 and with psycopg).

Workloads: ``seq``, 200 runs one after another of a 10-step workflow of trivial steps (µs/step);
``conc``, 1,000 runs submitted at once to one in-process worker at concurrency 100 (runs/s).
Each measurement is repeated (3 times by default, interleaved across systems so that noise on a
shared machine spreads evenly) and the median is reported. Every measurement gets a fresh database:
a temporary SQLite file, or a throwaway PostgreSQL database ``bench_<system>_<pid>_<n>`` that is
dropped afterwards. The table is printed and written as JSON to ``bench/results/engine-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "_engine_peers"
VENV_PY = HERE / ".venv" / "bin" / "python"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BASE = PG_ADMIN.rsplit("/", 1)[0]

TARGET_SQLITE_US = 100.0
TARGET_PG_FLOOR_RATIO = 1.3
TARGET_CONC_VS_DBOS = 10.0


@dataclass(frozen=True)
class System:
    name: str
    peer: str  # module file in _engine_peers
    backend: str  # sqlite | postgres
    label: str
    variant: str = ""
    default: bool | None = None  # None: run by default unless it is a variant

    @property
    def by_default(self) -> bool:
        return self.default if self.default is not None else not self.variant


SYSTEMS = [
    System("stalwart-sqlite", "stalwart_peer", "sqlite", "Stalwart, SQLite (WAL)"),
    System("stalwart-postgres", "stalwart_peer", "postgres", "Stalwart, PostgreSQL"),
    System("raw-sqlite", "raw_peer", "sqlite", "raw sqlite3 floor (WAL+NORMAL)"),
    System("raw-psycopg", "raw_peer", "postgres", "raw psycopg floor (autocommit)"),
    System("raw-psycopg-async", "raw_peer", "postgres", "raw psycopg floor, asyncio + pool", variant="async",
           default=True),
    System("dbos-sqlite", "dbos_peer", "sqlite", "DBOS Transact, SQLite"),
    System("dbos-postgres", "dbos_peer", "postgres", "DBOS Transact, PostgreSQL"),
    System("langgraph-sqlite", "langgraph_peer", "sqlite", "LangGraph, SqliteSaver"),
    System("langgraph-postgres", "langgraph_peer", "postgres", "LangGraph, PostgresSaver"),
    # Not run by default (--only langgraph-graph-sqlite,...): a StateGraph of 10 nodes instead of
    # the functional API.
    System("langgraph-graph-sqlite", "langgraph_peer", "sqlite", "LangGraph StateGraph, SqliteSaver",
           variant="graph"),
    System("langgraph-graph-postgres", "langgraph_peer", "postgres", "LangGraph StateGraph, PostgresSaver",
           variant="graph"),
]
DEFAULT = [s for s in SYSTEMS if s.by_default]


# -- PostgreSQL -------------------------------------------------------------------------------
def pg_available() -> tuple[bool, str]:
    import psycopg

    for attempt in range(2):
        try:
            with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
                return True, str(conn.execute("SHOW server_version").fetchone()[0])
        except psycopg.Error as exc:
            err = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempt == 0 and Path("/etc/postgresql").is_dir():
                versions = sorted(os.listdir("/etc/postgresql"))
                if versions:
                    subprocess.run(
                        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                        capture_output=True, check=False,
                    )
                    time.sleep(2)
                    continue
            return False, err
    return False, "unreachable"


def pg_create(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_BASE}/{name}"


def pg_drop(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        print(f"  warning: could not drop database {name}: {exc}", file=sys.stderr)


# -- one measurement --------------------------------------------------------------------------
def measure(sys_: System, workload: str, runs: int, seq_no: int, timeout_s: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{sys_.name}-"))
    dbname = f"bench_{sys_.name.replace('-', '_')}_{os.getpid()}_{seq_no}"
    try:
        url = pg_create(dbname) if sys_.backend == "postgres" else f"sqlite:///{tmp / 'bench.db'}"
        cmd = [
            sys.executable, str(PEERS / f"{sys_.peer}.py"), "--backend", sys_.backend, "--workload", workload,
            "--runs", str(runs), "--url", url, "--variant", sys_.variant,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "STALWART_LOG_LEVEL": "WARNING",
               "DBOS__CLOUD": "", "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false"}
        env.pop("DBOS_CONDUCTOR_KEY", None)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=tmp, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f}s"}
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    finally:
        if sys_.backend == "postgres":
            pg_drop(dbname)
        shutil.rmtree(tmp, ignore_errors=True)


# -- reporting --------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def summarize(
    samples: dict[str, dict[str, list[dict[str, Any]]]], systems: list[System], workloads: tuple[str, ...]
) -> dict[str, Any]:
    med: dict[str, dict[str, Any]] = {}
    for s in systems:
        med[s.name] = {}
        for w in workloads:
            ok = [r for r in samples[s.name][w] if "error" not in r]
            errs = [r["error"] for r in samples[s.name][w] if "error" in r]
            if ok:
                med[s.name][w] = {
                    "us_per_step": statistics.median(r["us_per_step"] for r in ok),
                    "runs_per_s": statistics.median(r["runs_per_s"] for r in ok),
                    "samples_us_per_step": [round(r["us_per_step"], 1) for r in ok],
                    "samples_runs_per_s": [round(r["runs_per_s"], 1) for r in ok],
                    "note": ok[0].get("note", ""),
                    "errors": errs,
                }
            else:
                med[s.name][w] = {"error": errs[0] if errs else "not run"}

    def get(name: str, w: str, key: str) -> float | None:
        return med.get(name, {}).get(w, {}).get(key)

    ratios: dict[str, dict[str, float | None]] = {}
    for s in systems:
        ref = f"stalwart-{s.backend}"
        if s.name == ref:
            continue
        peer_us, sw_us = get(s.name, "seq", "us_per_step"), get(ref, "seq", "us_per_step")
        peer_rps, sw_rps = get(s.name, "conc", "runs_per_s"), get(ref, "conc", "runs_per_s")
        ratios[s.name] = {
            "vs": ref,
            "seq_speedup": (peer_us / sw_us) if peer_us and sw_us else None,
            "conc_speedup": (sw_rps / peer_rps) if peer_rps and sw_rps else None,
        }

    targets: list[dict[str, Any]] = []
    v = get("stalwart-sqlite", "seq", "us_per_step")
    if v is not None:
        targets.append({"target": f"Stalwart SQLite ≤ {TARGET_SQLITE_US:.0f} µs/step sequential",
                        "value": f"{v:.0f} µs/step", "met": v <= TARGET_SQLITE_US,
                        "by": f"{v / TARGET_SQLITE_US:.2f}× the target"})
    a, b = get("stalwart-postgres", "seq", "us_per_step"), get("raw-psycopg", "seq", "us_per_step")
    if a is not None and b is not None:
        targets.append({"target": f"Stalwart PostgreSQL ≤ {TARGET_PG_FLOOR_RATIO}× raw psycopg floor",
                        "value": f"{a / b:.2f}× ({a:.0f} vs {b:.0f} µs/step)",
                        "met": a / b <= TARGET_PG_FLOOR_RATIO})
    for backend in ("sqlite", "postgres"):
        a, b = get(f"stalwart-{backend}", "conc", "runs_per_s"), get(f"dbos-{backend}", "conc", "runs_per_s")
        if a is not None and b is not None:
            targets.append({"target": f"Concurrent ≥ {TARGET_CONC_VS_DBOS:.0f}× DBOS runs/s ({backend})",
                            "value": f"{a / b:.1f}× ({a:.0f} vs {b:.0f} runs/s)",
                            "met": a / b >= TARGET_CONC_VS_DBOS})
    return {"medians": med, "ratios": ratios, "targets": targets}


def table(summary: dict[str, Any], systems: list[System]) -> str:
    med, ratios = summary["medians"], summary["ratios"]
    head = ("| system | seq µs/step | seq runs/s | conc runs/s | Stalwart speed-up, seq | "
            "Stalwart speed-up, conc |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in systems:
        seq, conc = med[s.name].get("seq", {}), med[s.name].get("conc", {})
        r = ratios.get(s.name, {})
        lines.append(
            f"| {s.label} | {fmt(seq.get('us_per_step'))} | {fmt(seq.get('runs_per_s'), 1)} | "
            f"{fmt(conc.get('runs_per_s'), 1)} | "
            f"{'(reference)' if s.name.startswith('stalwart-') else fmt_ratio(r.get('seq_speedup'))} | "
            f"{'(reference)' if s.name.startswith('stalwart-') else fmt_ratio(r.get('conc_speedup'))} |"
        )
    return "\n".join(lines)


def machine_info(pg_version: str | None) -> dict[str, Any]:
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for p in ("stalwart", "dbos", "langgraph", "langgraph-checkpoint-sqlite", "langgraph-checkpoint-postgres",
              "psycopg", "psycopg-pool", "aiosqlite"):
        try:
            pkgs[p] = version(p)
        except PackageNotFoundError:
            pkgs[p] = None
    return {"cpus": os.cpu_count(), "mem_gib": mem_gib, "os": os_name, "python": platform.python_version(),
            "postgresql": pg_version, "sqlite": __import__("sqlite3").sqlite_version, "packages": pkgs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50 sequential and 200 concurrent runs, 1 repetition")
    ap.add_argument("--only", default="", help="comma-separated system names or prefixes (e.g. stalwart,dbos-sqlite)")
    ap.add_argument("--workload", choices=["seq", "conc", "both"], default="both")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 3; --quick 1)")
    ap.add_argument("--seq-runs", type=int, default=None)
    ap.add_argument("--conc-runs", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement subprocess")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/engine-<date>.json)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--list", action="store_true", help="list the system names and exit")
    args = ap.parse_args()

    if args.list:
        for s in SYSTEMS:
            print(f"{s.name:28} {s.label}{'' if s in DEFAULT else '  (not run by default)'}")
        return 0
    if Path(sys.prefix).resolve() != (HERE / ".venv").resolve() and VENV_PY.exists():
        os.execv(str(VENV_PY), [str(VENV_PY), __file__, *sys.argv[1:]])
    if not VENV_PY.exists():
        print("bench/.venv is missing: run `bash bench/setup.sh` first", file=sys.stderr)
        return 2

    reps = args.reps or (1 if args.quick else 3)
    runs = {"seq": args.seq_runs or (50 if args.quick else 200),
            "conc": args.conc_runs or (200 if args.quick else 1000)}
    workloads = ("seq", "conc") if args.workload == "both" else (args.workload,)

    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        systems = [s for s in SYSTEMS if any(s.name == w or s.name.startswith(w) for w in wanted)]
        if not systems:
            print(f"--only {args.only!r} matches none of: {', '.join(s.name for s in SYSTEMS)}", file=sys.stderr)
            return 2
        # a prefix like "langgraph" means the default systems only; name a variant in full to get it
        systems = [s for s in systems if s in DEFAULT or s.name in wanted]
    else:
        systems = list(DEFAULT)

    pg_version: str | None = None
    skipped: dict[str, str] = {}
    if any(s.backend == "postgres" for s in systems):
        ok, info = pg_available()
        if ok:
            pg_version = info
        else:
            msg = f"PostgreSQL at {PG_BASE} is unavailable ({info}): SKIPPING every PostgreSQL system"
            print("!" * len(msg) + "\n" + msg + "\n" + "!" * len(msg), file=sys.stderr)
            for s in systems:
                if s.backend == "postgres":
                    skipped[s.name] = info
            systems = [s for s in systems if s.backend != "postgres"]

    print(f"engine bench: {len(systems)} systems, workloads {'+'.join(workloads)}, "
          f"seq {runs['seq']} runs, conc {runs['conc']} runs, {reps} repetition(s)", flush=True)
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {w: [] for w in workloads} for s in systems}
    started = time.time()
    n = 0
    for rep in range(reps):
        for s in systems:
            for w in workloads:
                n += 1
                t0 = time.time()
                r = measure(s, w, runs[w], n, args.timeout)
                samples[s.name][w].append(r)
                what = r["error"] if "error" in r else f"{r['us_per_step']:9.1f} µs/step {r['runs_per_s']:9.1f} runs/s"
                print(f"  [{rep + 1}/{reps}] {s.name:20} {w:4}  {what}   ({time.time() - t0:.1f}s)", flush=True)

    summary = summarize(samples, systems, workloads)
    print()
    print(table(summary, systems))
    print()
    print("Speed-up = how many times faster Stalwart on the same backend is (peer µs/step ÷ Stalwart µs/step;")
    print("Stalwart runs/s ÷ peer runs/s). Medians of", reps, "repetition(s).")
    for t in summary["targets"]:
        print(f"  {'MET ' if t['met'] else 'MISS'}  {t['target']}: {t['value']}")
    for name, why in skipped.items():
        print(f"  SKIPPED {name}: {why}")
    elapsed = time.time() - started
    print(f"total {elapsed:.0f}s")

    if not args.no_json:
        today = dt.date.today().isoformat()
        out = Path(args.out) if args.out else HERE / "results" / f"engine-{today}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "date": today,
            "machine": machine_info(pg_version),
            "config": {"seq_runs": runs["seq"], "conc_runs": runs["conc"], "reps": reps, "steps_per_run": 10,
                       "concurrency": 100, "quick": args.quick},
            "systems": {s.name: {"label": s.label, "backend": s.backend, "variant": s.variant} for s in systems},
            "skipped": skipped,
            **summary,
            "samples": samples,
            "elapsed_s": round(elapsed, 1),
            "table_markdown": table(summary, systems),
        }
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {out.relative_to(HERE.parent) if out.is_relative_to(HERE.parent) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
