"""Report files: ``report.json`` (for ``--baseline`` and ``eval compare``), ``junit.xml`` (for CI)
and ``report.html`` (self-contained: inline SVG charts, no script, no CDN)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

__all__ = ["render_html", "render_junit", "write_report"]


def write_report(report: Any, directory: str | Path) -> dict[str, Path]:
    """Write the three files into ``directory`` (created); return their paths by kind."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    doc = report.to_json()
    paths = {"json": out / "report.json", "junit": out / "junit.xml", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=str, ensure_ascii=False))
    paths["junit"].write_text(render_junit(doc))
    paths["html"].write_text(render_html(doc))
    return paths


# -- JUnit ----------------------------------------------------------------------------------------


def render_junit(doc: dict[str, Any]) -> str:
    """One ``<testsuite>`` for the cases and one for the gates (each comparison a test case)."""
    root = ET.Element("testsuites", name=f"stalwart eval {doc['suite']}")
    cases = doc["cases"]
    ts = ET.SubElement(
        root,
        "testsuite",
        name=f"{doc['suite']}.cases",
        tests=str(len(cases)),
        failures=str(sum(not c["passed"] for c in cases)),
        time=f"{doc['duration_s']:.3f}",
    )
    for c in cases:
        tc = ET.SubElement(
            ts,
            "testcase",
            classname=f"{doc['suite']}.{(c['tags'] or ['case'])[0]}",
            name=c["id"],
            time=f"{c['latency_s']:.3f}",
        )
        if not c["passed"]:
            f = ET.SubElement(tc, "failure", message="; ".join(c["failures"])[:500] or "failed")
            f.text = json.dumps(
                {"status": c["status"], "output": c["output"], "error": c["error"]}, default=str
            )[:4000]
    checks = (doc.get("gates") or {}).get("checks") or []
    regression = (doc.get("regression") or {}).get("metrics") or []
    gs = ET.SubElement(
        root,
        "testsuite",
        name=f"{doc['suite']}.gates",
        tests=str(len(checks) + len(regression)),
        failures=str(
            sum(not c["passed"] for c in checks)
            + sum(r["regressed"] and not r["allowed"] for r in regression)
        ),
    )
    for c in checks:
        tc = ET.SubElement(gs, "testcase", classname=f"{doc['suite']}.gates", name=c["text"])
        if not c["passed"]:
            msg = c["error"] or f"{c['metric']} = {c['value']:.6g}, gate {c['text']}"
            ET.SubElement(tc, "failure", message=msg)
    for r in regression:
        tc = ET.SubElement(
            gs, "testcase", classname=f"{doc['suite']}.regression", name=f"no regression: {r['metric']}"
        )
        if r["regressed"] and not r["allowed"]:
            ET.SubElement(
                tc,
                "failure",
                message=f"{r['metric']} regressed {r['change']:.1%} "
                f"({r['baseline']:.6g} -> {r['current']:.6g})",
            )
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- HTML -----------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#1d232b;
background:#f7f8fa;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.muted{color:#5b6673}.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff}
.pass{background:#1a7f37}.fail{background:#cf222e}.warn{background:#9a6700}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:16px}
.card{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:12px 14px}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #e5e9ee;padding:5px 8px;
text-align:left;vertical-align:top}th{background:#f0f3f6;font-weight:600}code{font-size:12px}
.kpis{display:flex;flex-wrap:wrap;gap:10px}.kpi{background:#fff;border:1px solid #d8dee4;border-radius:8px;
padding:8px 12px;min-width:150px}.kpi b{display:block;font-size:18px}
svg text{font:11px system-ui,sans-serif;fill:#1d232b}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(name: str, v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isnan(v):
        return "—"
    if name.startswith("latency"):
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    if name.startswith("cost"):
        return f"${v:.5f}"
    if "rate" in name or name in ("exact_match", "json_field_match", "semantic_similarity"):
        return f"{v:.2%}" if name != "semantic_similarity" else f"{v:.3f}"
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


def _histogram(
    values: list[float], title: str, unit: str, scale: float = 1.0, bins: int = 16, color: str = "#0969da"
) -> str:
    w, h, pad_l, pad_b = 360, 190, 40, 34
    vals = [v * scale for v in values if v is not None]
    head = f'<div class="card"><b>{_e(title)}</b>'
    if not vals:
        return head + '<p class="muted">no data</p></div>'
    lo, hi = min(vals), max(vals)
    if hi == lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in vals:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    top = max(counts)
    bw = (w - pad_l - 10) / bins
    bars = []
    for i, c in enumerate(counts):
        bh = (h - pad_b - 14) * c / top if top else 0
        x = pad_l + i * bw
        y = h - pad_b - bh
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" fill="{color}">'
            f"<title>{lo + i * width:.4g}–{lo + (i + 1) * width:.4g} {unit}: {c}</title></rect>"
        )
    axis = (
        f'<line x1="{pad_l}" y1="{h - pad_b}" x2="{w - 8}" y2="{h - pad_b}" stroke="#8c959f"/>'
        f'<text x="{pad_l}" y="{h - pad_b + 14}">{lo:.4g}</text>'
        f'<text x="{w - 8}" y="{h - pad_b + 14}" text-anchor="end">{hi:.4g} {_e(unit)}</text>'
        f'<text x="{pad_l - 6}" y="18" text-anchor="end">{top}</text>'
        f'<text x="{pad_l - 6}" y="{h - pad_b}" text-anchor="end">0</text>'
        f'<text x="{(w + pad_l) / 2}" y="{h - 4}" text-anchor="middle" class="muted">n = {len(vals)}</text>'
    )
    return (
        head
        + f'<svg role="img" aria-label="{_e(title)}" viewBox="0 0 {w} {h}" width="100%" height="{h}">'
        + "".join(bars)
        + axis
        + "</svg></div>"
    )


def _tag_bars(tags: dict[str, dict[str, int]]) -> str:
    rows = list(tags.items())[:40]
    if not rows:
        return ""
    w, row_h, label_w = 760, 20, 230
    h = row_h * len(rows) + 10
    parts = []
    for i, (tag, t) in enumerate(rows):
        rate = t["passed"] / t["n"] if t["n"] else 0
        y = 5 + i * row_h
        bar = (w - label_w - 90) * rate
        color = "#1a7f37" if rate == 1 else ("#9a6700" if rate >= 0.9 else "#cf222e")
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{_e(tag)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w - label_w - 90}" height="{row_h - 6}" fill="#eaeef2"/>'
            f'<rect x="{label_w}" y="{y + 2}" width="{bar:.1f}" height="{row_h - 6}" fill="{color}">'
            f"<title>{_e(tag)}: {t['passed']}/{t['n']}</title></rect>"
            f'<text x="{w - 84}" y="{y + 13}">{t["passed"]}/{t["n"]} ({rate:.0%})</text>'
        )
    return (
        f'<div class="card"><b>Pass rate by tag</b><svg role="img" aria-label="pass rate by tag" '
        f'viewBox="0 0 {w} {h}" width="100%" height="{h}">' + "".join(parts) + "</svg></div>"
    )


def render_html(doc: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    passed = doc["passed"]
    m = doc["metrics"]
    gates = doc.get("gates") or {}
    kpi_names = [
        k
        for k in (
            "pass_rate",
            "json_field_match",
            "semantic_similarity",
            "judge_score",
            "injection_detection_rate",
            "pii_leakage_rate",
            "unauthorized_tool_call_rate",
            "hallucinated_action_rate",
            "exfiltration_rate",
            "false_positive_rate",
            "benign_pass_rate",
            "cost_per_run_p50",
            "cost_per_run_p95",
            "latency_p50",
            "latency_p95",
            "latency_p99",
            "tokens_per_run_p50",
            "tokens_per_run_p95",
        )
        if m.get(k) is not None
    ]
    kpis = "".join(
        f'<div class="kpi"><span class="muted">{_e(k)}</span><b>{_e(_fmt(k, m[k]))}</b></div>'
        for k in kpi_names
    )
    gate_rows = "".join(
        f"<tr><td><code>{_e(c['text'])}</code></td><td>{_e(_fmt(c['metric'], c['value']))}</td>"
        f'<td><span class="badge {"pass" if c["passed"] else "fail"}">{"pass" if c["passed"] else "fail"}</span></td>'
        f'<td class="muted">{_e(c["error"] or "")}</td></tr>'
        for c in gates.get("checks") or []
    )
    reg = doc.get("regression") or {}
    reg_rows = "".join(
        f"<tr><td>{_e(r['metric'])}</td><td>{_e(_fmt(r['metric'], r['baseline']))}</td>"
        f"<td>{_e(_fmt(r['metric'], r['current']))}</td><td>{r['change']:+.1%}</td>"
        f'<td><span class="badge {"fail" if r["regressed"] and not r["allowed"] else ("warn" if r["regressed"] else "pass")}">'
        f"{'regressed' if r['regressed'] else 'ok'}{' (allowed)' if r['regressed'] and r['allowed'] else ''}</span></td></tr>"
        for r in reg.get("metrics") or []
    )
    s = doc.get("samples") or {}
    charts = [
        _histogram(s.get("latency_s") or [], "Latency per run", "ms", 1000.0, color="#8250df"),
        _histogram(s.get("cost_usd") or [], "Cost per run", "USD", color="#bf3989"),
        _histogram(s.get("tokens") or [], "Tokens per run", "tokens", color="#0969da"),
    ]
    for score in ("json_field_match", "semantic_similarity", "judge_score", "exact_match"):
        if s.get(score):
            charts.append(_histogram(s[score], f"Score distribution: {score}", "", bins=10, color="#1a7f37"))
    failing = [c for c in doc["cases"] if not c["passed"]]
    shown = failing[:200] + [c for c in doc["cases"] if c["passed"]][: max(0, 60 - len(failing))]
    case_rows = "".join(
        f'<tr><td><code>{_e(c["id"])}</code></td><td><span class="badge {"pass" if c["passed"] else "fail"}">'
        f"{'pass' if c['passed'] else 'fail'}</span></td><td>{_e(c['status'])}</td><td>{_e(', '.join(c['tags']))}</td>"
        f'<td>{_e(_fmt("latency", c["latency_s"]))}</td><td class="muted">{_e("; ".join(c["failures"])[:300])}</td></tr>'
        for c in shown
    )
    unavailable = "".join(
        f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in (doc.get("unavailable") or {}).items()
    )
    errors = "".join(f"<li>{_e(e)}</li>" for e in doc.get("errors") or [])
    verdict = "PASSED" if passed else "FAILED"
    badge = "pass" if passed else "fail"
    errors_html = f'<div class="card"><b>Errors</b><ul>{errors}</ul></div>' if errors else ""
    gates_html = (
        "<table><tr><th>gate</th><th>value</th><th>result</th><th>note</th></tr>" + gate_rows + "</table>"
        if gate_rows
        else '<p class="muted">no gates declared</p>'
    )
    reg_html = ""
    if reg_rows:
        reg_html = (
            f"<h2>Regression against {_e(doc.get('baseline'))}</h2><table><tr><th>metric</th><th>baseline</th>"
            "<th>current</th><th>change (+ is worse)</th><th></th></tr>" + reg_rows + "</table>"
        )
    unavailable_html = f"<h2>Not computed</h2><ul>{unavailable}</ul>" if unavailable else ""
    shown_note = " (all shown)" if len(failing) <= 200 else " (first 200 shown)"
    guard = doc["guard"]
    head = (
        f"{_e(doc['kind'])} suite · provider {_e(doc['provider'])} · {len(doc['cases'])} cases in "
        f"{doc['duration_s']:.1f} s · guard pii={_e(guard.get('pii'))} injection={_e(guard.get('injection'))}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>stalwart eval · {_e(doc["suite"])}</title><style>{_CSS}</style></head><body>
<h1>{_e(doc["suite"])} <span class="badge {badge}" id="verdict">{verdict}</span></h1>
<p class="muted">{head}</p>
{errors_html}
<div class="kpis">{kpis}</div>
<h2>Gates</h2>
{gates_html}
{reg_html}
{unavailable_html}
<h2>Distributions</h2><div class="grid">{"".join(charts)}</div>
<h2>By tag</h2>{_tag_bars(doc.get("tags") or {})}
<h2>Cases</h2><p class="muted">{len(failing)} failing{shown_note}; passing cases fill up to 60 rows.
Every case is in report.json.</p>
<table><tr><th>case</th><th>result</th><th>status</th><th>tags</th><th>latency</th><th>why</th></tr>{case_rows}</table>
</body></html>
"""
