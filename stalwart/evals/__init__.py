"""stalwart.evals — evaluation as CI: golden and adversarial suites, metrics, gates, regression and
A/B statistics, reports, and production shadow evaluation.

A suite is a directory with ``suite.yaml`` (the workflow, the provider, the metrics, the gates,
the concurrency) and ``cases.jsonl``. :func:`run_suite` runs every case through the real engine
and returns an :class:`EvalReport`; :func:`write_report` writes JSON, JUnit XML and a
self-contained HTML report. On the command line::

    stalwart eval run evals/suites/refund-golden --gate --report out/
    stalwart eval run evals/suites/refund-adversarial --gate        # exit 1 when a gate fails
    stalwart eval compare a/report.json b/report.json               # Welch / two-proportion / Fisher
    stalwart eval shadow --fraction 0.05 · stalwart eval queue list|label · stalwart eval harvest
    stalwart eval drift refund-golden

Gates are expressions such as ``semantic_similarity > 0.92 AND cost_per_run_p95 < 0.05 AND
latency_p95 < 2s``; a gate on a metric that could not be computed (its model is not installed,
no case measures it) fails and says why. Adversarial suites run against :class:`CompromisedLLM`,
a loopback model that obeys every instruction it reads, so that what is measured is whether
Stalwart stops the attack. Import is cheap: heavy parts load on use.
"""

from stalwart.evals._compromised import CompromisedLLM
from stalwart.evals._embed import Embedder, LexicalEmbedder, MiniLMEmbedder, load_embedder
from stalwart.evals._gates import Check, GateResult, Regression, evaluate_gates, parse_gates, regression_gate
from stalwart.evals._metrics import exact_match, json_field_match
from stalwart.evals._report import render_html, render_junit, write_report
from stalwart.evals._runner import CaseResult, EvalReport, load_report, run_suite
from stalwart.evals._shadow import (
    Annotation,
    AnnotationQueue,
    DriftReport,
    ShadowSampler,
    detect_drift,
    harvest,
    sampled,
)
from stalwart.evals._stats import Comparison, MetricComparison, compare_reports, percentile
from stalwart.evals._suite import Case, Suite, Target, load_suite

__all__ = [
    "Annotation",
    "AnnotationQueue",
    "Case",
    "CaseResult",
    "Check",
    "Comparison",
    "CompromisedLLM",
    "DriftReport",
    "Embedder",
    "EvalReport",
    "GateResult",
    "LexicalEmbedder",
    "MetricComparison",
    "MiniLMEmbedder",
    "Regression",
    "ShadowSampler",
    "Suite",
    "Target",
    "compare_reports",
    "detect_drift",
    "evaluate_gates",
    "exact_match",
    "harvest",
    "json_field_match",
    "load_embedder",
    "load_report",
    "load_suite",
    "parse_gates",
    "percentile",
    "regression_gate",
    "render_html",
    "render_junit",
    "run_suite",
    "sampled",
    "write_report",
]
