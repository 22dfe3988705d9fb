"""Alert rules evaluated in-process: Prometheus `for:` semantics, quantiles, agreement with alerts.yml."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import yaml

from stalwart.telemetry import (
    ALERT_RULES,
    AlertMonitor,
    AlertSample,
    Metrics,
    Telemetry,
    TelemetrySettings,
    evaluate_alerts,
    histogram_quantile,
)
from tests.unit.test_telemetry_spans import make_run

ALERTS_YML = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def test_for_duration_pending_then_firing_and_gaps_reset() -> None:
    samples = [AlertSample(at=t, error_rate=0.2) for t in range(0, 301, 60)]
    assert [a.state for a in evaluate_alerts(samples[:3])] == ["pending"]
    [alert] = evaluate_alerts(samples)
    assert (alert.name, alert.state, alert.active_since) == ("AgentRunErrorRateHigh", "firing", 0)
    broken = samples[:2] + [AlertSample(at=120, error_rate=0.01)] + samples[3:]
    assert [a.state for a in evaluate_alerts(broken)] == ["pending"]
    gap = [AlertSample(at=0, error_rate=0.2), AlertSample(at=1000, error_rate=0.2)]
    assert evaluate_alerts(gap, max_gap_s=120)[0].active_since == 1000


def test_no_data_never_fires_and_kill_switch_fires_at_once() -> None:
    assert evaluate_alerts([AlertSample(at=0)]) == []
    [a] = evaluate_alerts([AlertSample(at=5, kill_switch=1.0)])
    assert a.name == "AgentKillSwitchActive" and a.state == "firing"


def test_histogram_quantile_matches_prometheus() -> None:
    inf = float("inf")
    assert histogram_quantile(0.99, [(300, 0), (600, 10), (inf, 10)]) == 597.0
    assert histogram_quantile(0.5, [(1, 5), (2, 10), (inf, 10)]) == 1.0
    assert histogram_quantile(0.99, [(1, 0), (2, 0), (inf, 10)]) == 2  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, [(1, 0), (inf, 0)]) is None


def test_rules_agree_with_alerts_yml() -> None:
    doc = yaml.safe_load(ALERTS_YML.read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    assert set(rules) == {r.name for r in ALERT_RULES}
    units = {"m": 60, "s": 1, "h": 3600}
    for rule in ALERT_RULES:
        y = rules[rule.name]
        m = re.fullmatch(r"(\d+)([smh])", y["for"])
        assert m and int(m[1]) * units[m[2]] == rule.for_s, rule.name
        threshold = float(re.search(r">\s*([0-9.]+)\s*$", y["expr"].strip())[1])  # type: ignore[index]
        assert threshold == rule.threshold, rule.name
        assert y["labels"]["severity"] == rule.severity
        assert y["annotations"]["summary"] == rule.summary


def test_monitor_computes_windowed_rates_from_metrics() -> None:
    m = Metrics()
    tel = Telemetry(config=TelemetrySettings(), metrics=m, alerts=False)
    mon = AlertMonitor(m, interval_s=60)
    run = make_run()
    t = 0.0
    for _minute in range(8):
        for i in range(10):
            tel.run_finished(
                run,
                "FAILED" if i < 2 else "COMPLETED",
                duration_s=400,
                cost_usd=1.0,
                tokens=1,
                budget_usd=0.5,
            )
        for _ in range(100):
            tel.guard_verdict("user", "allow", 0.0, [])
        mon.observe(t)
        t += 60
    sample = mon.samples[-1]
    assert sample.error_rate == 0.2
    assert sample.pii_rate == 0.0
    assert sample.run_duration_p99_s is not None and 300 < sample.run_duration_p99_s <= 600
    names = {a.name: a.state for a in mon.evaluate(t - 60)}
    assert names["AgentRunErrorRateHigh"] == "firing"
    assert names["AgentRunDurationP99High"] == "firing"
    assert names["AgentRunCostOverBudget"] == "pending"  # 7 minutes of 10
    assert "AgentPIIDetectionRateHigh" not in names


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_firing_and_resolved_transitions_reach_the_webhook() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []

    async def go() -> None:
        m = Metrics()
        mon = AlertMonitor(m, interval_s=1, webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
        m.kill_switch.set(1)
        await mon.tick(100.0)
        await mon.tick(100.5)  # within the interval: nothing new
        m.kill_switch.set(0)
        await mon.tick(102.0)
        await mon.drain()

    try:
        asyncio.run(go())
    finally:
        server.shutdown()
        server.server_close()
    assert [(r["alert"]["name"], r["status"]) for r in _Hook.received] == [
        ("AgentKillSwitchActive", "firing"),
        ("AgentKillSwitchActive", "resolved"),
    ]


def test_a_dead_webhook_is_counted_not_raised() -> None:
    async def go() -> int:
        m = Metrics()
        mon = AlertMonitor(m, interval_s=1, webhook_url="http://127.0.0.1:9/none")
        m.kill_switch.set(1)
        await mon.tick(1.0)
        await mon.drain()
        return mon.webhook_failures

    assert asyncio.run(go()) == 1
