"""Structured JSON logs: fixed keys, trace context, stdlib loggers included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from stalwart.telemetry import (
    bind_run_context,
    bind_step_context,
    configure_logging,
    get_logger,
    log_context,
    root_span_id,
    step_span_id,
)
from tests.unit.test_telemetry_spans import TRACE, make_run

KEYS = {"timestamp", "trace_id", "span_id", "level", "event_type", "message"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    configure_logging("DEBUG", json=True, stream=buf)
    yield buf
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    return [x for x in lines if str(x.get("logger", "")).startswith("stalwart")]


def test_structlog_lines_have_the_fixed_keys_and_fields(stream: io.StringIO) -> None:
    get_logger("stalwart.test").info("run started", event_type="run.started", workflow="refund")
    [line] = _lines(stream)
    assert KEYS <= set(line)
    assert line["message"] == "run started" and line["event_type"] == "run.started"
    assert line["level"] == "info" and line["workflow"] == "refund"
    assert line["trace_id"] is None


def test_stdlib_logs_carry_the_bound_run_and_step(stream: io.StringIO) -> None:
    run = make_run()

    async def task() -> None:
        bind_run_context(run)
        logging.getLogger("stalwart.engine").warning("claimed %s", run.id)
        bind_step_context(run.id, 2, 1)
        logging.getLogger("stalwart.engine").info("step")

    asyncio.run(task())
    with log_context(run, 5, 3):
        logging.getLogger("stalwart.worker").error("inside")
    logging.getLogger("stalwart.worker").error("outside")
    a, b, c, d = _lines(stream)
    assert a["trace_id"] == TRACE and a["span_id"] == root_span_id(run.id) and a["message"] == "claimed run-1"
    assert a["event_type"] == "stalwart.engine" and a["level"] == "warning"
    assert b["span_id"] == step_span_id(run.id, 2, 1)
    assert c["span_id"] == step_span_id(run.id, 5, 3)
    assert d["trace_id"] is None  # nothing leaks out of the task or the block
    assert all(KEYS <= set(x) for x in (a, b, c, d))


def test_exceptions_are_rendered_into_the_line(stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("stalwart.x").exception("failed")
    [line] = _lines(stream)
    assert "ValueError: boom" in str(line["exception"])
