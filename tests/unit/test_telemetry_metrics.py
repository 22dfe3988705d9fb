"""Metrics: exact names and labels, bounded cardinality, hooks that never raise, exposition."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stalwart.store import JournalEntry
from stalwart.telemetry import METRIC_NAMES, Metrics, Telemetry, TelemetrySettings, serve_metrics
from tests.unit.test_telemetry_spans import llm_entry, make_run, tool_entry

TABLE = {
    "agent_run_duration_seconds": ("histogram", {"workflow", "org", "success"}),
    "agent_tokens_total": ("counter", {"model", "org", "direction"}),
    "agent_cost_usd_total": ("counter", {"workflow", "org"}),
    "agent_tool_duration_seconds": ("histogram", {"tool"}),
    "agent_tool_errors_total": ("counter", {"tool", "error_type"}),
    "agent_human_review_queue_depth": ("gauge", set()),
    "agent_kill_switch_active": ("gauge", set()),
    "agent_pii_detections_total": ("counter", {"type"}),
}


def _tel(**cfg: object) -> tuple[Telemetry, Metrics]:
    m = Metrics()
    return Telemetry(config=TelemetrySettings(**cfg), metrics=m, alerts=False), m  # type: ignore[arg-type]


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _exercise(tel: Telemetry) -> None:
    run = make_run()
    tel.run_started(run)
    tel.step_committed(run, llm_entry())
    tel.step_committed(run, tool_entry(status="retrying", finished_at=None, error={"type": "ToolTimeout"}))
    tel.step_committed(run, tool_entry(attempts=2))
    tel.run_finished(run, "COMPLETED", duration_s=42.0, cost_usd=0.006, tokens=1500, budget_usd=0.5)
    tel.guard_verdict("user", "flag", 0.9, ["EMAIL_ADDRESS", "PHONE_NUMBER"])
    tel.set_kill_switch(True)
    tel.set_review_queue_depth(7)
    tel.unauthorized_tool_call("rm_rf")


def test_the_issue_table_exactly() -> None:
    tel, m = _tel()
    _exercise(tel)
    families = {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}
    for name, (kind, labels) in TABLE.items():
        family = families.get(name.removesuffix("_total"))
        assert family is not None, name
        assert family.type == kind, name
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        assert samples, f"{name} has no samples"
        for s in samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    s = _samples(m)
    assert s[("agent_tokens_total", (("direction", "input"), ("model", "primary"), ("org", "acme")))] == 1200
    assert s[("agent_tokens_total", (("direction", "output"), ("model", "primary"), ("org", "acme")))] == 300
    assert s[("agent_cost_usd_total", (("org", "acme"), ("workflow", "refund")))] == 0.006
    assert s[("agent_tool_errors_total", (("error_type", "ToolTimeout"), ("tool", "lookup_order")))] == 1
    assert s[("agent_tool_duration_seconds_count", (("tool", "lookup_order"),))] == 2
    assert (
        s[
            (
                "agent_run_duration_seconds_count",
                (("org", "acme"), ("success", "true"), ("workflow", "refund")),
            )
        ]
        == 1
    )
    assert s[("agent_pii_detections_total", (("type", "PHONE_NUMBER"),))] == 1
    assert s[("agent_kill_switch_active", ())] == 1
    assert s[("agent_human_review_queue_depth", ())] == 7
    assert s[("agent_unauthorized_tool_calls_total", (("tool", "rm_rf"),))] == 1
    assert s[("agent_llm_cache_requests_total", (("model", "primary"), ("result", "miss")))] == 1
    assert s[("agent_step_retries_total", (("kind", "tool"),))] == 1
    assert s[("agent_run_budget_ratio_count", (("workflow", "refund"),))] == 1


def test_metric_names_list_matches_the_registry() -> None:
    m = Metrics()
    registered = {f.name for f in m.registry.collect()}
    normalised = {n if n in registered else n.removesuffix("_total") for n in METRIC_NAMES}
    assert normalised == registered


def test_label_cardinality_is_bounded_and_ids_never_become_labels() -> None:
    tel, m = _tel(max_label_values=5)
    for i in range(50):
        run = make_run(id=f"run-{i}", org=f"org-{i}", user=f"user-{i}")
        tel.step_committed(run, llm_entry())
        tel.run_finished(run, "FAILED", duration_s=1, cost_usd=0.0, tokens=0)
    orgs = {dict(k[1]).get("org") for k in _samples(m) if k[0] == "agent_tokens_total"}
    assert len(orgs) == 6 and "other" in orgs
    text = m.exposition().decode()
    assert "run-1" not in text and "user-1" not in text


def test_hooks_never_raise_and_count_their_failures() -> None:
    tel, _ = _tel()
    bad = object()
    tel.run_started(bad)  # type: ignore[arg-type]
    tel.step_committed(bad, bad)  # type: ignore[arg-type]
    tel.run_finished(bad, "COMPLETED", duration_s=1, cost_usd=0, tokens=0)  # type: ignore[arg-type]
    tel.step_committed(
        make_run(), JournalEntry("run-1", 0, "llm", "x", "completed", meta={"tokens_in": "many"})
    )
    assert tel.hook_errors == 4


def test_serve_metrics_on_loopback() -> None:
    tel, m = _tel()
    _exercise(tel)
    server = serve_metrics(0, metrics=m)
    try:
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
            .read()
            .decode()
        )
    finally:
        server.shutdown()
        server.server_close()
    for name in TABLE:
        assert name.removesuffix("_total") in body


_CHILD = """
import sys
from stalwart.telemetry import METRICS, Telemetry, TelemetrySettings
from tests.unit.test_telemetry_spans import llm_entry, make_run
tel = Telemetry(config=TelemetrySettings(), alerts=False)
tel.step_committed(make_run(), llm_entry())
tel.set_kill_switch(sys.argv[1] == "on")
"""


def test_multiprocess_mode_sums_workers(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, separate worker processes add up in one exposition."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    root = Path(__file__).resolve().parents[2]
    for arg in ("on", "off"):
        subprocess.run([sys.executable, "-c", _CHILD, arg], env=env, cwd=root, check=True, timeout=60)
    code = (
        "from stalwart.telemetry import metrics_exposition; import sys; "
        "sys.stdout.write(metrics_exposition()[0].decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=root,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(out)
        for s in f.samples
    }
    assert (
        values[("agent_tokens_total", (("direction", "input"), ("model", "primary"), ("org", "acme")))]
        == 2400
    )
