"""PII report on one labelled set, through the public API (``sw.guard.redact``).

    python bench/guard_pii_report.py PATH.jsonl [--locale en_US] [--show-misses]

PATH holds one JSON object a line: ``text`` and ``spans`` (``type``, ``start``, ``end``); an
optional ``locale`` per row selects the guard's locale (default: the process-wide guard).

Prints, per gold type: gold spans, detected (hidden by any placeholder: overlapped by a redacted
entity of any type), leaked (the gold value still appears verbatim in the redacted text), partial
(detected, but some letters or digits of the value are left outside every placeholder), recall;
per predicted type: predicted entities and precision (share that overlap a gold span); person
recall and precision (PERSON entities against PERSON gold); and the speed of redact + scan in a
warm process in ms per KB (p50, p95), per record and on 1-8 KB documents made of the records.
Gating types: every type but PERSON must leak nothing; PERSON recall target >= 95 %.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stalwart as sw
from stalwart.guard import Guard
from stalwart.settings import GuardSettings


def _per_kb(fn, texts: list[str], clock=time.perf_counter) -> tuple[float, float]:
    samples = []
    for t in texts:
        t0 = clock()
        fn(t)
        samples.append((clock() - t0) * 1000 / (len(t.encode()) / 1024))
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--show-misses", action="store_true", help="print missed and leaked values")
    args = ap.parse_args()
    rows = [
        json.loads(line) for line in Path(args.path).read_text(encoding="utf-8").splitlines() if line.strip()
    ]

    t0 = time.perf_counter()
    sw.guard.default_guard().load()
    load_s = time.perf_counter() - t0
    guards: dict[str, Guard] = {}

    gold_n: dict[str, int] = defaultdict(int)
    hit_n: dict[str, int] = defaultdict(int)
    leak_n: dict[str, int] = defaultdict(int)
    part_n: dict[str, int] = defaultdict(int)
    pred_n: dict[str, int] = defaultdict(int)
    pred_ok: dict[str, int] = defaultdict(int)
    person_tp = person_pred_ok = 0
    misses: list[str] = []
    for row in rows:
        text = row["text"]
        if row.get("locale"):
            g = guards.get(row["locale"])
            if g is None:
                g = guards[row["locale"]] = Guard(GuardSettings(locale=row["locale"])).load()
            red = g.redact(text)
        else:
            red = sw.guard.redact(text)
        gold = row["spans"]
        for s in gold:
            t = s["type"]
            value = text[s["start"] : s["end"]]
            gold_n[t] += 1
            hit = any(e.start < s["end"] and s["start"] < e.end for e in red.entities)
            hit_n[t] += hit
            leaked = value in red.text
            leak_n[t] += leaked
            covered = all(
                not text[i].isalnum() or any(e.start <= i < e.end for e in red.entities)
                for i in range(s["start"], s["end"])
            )
            part_n[t] += hit and not covered
            if t == "PERSON":
                person_tp += any(
                    e.type == "PERSON" and e.start < s["end"] and s["start"] < e.end for e in red.entities
                )
            if (not hit or leaked or not covered) and args.show_misses:
                kind = "LEAK" if leaked else "miss" if not hit else "part"
                misses.append(f"  {t:14s} {kind} {value!r}  in {text[:120]!r}")
        for e in red.entities:
            pred_n[e.type] += 1
            ok = any(e.start < s["end"] and s["start"] < e.end for s in gold)
            pred_ok[e.type] += ok
            if e.type == "PERSON":
                person_pred_ok += any(
                    s["type"] == "PERSON" and e.start < s["end"] and s["start"] < e.end for s in gold
                )
            if not ok and args.show_misses:
                misses.append(f"  {e.type:14s} FP   {e.value!r}  in {text[:120]!r}")

    print(
        f"{args.path}: {len(rows)} records, {sum(gold_n.values())} gold spans (guard loaded in {load_s:.1f} s)"
    )
    print(f"{'gold type':16s} {'gold':>5s} {'detected':>8s} {'leaked':>6s} {'partial':>7s} {'recall':>7s}")
    for t in sorted(gold_n):
        print(
            f"{t:16s} {gold_n[t]:5d} {hit_n[t]:8d} {leak_n[t]:6d} {part_n[t]:7d} {hit_n[t] / gold_n[t]:7.3f}"
        )
    print(f"{'predicted type':16s} {'pred':>5s} {'on gold':>8s} {'precision':>9s}")
    for t in sorted(pred_n):
        print(f"{t:16s} {pred_n[t]:5d} {pred_ok[t]:8d} {pred_ok[t] / pred_n[t]:9.3f}")
    gating_leaks = sum(v for t, v in leak_n.items() if t != "PERSON")
    if gold_n.get("PERSON"):
        pp = person_pred_ok / pred_n["PERSON"] if pred_n.get("PERSON") else 1.0
        print(
            f"PERSON recall {person_tp / gold_n['PERSON']:.3f} ({person_tp}/{gold_n['PERSON']}, typed PERSON), "
            f"hidden {hit_n['PERSON'] / gold_n['PERSON']:.3f}, precision {pp:.3f} "
            f"({person_pred_ok}/{pred_n.get('PERSON', 0)}), raw names leaked {leak_n['PERSON']}"
        )
    print(f"gating types: {gating_leaks} raw values leaked")

    texts = [r["text"] for r in rows]
    for t in texts[:5]:
        sw.guard.redact(t)
        sw.guard.scan(t, "tool")
    both = lambda t: (sw.guard.redact(t), sw.guard.scan(t, "tool"))
    p50, p95 = _per_kb(both, texts)
    rng = random.Random(1)
    docs = []
    for _ in range(60):
        target, parts, size = rng.choice([1024, 2048, 4096, 8192]), [], 0
        while size < target:
            parts.append(rng.choice(texts))
            size += len(parts[-1].encode()) + 2
        docs.append("\n\n".join(parts))
    d50, d95 = _per_kb(both, docs)
    r50, _ = _per_kb(sw.guard.redact, docs)
    c50, _ = _per_kb(both, docs, time.thread_time)
    cr50, _ = _per_kb(sw.guard.redact, docs, time.thread_time)
    print(f"redact + scan per record      p50 {p50:6.2f} ms/KB  p95 {p95:6.2f} ms/KB  (wall)")
    print(
        f"redact + scan on 1-8 KB docs  p50 {d50:6.2f} ms/KB  p95 {d95:6.2f} ms/KB  (wall; redact alone p50 {r50:.2f})"
    )
    print(f"redact + scan on 1-8 KB docs  p50 {c50:6.2f} ms/KB CPU time (redact alone p50 {cr50:.2f})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if misses:
        print("\n".join(misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
