"""Alert rules and dashboard queries checked by the real ``promtool`` (Debian package ``prometheus``).

These tests fail, not skip, when promtool is missing: CI installs it (``apt-get install prometheus``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stalwart.telemetry import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "stalwart.json"
_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: `apt-get install -y prometheus` (Debian) provides it; "
            "scripts/system-deps.sh installs it in CI"
        )
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _metric_names(expr: str) -> set[str]:
    out = set()
    for name in re.findall(r"\b(agent_[a-z0-9_]+)", expr):
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in METRIC_NAMES:
                name = name.removesuffix(suffix)
        out.add(name)
    return out


def test_alert_rules_pass_their_unit_tests() -> None:
    res = _run("test", "rules", "alerts_test.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("mutation", ["never", "always"])
def test_the_alert_tests_can_fail(tmp_path: Path, mutation: str) -> None:
    """Thresholds no series can reach make the firing cases fail; thresholds every series passes
    make the non-firing cases fail."""
    text = (PROM / "alerts.yml").read_text()
    new = re.sub(r">\s*[0-9.]+(\s*\n)", (r"> 1e12\1" if mutation == "never" else r"> -1e12\1"), text)
    assert new != text
    (tmp_path / "alerts.yml").write_text(new)
    shutil.copy(PROM / "alerts_test.yml", tmp_path / "alerts_test.yml")
    res = _run("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert res.returncode != 0, res.stdout


def test_alert_rules_use_exported_metrics_only() -> None:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    names = set().union(*(_metric_names(r["expr"]) for g in doc["groups"] for r in g["rules"]))
    assert names and names <= METRIC_NAMES, names - METRIC_NAMES


def _panel_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for t in panel["targets"]:
            out.append((panel["title"], t["expr"]))
    return out


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    rules = []
    for i, (_title, expr) in enumerate(_panel_queries()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$workflow", ".*")
        assert "$" not in concrete, expr
        rules.append({"record": f"dashboard:panel_{i}", "expr": concrete})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = _run("check", "rules", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules)} rules found" in res.stdout


def test_a_broken_query_would_be_caught(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "d",
                        "rules": [
                            {"record": "dashboard:bad", "expr": "sum by (le (rate(agent_tokens_total[5m]))"}
                        ],
                    }
                ]
            }
        )
    )
    assert _run("check", "rules", str(path), cwd=tmp_path).returncode != 0


def test_dashboard_names_exported_metrics_and_has_the_panels() -> None:
    queries = _panel_queries()
    used = set().union(*(_metric_names(e) for _, e in queries))
    assert used <= METRIC_NAMES, used - METRIC_NAMES
    table = {
        "agent_run_duration_seconds",
        "agent_tokens_total",
        "agent_cost_usd_total",
        "agent_tool_errors_total",
        "agent_human_review_queue_depth",
        "agent_kill_switch_active",
        "agent_pii_detections_total",
    }
    assert table <= used
    titles = " | ".join(t for t, _ in queries).lower()
    for needle in (
        "runs",
        "p50 / p95 / p99",
        "cost per run",
        "tokens by model",
        "tool error",
        "review queue",
        "kill switch",
        "pii",
        "budget burn",
    ):
        assert needle in titles, needle
