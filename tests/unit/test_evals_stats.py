"""A/B statistics: Welch's t-test, two-proportion z / Fisher's exact, CIs, effect sizes, verdict."""

from __future__ import annotations

import random

from stalwart.evals import compare_reports, percentile


def _report(lat: list[float], k: int, n: int) -> dict:
    return {"samples": {"latency_s": lat}, "rates": {"pass_rate": {"k": k, "n": n}}}


def test_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 95) == 95.0


def test_a_real_difference_is_significant_and_named() -> None:
    rng = random.Random(1)
    a = _report([rng.gauss(1.0, 0.1) for _ in range(60)], 40, 60)
    b = _report([rng.gauss(0.8, 0.1) for _ in range(60)], 57, 60)
    cmp = compare_reports(a, b)
    lat = next(m for m in cmp.metrics if m.metric == "latency_s")
    assert lat.test == "welch_t" and lat.p_value < 0.001 and lat.better == "B"
    assert lat.ci_low < lat.diff < lat.ci_high < 0 and lat.effect_size < -1
    rate = next(m for m in cmp.metrics if m.metric == "pass_rate")
    assert rate.test == "fisher_exact" and rate.p_value < 0.05 and rate.better == "B"  # 3 failures < 5
    assert cmp.verdict.startswith("B is better")


def test_noise_is_not_a_difference() -> None:
    rng = random.Random(2)
    a = _report([rng.gauss(1.0, 0.2) for _ in range(40)], 300, 400)
    b = _report([rng.gauss(1.0, 0.2) for _ in range(40)], 305, 400)
    cmp = compare_reports(a, b)
    rate = next(m for m in cmp.metrics if m.metric == "pass_rate")
    assert rate.test == "two_proportion_z" and rate.p_value > 0.05
    assert all(m.better == "neither" for m in cmp.metrics)
    assert cmp.verdict == "no significant difference at p < 0.05"


def test_lower_is_better_for_leakage_and_mixed_verdicts() -> None:
    a = {
        "samples": {"cost_usd": [0.01] * 30 + [0.011] * 30},
        "rates": {"pii_leakage_rate": {"k": 0, "n": 200}},
    }
    b = {
        "samples": {"cost_usd": [0.005] * 30 + [0.006] * 30},
        "rates": {"pii_leakage_rate": {"k": 20, "n": 200}},
    }
    cmp = compare_reports(a, b)
    by = {m.metric: m for m in cmp.metrics}
    assert by["cost_usd"].better == "B" and by["pii_leakage_rate"].better == "A"
    assert cmp.verdict.startswith("mixed")
