"""explain(): per-step rows, the critical path, and plain-sentence contributors."""

from __future__ import annotations

import json

from stalwart.store import JournalEntry
from stalwart.telemetry import explain, format_duration
from tests.unit.test_telemetry_spans import LLM_META, make_run


def _llm(
    seq: int,
    start: float,
    end: float,
    cost: float,
    *,
    name: str = "triage",
    model: str = "primary",
    cached: bool = False,
    attempts: int = 1,
) -> JournalEntry:
    meta = dict(
        LLM_META,
        model=model,
        cost_usd=cost,
        cached=cached,
        routing={
            "chosen": model,
            "reason": "fallback after failure",
            "skipped": [{"model": "cheap", "why": "failed: timeout"}],
        },
    )
    return JournalEntry(
        "run-1",
        seq,
        "llm",
        name,
        "completed",
        "{}",
        attempts=attempts,
        started_at=start,
        finished_at=end,
        meta=meta,
    )


def _journal() -> list[JournalEntry]:
    return [
        _llm(0, 1000.0, 1002.0, 0.40),
        JournalEntry(
            "run-1",
            1,
            "tool",
            "lookup_order",
            "completed",
            "{}",
            attempts=3,
            started_at=1010.0,
            finished_at=1011.0,
            meta={"sandbox": "process", "duration_ms": 900.0},
        ),
        # seq 2 and 3 run in parallel; 3 finishes later and gates the review
        _llm(2, 1011.0, 1013.0, 3.50, name="draft", model="big"),
        _llm(3, 1011.0, 1020.0, 0.37, name="check", cached=True),
        JournalEntry(
            "run-1",
            4,
            "review",
            "refund over limit",
            "completed",
            "{}",
            started_at=1020.0,
            finished_at=1170.0,
        ),
        JournalEntry(
            "run-1",
            5,
            "tool",
            "issue_refund",
            "failed",
            None,
            started_at=1170.0,
            finished_at=1180.0,
            error={"type": "ToolError", "message": "card declined"},
            meta={"sandbox": "none"},
        ),
    ]


def test_rows_hold_latency_wait_tokens_cost_retries_cache_routing_outcome() -> None:
    e = explain(make_run(status="FAILED", finished_at=1180.0), _journal())
    r = {row.seq: row for row in e.rows}
    assert r[0].latency_s == 2.0 and r[0].tokens_in == 1200 and r[0].cost_usd == 0.40
    assert r[0].cached is False and r[3].cached is True and r[1].cached is None
    assert "big" in r[2].routing and "fallback" in r[2].routing and "cheap" in r[2].routing
    assert r[1].retries == 2 and r[1].wait_s == 8.0  # idle since step 0 ended: backoff of earlier attempts
    assert r[1].outcome.startswith("ok") and "process" in r[1].outcome
    assert r[5].outcome.startswith("failed: ToolError") and "card declined" in r[5].outcome
    assert r[4].wait_s == 150.0 and r[4].latency_s == 150.0
    assert e.total_s == 180.0 and e.retries == 2 and e.cache_hits == 1
    assert round(e.cost_usd, 2) == 4.27 and e.tokens_in == 3 * 1200


def test_critical_path_skips_the_parallel_branch_that_finished_first() -> None:
    e = explain(make_run(status="FAILED", finished_at=1180.0), _journal())
    assert e.critical_path == (0, 1, 3, 4, 5)
    assert {row.seq for row in e.rows if row.critical} == {0, 1, 3, 4, 5}


def test_contributors_answer_the_question_in_sentences() -> None:
    e = explain(make_run(status="FAILED", finished_at=1180.0), _journal())
    assert e.top_cost[0].startswith("Model calls 'draft' on big cost $3.50 (82% of $4.27)")
    assert e.top_time[0].startswith("Waiting for human review 'refund over limit' took 2m30s (83% of 3m00s)")
    assert "$4.27" in e.summary and "3m00s" in e.summary and "FAILED" in e.summary


def test_to_dict_is_json_and_renderers_work() -> None:
    e = explain(make_run(status="FAILED", finished_at=1180.0), _journal())
    d = json.loads(json.dumps(e.to_dict()))
    assert d["critical_path"] == [0, 1, 3, 4, 5] and len(d["rows"]) == 6
    text = e.to_text()
    assert "refund over limit" in text and "*4" in text and "Critical path: 5 of 6 steps" in text
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(e)
    assert "issue_refund" in console.export_text()


def test_empty_and_waiting_runs() -> None:
    e = explain(make_run(), [])
    assert e.rows == () and e.critical_path == () and e.total_s == 0.0
    w = explain(
        make_run(status="WAITING"),
        [JournalEntry("run-1", 0, "review", "approve", "waiting", started_at=1001.0)],
    )
    assert w.rows[0].outcome == "waiting" and w.rows[0].latency_s == 0.0


def test_long_runs_text_keeps_the_important_rows() -> None:
    journal = [_llm(i, 1000.0 + i, 1000.5 + i, 0.001) for i in range(1000)]
    e = explain(make_run(status="COMPLETED"), journal)
    assert len(e.rows) == 1000 and len(e.critical_path) == 1000
    assert "not shown" not in e.to_text(max_rows=2000)


def test_format_duration() -> None:
    assert [format_duration(x) for x in (0.042, 5, 185, 7300)] == ["42ms", "5.0s", "3m05s", "2h01m40s"]
