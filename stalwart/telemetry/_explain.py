"""``explain``: why a run cost what it cost and took as long as it took (pure, from the journal).

Per step: latency, waiting time, tokens, cost, retries, cache hit, routing decision, tool outcome.
The critical path is the chain of steps that determined the run's end: walking back from the
step that finished last, each step's predecessor is the one that finished last before it started
(parallel branches that finished earlier are off the path). Sorting by finish time makes the whole
analysis O(n log n).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from stalwart.telemetry._agent_tree import agent_tree

__all__ = ["Explanation", "StepRow", "explain", "format_duration"]

_WAIT_KINDS = frozenset({"sleep", "signal", "review"})


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step of the run as the journal recorded it (its last attempt)."""

    seq: int
    kind: str
    name: str
    status: str
    started_at: float | None
    finished_at: float | None
    latency_s: float
    """Wall time of the step's last attempt (for sleeps, signals and reviews: the wait itself)."""
    wait_s: float
    """Idle time before the step started (queueing, retry backoff, a resume) plus, for sleeps,
    signals and reviews, the wait itself."""
    tokens_in: int
    tokens_out: int
    cost_usd: float
    retries: int
    cached: bool | None
    """Model calls: answered from the response cache. Other steps: ``None``."""
    routing: str
    """Model calls: the model chosen and why (and the candidates skipped)."""
    outcome: str
    """``ok``, or the error; tools add the sandbox and duration."""
    model: str = ""
    critical: bool = False


@dataclass(frozen=True)
class Explanation:
    """The answer to "why did this run cost $X and take Y?" (see :func:`explain`)."""

    run_id: str
    workflow: str
    version: str
    status: str
    started_at: float
    ended_at: float
    total_s: float
    waiting_s: float
    cost_usd: float
    tokens_in: int
    tokens_out: int
    retries: int
    cache_hits: int
    rows: tuple[StepRow, ...]
    critical_path: tuple[int, ...]
    """Sequence numbers of the steps on the critical path, first to last."""
    critical_path_s: float
    top_cost: tuple[str, ...]
    top_time: tuple[str, ...]
    summary: str
    notes: tuple[str, ...] = field(default=())
    agents: tuple[str, ...] = field(default=())
    """Each ``ctx.agent`` loop drawn as a tree: its outcome, its turns and their tool calls."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (``stalwart run explain ID --json``)."""
        d = asdict(self)
        d["rows"] = [asdict(r) for r in self.rows]
        d["critical_path"] = list(self.critical_path)
        d["top_cost"] = list(self.top_cost)
        d["top_time"] = list(self.top_time)
        d["notes"] = list(self.notes)
        d["agents"] = list(self.agents)
        return d

    def to_text(self, max_rows: int = 200) -> str:
        """A plain-text report: summary, contributors, critical path, per-step table."""
        from stalwart.telemetry._render import explanation_text

        return explanation_text(self, max_rows=max_rows)

    def __rich__(self) -> Any:
        from stalwart.telemetry._render import explanation_rich

        return explanation_rich(self)


def format_duration(seconds: float) -> str:
    """``0.042`` → ``42ms``; ``185`` → ``3m05s``; ``7300`` → ``2h01m40s``."""
    s = max(0.0, float(seconds))
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s"


def _money(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole > 0 else "0%"


def _f(meta: dict[str, Any], key: str) -> float:
    try:
        return float(meta.get(key) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _routing(meta: dict[str, Any]) -> str:
    r = meta.get("routing")
    if not isinstance(r, dict):
        return str(meta.get("model") or "")
    text = str(r.get("chosen") or meta.get("model") or "")
    if r.get("reason"):
        text += f" ({r['reason']})"
    skipped = r.get("skipped") or []
    if skipped:
        names = ", ".join(
            f"{s.get('model')}: {s.get('why')}" if isinstance(s, dict) else str(s) for s in skipped[:3]
        )
        text += f"; skipped {names}"
    return text


def _outcome(e: Any, meta: dict[str, Any]) -> str:
    if e.status == "completed":
        base = "ok"
        if meta.get("timed_out"):
            base = "timed out"
    elif e.status == "waiting":
        base = "waiting"
    else:
        err = e.error or {}
        base = f"{'failed' if e.status == 'failed' else 'retrying'}: {err.get('type') or err.get('code') or 'error'}"
        if err.get("message"):
            base += f" ({str(err['message'])[:80]})"
    if e.kind == "tool":
        bits = [
            b
            for b in (
                str(meta.get("sandbox") or ""),
                format_duration(_f(meta, "duration_ms") / 1000)
                if meta.get("duration_ms") is not None
                else "",
            )
            if b
        ]
        if bits:
            base += f" [{', '.join(bits)}]"
        fb = meta.get("fallback")
        if fb:  # a declared fallback answered instead: never silent
            base += f"; fell back to {fb.get('tool')} ({fb.get('outcome')}) because {fb.get('because')}"
        if meta.get("age_s") is not None:
            base += f"; data {meta['age_s']:.0f}s old"
    if meta.get("model_changed"):
        mc = meta["model_changed"]
        base += f"; model changed behind {mc.get('entry')}: {mc.get('was')} -> {mc.get('now')}"
    return base


def explain(run: Any, journal: Sequence[Any]) -> Explanation:
    """Explain a run from its record (``RunInfo`` or ``RunRecord``) and journal. Pure; O(n log n)."""
    entries = sorted(journal, key=lambda e: e.seq)
    start = float(run.created_at)
    finished = [float(e.finished_at) for e in entries if e.finished_at is not None]
    end = float(run.finished_at) if getattr(run, "finished_at", None) else max(finished, default=start)
    end = max(end, start)

    # Idle time before each step: since the latest finish of any step that ended before it began.
    order = sorted((float(e.finished_at), e.seq) for e in entries if e.finished_at is not None)
    finish_times = [t for t, _ in order]

    def before(t: float) -> int:
        return bisect.bisect_right(finish_times, t + 1e-9) - 1

    rows: list[StepRow] = []
    tokens_in = tokens_out = retries = hits = 0
    cost = waiting = 0.0
    by_seq: dict[int, Any] = {}
    for e in entries:
        meta: dict[str, Any] = e.meta or {}
        by_seq[e.seq] = e
        st = float(e.started_at) if e.started_at is not None else None
        fin = float(e.finished_at) if e.finished_at is not None else None
        latency = (fin - st) if (st is not None and fin is not None) else 0.0
        gap = 0.0
        if st is not None:
            i = before(st)
            ready = finish_times[i] if i >= 0 else start
            gap = max(0.0, st - ready)
        wait = gap + (latency if e.kind in _WAIT_KINDS else 0.0)
        tin = tout = 0
        c = 0.0
        cached: bool | None = None
        routing = ""
        model = ""
        if e.kind == "llm":
            tin, tout, c = int(_f(meta, "tokens_in")), int(_f(meta, "tokens_out")), _f(meta, "cost_usd")
            cached = bool(meta.get("cached", False))
            routing = _routing(meta)
            model = str(meta.get("model") or meta.get("model_id") or "")
            if e.status == "completed":
                tokens_in += tin
                tokens_out += tout
                cost += c
                hits += int(cached)
        r = max(0, int(e.attempts or 1) - 1)
        retries += r
        waiting += wait
        rows.append(
            StepRow(
                e.seq,
                e.kind,
                e.name,
                e.status,
                st,
                fin,
                latency,
                wait,
                tin,
                tout,
                c,
                r,
                cached,
                routing,
                _outcome(e, meta),
                model,
            )
        )

    # Critical path: back from the last finisher through "finished last before I started".
    path: list[int] = []
    if order:
        seq = order[-1][1]
        seen: set[int] = set()
        while seq not in seen:
            seen.add(seq)
            path.append(seq)
            e = by_seq[seq]
            if e.started_at is None:
                break
            i = before(float(e.started_at))
            while i >= 0 and order[i][1] in seen:
                i -= 1
            if i < 0:
                break
            seq = order[i][1]
        path.reverse()
    on_path = set(path)
    rows = [StepRow(**{**_row_dict(r), "critical": r.seq in on_path}) for r in rows]
    path_s = sum(rows_by(rows, on_path))
    total = end - start

    top_cost = _cost_sentences(rows, cost)
    top_time = _time_sentences(rows, on_path, total)
    status = str(getattr(run.status, "value", run.status))
    summary = (
        f"Run {run.id} ({run.workflow}@{run.version}) {status} in {format_duration(total)} and cost "
        f"{_money(cost)} ({tokens_in + tokens_out:,} tokens over "
        f"{sum(1 for r in rows if r.kind == 'llm')} model calls, {hits} from cache), "
        f"with {len(rows)} steps and {retries} retries."
    )
    if top_cost:
        summary += f" Most of the cost: {top_cost[0]}"
    if top_time:
        summary += f" Most of the time: {top_time[0]}"
    notes: list[str] = []
    if any(r.retries for r in rows):
        notes.append("Only each step's last attempt is journaled; earlier attempts show as waiting time.")
    return Explanation(
        run.id,
        run.workflow,
        run.version,
        status,
        start,
        end,
        total,
        waiting,
        cost,
        tokens_in,
        tokens_out,
        retries,
        hits,
        tuple(rows),
        tuple(path),
        path_s,
        tuple(top_cost),
        tuple(top_time),
        summary,
        tuple(notes),
        agent_tree(entries),
    )


def _row_dict(r: StepRow) -> dict[str, Any]:
    return {f: getattr(r, f) for f in StepRow.__slots__}  # type: ignore[attr-defined]


def rows_by(rows: Sequence[StepRow], seqs: set[int]) -> list[float]:
    return [
        r.latency_s + r.wait_s - (r.latency_s if r.kind in _WAIT_KINDS else 0.0)
        for r in rows
        if r.seq in seqs
    ]


def _label(r: StepRow) -> str:
    if r.kind == "llm":
        return f"model calls '{r.name}'" + (f" on {r.model}" if r.model else "")
    if r.kind == "tool":
        return f"tool '{r.name}'"
    if r.kind == "review":
        return f"waiting for human review '{r.name}'"
    if r.kind == "sleep":
        return "durable sleeps"
    if r.kind == "signal":
        return f"waiting for signal '{r.name.removeprefix('signal:')}'"
    if r.kind == "compensation":
        return f"compensation '{r.name}'"
    return f"step '{r.name}'"


def _cost_sentences(rows: Sequence[StepRow], total: float, top: int = 3) -> list[str]:
    if total <= 0:
        return (
            ["The run made no paid model calls."]
            if not any(r.kind == "llm" for r in rows)
            else ["Its model calls cost nothing (cached or a free/local model)."]
        )
    groups: dict[str, list[StepRow]] = {}
    for r in rows:
        if r.kind == "llm" and r.status == "completed" and r.cost_usd > 0:
            groups.setdefault(_label(r), []).append(r)
    ranked = sorted(groups.items(), key=lambda kv: -sum(r.cost_usd for r in kv[1]))
    out = []
    for label, rs in ranked[:top]:
        c = sum(r.cost_usd for r in rs)
        toks = sum(r.tokens_in + r.tokens_out for r in rs)
        tin = sum(r.tokens_in for r in rs)
        sentence = (
            f"{label} cost {_money(c)} ({_pct(c, total)} of {_money(total)}) over {len(rs)} "
            f"call{'s' if len(rs) != 1 else ''} and {toks:,} tokens ({_pct(tin, toks)} input)."
        )
        retried = sum(r.retries for r in rs)
        if retried:
            sentence = sentence[:-1] + f"; {retried} retr{'ies' if retried != 1 else 'y'} preceded them."
        out.append(sentence[0].upper() + sentence[1:])
    return out


def _time_sentences(rows: Sequence[StepRow], on_path: set[int], total: float, top: int = 3) -> list[str]:
    if total <= 0:
        return []
    groups: dict[str, float] = {}
    counts: dict[str, int] = {}
    gap = 0.0
    for r in rows:
        if r.seq not in on_path:
            continue
        label = _label(r)
        groups[label] = groups.get(label, 0.0) + r.latency_s
        counts[label] = counts.get(label, 0) + 1
        gap += r.wait_s - (r.latency_s if r.kind in _WAIT_KINDS else 0.0)
    if gap > 0:
        groups["queueing, retry backoff and resumes between steps"] = gap
    ranked = sorted(groups.items(), key=lambda kv: -kv[1])
    out = []
    for label, secs in ranked[:top]:
        if secs <= 0:
            continue
        n = counts.get(label)
        times = f" over {n} step{'s' if n != 1 else ''}" if n and n > 1 else ""
        sentence = (
            f"{label} took {format_duration(secs)}{times} ({_pct(secs, total)} of {format_duration(total)})."
        )
        out.append(sentence[0].upper() + sentence[1:])
    return out


def explanation_json(expl: Explanation) -> str:
    """``expl.to_dict()`` as compact JSON."""
    return json.dumps(expl.to_dict(), separators=(",", ":"))
