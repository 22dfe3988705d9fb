"""Evaluation of the guard on the sets under ``evals/security/`` (used by tests and bench)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stalwart.guard._guard import Guard

__all__ = ["InjectionReport", "PiiReport", "evaluate_injection", "evaluate_pii", "load_jsonl"]


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class InjectionReport:
    """Detection rate on attacks (flag or block counts as detected) and false-positive rate on
    benign texts, overall and per category."""

    detected: int = 0
    attacks: int = 0
    false_positives: int = 0
    benign: int = 0
    per_category: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    misses: list[dict[str, Any]] = field(default_factory=list)
    false_alarms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def detection_rate(self) -> float:
        return self.detected / self.attacks if self.attacks else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else 0.0

    def lines(self) -> list[str]:
        head = (
            f"injection detection {self.detection_rate:.4f} ({self.detected}/{self.attacks}), "
            f"FPR {self.false_positive_rate:.4f} ({self.false_positives}/{self.benign})"
        )
        out = [head]
        for cat in sorted(self.per_category):
            hit, n = self.per_category[cat]
            kind = "FPR" if cat.startswith("benign") else "detection"
            out.append(f"  {cat:40s} {kind:9s} {hit / n:.4f}  ({hit}/{n})")
        return out


def evaluate_injection(guard: Guard, rows: list[dict[str, Any]], source: str = "tool") -> InjectionReport:
    rep = InjectionReport()
    for row in rows:
        v = guard.scan(row["text"], source)  # type: ignore[arg-type]
        positive = v.action != "allow"
        cat = (
            row["category"]
            if row["label"]
            else row["category"].split(".")[0] + "." + row["category"].split(".")[1]
        )
        rep.per_category[cat][1] += 1
        if row["label"]:
            rep.attacks += 1
            rep.detected += positive
            rep.per_category[cat][0] += positive
            if not positive:
                rep.misses.append({**row, "score": v.score})
        else:
            rep.benign += 1
            rep.false_positives += positive
            rep.per_category[cat][0] += positive
            if positive:
                rep.false_alarms.append({**row, "score": v.score, "reasons": v.reasons})
    return rep


@dataclass
class PiiReport:
    """Span-level PII recall and precision (a predicted span counts if it overlaps a gold span of
    any type: what matters for leakage is that the value was hidden), and raw values leaked."""

    true_pos: int = 0
    gold: int = 0
    predicted: int = 0
    leaked: int = 0
    per_category: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))

    @property
    def recall(self) -> float:
        return self.true_pos / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return self.true_pos / self.predicted if self.predicted else 1.0

    def lines(self) -> list[str]:
        head = (
            f"PII recall {self.recall:.4f} ({self.true_pos}/{self.gold}), precision {self.precision:.4f}, "
            f"raw values leaked {self.leaked}"
        )
        out = [head]
        for cat in sorted(self.per_category):
            tp, g, p = self.per_category[cat]
            out.append(f"  {cat:40s} recall {tp / g if g else 1.0:.4f} ({tp}/{g})  predicted {p}")
        return out


def evaluate_pii(rows: list[dict[str, Any]], *, enabled: bool = True) -> PiiReport:
    from stalwart.settings import GuardSettings

    rep = PiiReport()
    guards: dict[str, Guard] = {}
    for row in rows:
        g = guards.get(row["locale"])
        if g is None:
            g = guards[row["locale"]] = Guard(GuardSettings(locale=row["locale"], pii=enabled))
        red = g.redact(row["text"])
        gold = row["spans"]
        cat = f"{row['locale']}/{row['category']}"
        pc = rep.per_category[cat]
        rep.gold += len(gold)
        rep.predicted += len(red.entities)
        pc[1] += len(gold)
        pc[2] += len(red.entities)
        for s in gold:
            hit = any(e.start < s["end"] and s["start"] < e.end for e in red.entities)
            rep.true_pos += hit
            pc[0] += hit
            if row["text"][s["start"] : s["end"]] in red.text:
                rep.leaked += 1
    return rep
