"""Shared plumbing for one benchmark measurement in its own process.

Every peer module is run as ``python bench/_engine_peers/<peer>.py --backend B --workload W
--runs N --url URL``. It sets up outside the clock, does a few warm-up runs, times the workload,
checks every result, and prints one JSON line (prefixed ``RESULT``) that bench/engine.py reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

STEPS = 10
CONCURRENCY = 100
WARMUP = 5


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    p.add_argument("--workload", choices=["seq", "conc"], required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--url", required=True, help="sqlite:////abs/path.db or postgresql://...")
    p.add_argument("--variant", default="", help="peer-specific variant")
    return p.parse_args()


def sqlite_path(url: str) -> str:
    assert url.startswith("sqlite:///"), url
    return url[len("sqlite:///"):]


def report(args: argparse.Namespace, seconds: float, results: list[Any], expected: list[Any],
           note: str = "", **extra: Any) -> None:
    bad = sum(1 for r, e in zip(results, expected, strict=True) if r != e)
    if len(results) != len(expected) or bad:
        print(f"benchmark check failed: {bad} of {len(expected)} results wrong", file=sys.stderr)
        sys.exit(3)
    runs = len(expected)
    out = {
        "seconds": seconds,
        "runs": runs,
        "steps_per_run": STEPS,
        "us_per_step": seconds / (runs * STEPS) * 1e6,
        "runs_per_s": runs / seconds,
        "note": note,
        **extra,
    }
    print("RESULT " + json.dumps(out), flush=True)


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0


def run_main(fn: Callable[[], Any]) -> None:
    fn()
