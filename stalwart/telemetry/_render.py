"""Rendering an :class:`Explanation` and a trace for people: plain text and rich."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stalwart.telemetry._explain import format_duration

if TYPE_CHECKING:
    from stalwart.telemetry._explain import Explanation, StepRow
    from stalwart.telemetry._spans import SpanRecord

__all__ = ["explanation_rich", "explanation_text", "trace_text"]

_COLUMNS = (
    "seq",
    "kind",
    "name",
    "latency",
    "waiting",
    "tokens",
    "cost",
    "retries",
    "cache",
    "routing",
    "outcome",
)


def _cells(r: StepRow) -> list[str]:
    return [
        f"{'*' if r.critical else ' '}{r.seq}",
        r.kind,
        r.name[:32],
        format_duration(r.latency_s),
        format_duration(r.wait_s) if r.wait_s > 0 else "",
        f"{r.tokens_in}/{r.tokens_out}" if r.kind == "llm" else "",
        f"${r.cost_usd:.4f}" if r.kind == "llm" else "",
        str(r.retries) if r.retries else "",
        "" if r.cached is None else ("hit" if r.cached else "miss"),
        r.routing[:48],
        r.outcome[:60],
    ]


def _head(e: Explanation) -> list[str]:
    lines = [e.summary, ""]
    if e.top_cost:
        lines.append("Cost:")
        lines.extend(f"  - {s}" for s in e.top_cost)
    if e.top_time:
        lines.append("Time:")
        lines.extend(f"  - {s}" for s in e.top_time)
    lines.append(
        f"Critical path: {len(e.critical_path)} of {len(e.rows)} steps, {format_duration(e.critical_path_s)}"
        f" (marked *)."
    )
    lines.extend(e.notes)
    if e.agents:
        lines.append("")
        lines.append("Agent turns:")
        lines.extend(f"  {line}" for line in e.agents)
    return lines


def explanation_text(e: Explanation, max_rows: int = 200) -> str:
    """Summary, contributors and a fixed-width per-step table (the costliest/slowest rows when long)."""
    rows = list(e.rows)
    hidden = 0
    if len(rows) > max_rows:
        keep = sorted(rows, key=lambda r: (-(r.critical), -(r.cost_usd), -(r.latency_s + r.wait_s)))[
            :max_rows
        ]
        keep_seqs = {r.seq for r in keep}
        hidden = len(rows) - len(keep_seqs)
        rows = [r for r in rows if r.seq in keep_seqs]
    table = [list(_COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    lines = _head(e) + [""]
    for row in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if hidden:
        lines.append(f"({hidden} cheaper, faster steps off the critical path not shown)")
    return "\n".join(lines)


def explanation_rich(e: Explanation) -> Any:
    """A rich renderable: the summary, contributors and a table."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"run {e.run_id}", show_lines=False)
    for col in _COLUMNS:
        table.add_column(
            col,
            no_wrap=col not in ("routing", "outcome"),
            justify="right" if col in ("latency", "waiting", "cost", "retries") else "left",
        )
    for r in e.rows:
        table.add_row(*_cells(r), style="bold" if r.critical else None)
    return Group(Text("\n".join(_head(e))), table)


def trace_text(spans: list[SpanRecord]) -> str:
    """A trace as an indented tree: name, duration, status."""
    children: dict[str | None, list[SpanRecord]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids else None
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: (x.start, x.span_id)):
            mark = "ok" if s.ok else f"ERROR {s.error or ''}".rstrip()
            lines.append(f"{'  ' * depth}{s.name}  {format_duration(s.end - s.start)}  {mark}")
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
