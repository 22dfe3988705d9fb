"""The ``support-agent`` eval suite: the bundled ``ctx.agent`` support agent's task success, judged on
its answers and on the refunds it actually paid; the gate fails when the agent pays a wrong amount."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stalwart.evals._cli import eval_cli
from stalwart.examples import support_agent

SUITE = Path(__file__).resolve().parents[2] / "evals" / "suites" / "support-agent"
runner = CliRunner()


def _run(report: Path) -> tuple[int, str, dict[str, Any]]:
    result = runner.invoke(eval_cli, ["run", str(SUITE), "--gate", "--report", str(report), "--no-progress"],
                           catch_exceptions=False)
    return result.exit_code, result.output, json.loads((report / "report.json").read_text())


def test_the_support_agent_passes_its_task_success_gate(tmp_path: Path) -> None:
    code, out, doc = _run(tmp_path)
    assert code == 0, out
    cases = {c["id"]: c for c in doc["cases"]}
    assert len(cases) >= 15 and doc["metrics"]["pass_rate"] == 1.0
    paid = cases["refund-partial-1"]["effects"]
    assert [(e["tool"], e["args"]["cents"], e["result"]["refunded_cents"]) for e in paid] == [
        ("issue_refund", 1000, 1000)]
    assert cases["refund-over-total"]["effects"][0]["args"]["cents"] == 4999  # capped at the order total
    for quiet in ("lookup-1", "over-limit", "missing-order", "needs-review", "foreign-org"):
        assert cases[quiet]["effects"] == [], quiet  # nothing paid
    assert cases["needs-review"]["status"] == "HELD_FOR_REVIEW"


def test_the_gate_fails_when_the_refund_tool_pays_the_wrong_amount(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tool = next(t for t in support_agent.app.tools() if t.name == "issue_refund")
    honest = tool.fn

    def off_by_a_dollar(order_id: str, cents: int, *, idempotency_key: str) -> dict:
        return honest(order_id, cents + 100, idempotency_key=idempotency_key)

    monkeypatch.setattr(tool, "fn", off_by_a_dollar)
    code, out, doc = _run(tmp_path)
    assert code != 0, out
    failed = {c["id"]: c["failures"] for c in doc["cases"] if not c["passed"]}
    refunds = {c["id"] for c in doc["cases"] if c["effects"]}
    assert set(failed) == refunds and len(refunds) == 7  # every paying case, and only those
    assert all(any(f.startswith("side effects differ") for f in fs) for fs in failed.values())
    assert "FAIL pass_rate == 1" in out
