"""One construction site for governance: only ``stalwart/engine/_governed.py`` builds the audit log,
policy engine, review queue, risk scorer, kill switch and compliance service of an app; the API, the
CLI and the rest of the engine get them from ``await app.governance()``. A second construction site
would drift (an audit log without the signing key, a kill switch without the broker): this fails."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "stalwart"
SERVICES = {"AuditLog", "PolicyEngine", "ReviewQueue", "RiskScorer", "KillSwitch", "Compliance", "verify_chain"}
THE_SITE = ROOT / "engine" / "_governed.py"


def _constructions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in SERVICES:
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {name}(…)")
    return found


def test_only_the_engine_wiring_builds_governance_services() -> None:
    stray = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == THE_SITE or (ROOT / "governance") in path.parents:
            continue  # the one site, and the governance package itself (its own defaults and helpers)
        stray += _constructions(path)
    assert stray == [], "build governance only in stalwart/engine/_governed.py; use `await app.governance()`"


def test_the_site_builds_every_service_and_the_kill_switch_gets_the_broker() -> None:
    source = THE_SITE.read_text()
    assert {"AuditLog", "PolicyEngine", "ReviewQueue", "RiskScorer", "KillSwitch", "Compliance"} <= {
        c.split()[-1].rstrip("(…)") for c in _constructions(THE_SITE)
    }
    assert "broker=None" not in source
