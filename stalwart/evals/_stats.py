"""Percentiles, and A/B comparison of two reports: Welch's t-test for continuous metrics,
a two-proportion z-test (Fisher's exact test for small counts) for rates."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Comparison", "MetricComparison", "compare_reports", "percentile"]

ALPHA = 0.05


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) with linear interpolation; ``None`` for no values."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return None
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """B against A for one metric. ``diff`` is ``B - A`` (means or rates) with its 95% CI."""

    metric: str
    kind: str
    """``continuous`` or ``rate``."""
    test: str
    a: float
    b: float
    n_a: int
    n_b: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    effect_size: float
    """Cohen's d (continuous) or Cohen's h (rates)."""
    effect_name: str
    significant: bool
    better: str
    """``A``, ``B`` or ``neither`` (not significant at p < 0.05)."""


@dataclass(slots=True)
class Comparison:
    """The whole A/B result and its plain verdict."""

    a: str
    b: str
    metrics: list[MetricComparison]
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "verdict": self.verdict,
            "alpha": ALPHA,
            "metrics": [asdict(m) for m in self.metrics],
        }


def _welch(name: str, xa: list[float], xb: list[float], lower_better: bool) -> MetricComparison | None:
    from scipy import stats

    if len(xa) < 2 or len(xb) < 2:
        return None
    import statistics

    ma, mb = statistics.fmean(xa), statistics.fmean(xb)
    va, vb = statistics.variance(xa), statistics.variance(xb)
    diff = mb - ma
    se = math.sqrt(va / len(xa) + vb / len(xb))
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
        lo = hi = diff
    else:
        res = stats.ttest_ind(xb, xa, equal_var=False)
        p = float(res.pvalue)
        df = (va / len(xa) + vb / len(xb)) ** 2 / (
            (va / len(xa)) ** 2 / (len(xa) - 1) + (vb / len(xb)) ** 2 / (len(xb) - 1)
        )
        t = float(stats.t.ppf(0.975, df))
        lo, hi = diff - t * se, diff + t * se
    pooled = math.sqrt((va + vb) / 2)
    d = diff / pooled if pooled else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    sig = p < ALPHA
    b_better = (diff < 0) if lower_better else (diff > 0)
    return MetricComparison(
        name,
        "continuous",
        "welch_t",
        ma,
        mb,
        len(xa),
        len(xb),
        diff,
        lo,
        hi,
        p,
        d,
        "cohens_d",
        sig,
        ("B" if b_better else "A") if sig and diff != 0 else "neither",
    )


def _proportions(
    name: str, ka: int, na: int, kb: int, nb: int, lower_better: bool
) -> MetricComparison | None:
    from scipy import stats

    if na == 0 or nb == 0:
        return None
    pa, pb = ka / na, kb / nb
    diff = pb - pa
    small = min(ka, na - ka, kb, nb - kb) < 5
    if small:
        _, p = stats.fisher_exact([[kb, nb - kb], [ka, na - ka]])
        test = "fisher_exact"
    else:
        pooled = (ka + kb) / (na + nb)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
        z = diff / se0 if se0 else 0.0
        p = float(2 * stats.norm.sf(abs(z))) if se0 else (1.0 if diff == 0 else 0.0)
        test = "two_proportion_z"
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    zc = float(stats.norm.ppf(0.975))
    lo, hi = diff - zc * se, diff + zc * se
    h = 2 * math.asin(math.sqrt(pb)) - 2 * math.asin(math.sqrt(pa))
    sig = float(p) < ALPHA
    b_better = (diff < 0) if lower_better else (diff > 0)
    return MetricComparison(
        name,
        "rate",
        test,
        pa,
        pb,
        na,
        nb,
        diff,
        lo,
        hi,
        float(p),
        h,
        "cohens_h",
        sig,
        ("B" if b_better else "A") if sig and diff != 0 else "neither",
    )


def compare_reports(
    a: dict[str, Any], b: dict[str, Any], *, a_name: str = "A", b_name: str = "B"
) -> Comparison:
    """Compare two JSON reports (as written by ``stalwart eval run --report``).

    Continuous samples (``samples``: cost, latency, tokens, scores per case) get Welch's t-test;
    rates (``rates``: successes and trials) get a two-proportion z-test, or Fisher's exact test
    when a cell holds fewer than 5. The verdict names the better side only at p < 0.05.
    """
    from stalwart.evals._gates import lower_is_better

    out: list[MetricComparison] = []
    sa, sb = a.get("samples") or {}, b.get("samples") or {}
    for name in sorted(set(sa) & set(sb)):
        m = _welch(name, [float(x) for x in sa[name]], [float(x) for x in sb[name]], lower_is_better(name))
        if m is not None:
            out.append(m)
    ra, rb = a.get("rates") or {}, b.get("rates") or {}
    for name in sorted(set(ra) & set(rb)):
        m = _proportions(
            name,
            int(ra[name]["k"]),
            int(ra[name]["n"]),
            int(rb[name]["k"]),
            int(rb[name]["n"]),
            lower_is_better(name),
        )
        if m is not None:
            out.append(m)
    better_b = [m.metric for m in out if m.better == "B"]
    better_a = [m.metric for m in out if m.better == "A"]
    if not better_a and not better_b:
        verdict = "no significant difference at p < 0.05"
    elif better_b and not better_a:
        verdict = f"{b_name} is better (p < 0.05 on {', '.join(better_b)})"
    elif better_a and not better_b:
        verdict = f"{a_name} is better (p < 0.05 on {', '.join(better_a)})"
    else:
        verdict = (
            f"mixed: {b_name} better on {', '.join(better_b)}; {a_name} better on {', '.join(better_a)} "
            f"(p < 0.05)"
        )
    return Comparison(a_name, b_name, out, verdict)
