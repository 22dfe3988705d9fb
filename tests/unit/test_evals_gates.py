"""Gate expressions and the regression gate: every gate must be able to fail."""

from __future__ import annotations

import math

import pytest

from stalwart.errors import ConfigError
from stalwart.evals import evaluate_gates, parse_gates, regression_gate


def test_the_issue_example_passes_and_fails_on_each_clause() -> None:
    expr = "semantic_similarity > 0.92 AND cost_per_run_p95 < 0.05 AND latency_p95 < 2s"
    good = {"semantic_similarity": 0.95, "cost_per_run_p95": 0.01, "latency_p95": 1.2}
    assert evaluate_gates(expr, good).passed
    for name, bad in (("semantic_similarity", 0.92), ("cost_per_run_p95", 0.05), ("latency_p95", 2.0)):
        result = evaluate_gates(expr, {**good, name: bad})
        assert not result.passed
        assert [c.metric for c in result.checks if not c.passed] == [name]


def test_units_or_not_and_parentheses() -> None:
    m = {"latency_p99": 0.4, "rate": 0.996, "cost": 0.02, "x": 1.0}
    assert evaluate_gates("latency_p99 <= 400ms", m).passed
    assert not evaluate_gates("latency_p99 < 400ms", m).passed
    assert evaluate_gates("rate > 99.5%", m).passed
    assert evaluate_gates("cost < $0.05", m).passed
    assert evaluate_gates("(x == 2 OR x == 1) and not cost > 1", m).passed
    assert not evaluate_gates("NOT (x != 2)", m).passed
    assert evaluate_gates("x != 2", m).passed


def test_a_missing_metric_fails_and_says_why() -> None:
    result = evaluate_gates(
        "semantic_similarity > 0.9", {"pass_rate": 1.0}, {"semantic_similarity": "install the optional extra"}
    )
    assert not result.passed
    assert result.checks[0].value is None and "install the optional extra" in (result.checks[0].error or "")
    unknown = evaluate_gates("nonexistent_metric == 0", {"pass_rate": 1.0})
    assert not unknown.passed and "not computed" in (unknown.checks[0].error or "")
    assert not evaluate_gates("x > 0", {"x": math.nan}).passed


@pytest.mark.parametrize(
    "bad", ["", "x >", "x > y", "x 3", "(x > 1", "x > 1 AND", "x > 1 y > 2", "AND x > 1"]
)
def test_syntax_errors_name_the_problem(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_gates(bad)


def test_regression_gate_fails_over_ten_percent_unless_allowed() -> None:
    base = {"cost_per_run_p95": 0.010, "pass_rate": 0.90, "latency_p95": 1.0, "tokens_per_run_p50": 100.0}
    ok, rows = regression_gate({**base, "cost_per_run_p95": 0.0109}, base)
    assert ok and not any(r.regressed for r in rows)
    ok, rows = regression_gate({**base, "cost_per_run_p95": 0.0111}, base)
    assert not ok and [r.metric for r in rows if r.regressed] == ["cost_per_run_p95"]
    ok, _ = regression_gate({**base, "pass_rate": 0.80}, base)  # higher is better: a drop regresses
    assert not ok
    ok, rows = regression_gate({**base, "pass_rate": 0.80}, base, allow=["pass_rate"])
    assert ok and rows[[r.metric for r in rows].index("pass_rate")].allowed
    ok, _ = regression_gate(
        {**base, "latency_p95": 0.03}, {**base, "latency_p95": 0.02}
    )  # +50% but 10 ms: noise
    assert ok
    ok, _ = regression_gate({"unauthorized_tool_call_rate": 0.01}, {"unauthorized_tool_call_rate": 0.0})
    assert not ok  # from a baseline of zero, any worsening counts
    with pytest.raises(ConfigError):
        regression_gate({"a": 1.0}, {}, metrics=["a"])
