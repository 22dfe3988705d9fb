"""The alert rules of ``deploy/prometheus/alerts.yml``, evaluated in-process (pure).

A rule holds at one instant when its condition is true on the sample taken then; it is
``pending`` until it has held on every sample for ``for_s`` seconds, then ``firing``: the same
semantics as Prometheus' ``for:``. A value of ``None`` means "no data", which never holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["ALERT_RULES", "Alert", "AlertRule", "AlertSample", "evaluate_alerts", "histogram_quantile"]


@dataclass(frozen=True, slots=True)
class AlertSample:
    """What the alert conditions read at one instant (windowed rates already computed)."""

    at: float
    run_duration_p99_s: float | None = None
    """p99 of run durations finished in the last 5 minutes."""
    error_rate: float | None = None
    """Failed share of runs finished in the last 5 minutes."""
    budget_ratio_p95: float | None = None
    """p95 of (run cost / run budget) over the last hour."""
    pii_rate: float | None = None
    """PII detections per guard scan over the last 5 minutes."""
    review_queue_depth: float | None = None
    kill_switch: float | None = None
    mcp_quarantined: float | None = None
    """Calls that reached a quarantined MCP tool in the last 5 minutes."""


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert: ``value(sample) > threshold`` held for ``for_s`` seconds."""

    name: str
    field: str
    threshold: float
    for_s: float
    severity: str
    summary: str

    def value(self, sample: AlertSample) -> float | None:
        v = getattr(sample, self.field)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def holds(self, sample: AlertSample) -> bool:
        v = self.value(sample)
        return v is not None and v > self.threshold


ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        "AgentRunDurationP99High",
        "run_duration_p99_s",
        300.0,
        300.0,
        "warning",
        "p99 run duration above 5 minutes for 5 minutes",
    ),
    AlertRule(
        "AgentRunErrorRateHigh",
        "error_rate",
        0.05,
        300.0,
        "critical",
        "more than 5% of runs failing for 5 minutes",
    ),
    AlertRule(
        "AgentRunCostOverBudget",
        "budget_ratio_p95",
        1.5,
        600.0,
        "warning",
        "p95 cost per run above 1.5x its budget",
    ),
    AlertRule(
        "AgentPIIDetectionRateHigh",
        "pii_rate",
        0.001,
        300.0,
        "warning",
        "PII detected in more than 0.1% of guard scans",
    ),
    AlertRule(
        "AgentReviewQueueDeep",
        "review_queue_depth",
        100.0,
        600.0,
        "warning",
        "more than 100 reviews waiting for 10 minutes",
    ),
    AlertRule(
        "AgentKillSwitchActive",
        "kill_switch",
        0.0,
        0.0,
        "critical",
        "the kill switch is engaged: no new runs or steps",
    ),
    AlertRule(
        "AgentMcpToolQuarantined",
        "mcp_quarantined",
        0.0,
        0.0,
        "critical",
        "a call reached an MCP tool whose definition is not approved (changed or new)",
    ),
)
"""Same names, thresholds and ``for`` durations as ``deploy/prometheus/alerts.yml`` (a test checks)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert whose condition holds now: ``pending`` (not yet for long enough) or ``firing``."""

    name: str
    state: str
    severity: str
    value: float
    threshold: float
    summary: str
    active_since: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate_alerts(
    samples: Sequence[AlertSample],
    *,
    now: float | None = None,
    rules: Sequence[AlertRule] = ALERT_RULES,
    max_gap_s: float = 120.0,
) -> list[Alert]:
    """The alerts holding at ``now`` (default: the latest sample), from samples in any order.

    Samples more than ``max_gap_s`` apart break continuity (the process was not observing).
    """
    ordered = sorted((s for s in samples if now is None or s.at <= now), key=lambda s: s.at)
    if not ordered:
        return []
    at = ordered[-1].at if now is None else now
    out: list[Alert] = []
    for rule in rules:
        last = ordered[-1]
        if not rule.holds(last):
            continue
        since = last.at
        for prev in reversed(ordered[:-1]):
            if since - prev.at > max_gap_s or not rule.holds(prev):
                break
            since = prev.at
        state = "firing" if at - since >= rule.for_s else "pending"
        value = rule.value(last)
        assert value is not None
        out.append(Alert(rule.name, state, rule.severity, value, rule.threshold, rule.summary, since))
    return out


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper_bound, count)`` buckets.

    ``None`` when there are no observations (Prometheus: NaN, which fires nothing).
    """
    bs = sorted(buckets, key=lambda b: b[0])
    if not bs or not math.isinf(bs[-1][0]):
        return None
    total = bs[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for i, (le, count) in enumerate(bs):
        if count >= rank:
            if math.isinf(le):
                return bs[i - 1][0] if i > 0 else None
            if i == 0 and le <= 0:
                return le
            width = count - prev_count
            if width <= 0:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / width
        prev_le, prev_count = le, count
    return None


Quantile = Callable[[float, Sequence[tuple[float, float]]], float | None]
