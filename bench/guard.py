"""Guard benchmark and evaluation report.

    python bench/guard.py [--quick]

Prints: classifier and Presidio load times; p50/p95 milliseconds per KB for redact, scan and both
on tool-output-sized documents (1-8 KB) built from the held-out test split; then the per-category
injection detection / false-positive rates and PII recall / precision on evals/security/.
Targets (issue 5): guard p50 <= 3 ms/KB; classifier load <= 200 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stalwart.guard import Guard, InjectionDetector, NgramClassifier, PiiRedactor
from stalwart.guard._evaluate import evaluate_injection, evaluate_pii, load_jsonl

SETS = ROOT / "evals" / "security"


def documents(rows: list[dict], n: int, rng: random.Random) -> list[str]:
    """Concatenations of test rows into 1-8 KB documents, like a page or an email thread."""
    texts = [r["text"] for r in rows]
    docs = []
    for _ in range(n):
        target = rng.choice([1024, 2048, 4096, 8192])
        parts: list[str] = []
        size = 0
        while size < target:
            t = rng.choice(texts)
            parts.append(t)
            size += len(t.encode()) + 2
        docs.append("\n\n".join(parts))
    return docs


def per_kb(fn, docs: list[str]) -> tuple[float, float]:
    samples = []
    for d in docs:
        t = time.perf_counter()
        fn(d)
        samples.append((time.perf_counter() - t) * 1000 / (len(d.encode()) / 1024))
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer documents, no full evaluation")
    args = ap.parse_args()

    t = time.perf_counter()
    NgramClassifier.load()
    clf_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    PiiRedactor().load()
    presidio_ms = (time.perf_counter() - t) * 1000
    print(f"classifier load      {clf_ms:7.1f} ms   (target <= 200 ms)")
    print(f"presidio load        {presidio_ms:7.1f} ms   (first use, once per process)")

    guard = Guard().load()
    rows = load_jsonl(SETS / "injection_test.jsonl")
    docs = documents(rows, 40 if args.quick else 200, random.Random(1))
    for d in docs[:3]:
        guard.redact(d)
        guard.scan(d)
    r50, r95 = per_kb(guard.redact, docs)
    s50, s95 = per_kb(lambda d: guard.scan(d, "tool"), docs)
    b50, b95 = per_kb(lambda d: (guard.redact(d), guard.scan(d, "tool")), docs)
    print(f"redact               p50 {r50:5.2f} ms/KB   p95 {r95:5.2f} ms/KB")
    print(f"scan                 p50 {s50:5.2f} ms/KB   p95 {s95:5.2f} ms/KB")
    print(f"redact + scan        p50 {b50:5.2f} ms/KB   p95 {b95:5.2f} ms/KB   (target p50 <= 3 ms/KB)")
    if args.quick:
        return

    print()
    rep = evaluate_injection(guard, rows)
    print("\n".join(rep.lines()))
    layers = {
        "rules only": Guard(detector=InjectionDetector(classifier=False)),
        "classifier only": Guard(detector=InjectionDetector(rules=False)),
    }
    for name, g in layers.items():
        r = evaluate_injection(g, rows)
        print(f"  [{name}] detection {r.detection_rate:.4f}, FPR {r.false_positive_rate:.4f}")
    print()
    pii = evaluate_pii(load_jsonl(SETS / "pii_test.jsonl"))
    print("\n".join(pii.lines()))


if __name__ == "__main__":
    main()
