"""Structured JSON logs (structlog), carrying the current run's trace and span ids.

``configure_logging`` routes both structlog loggers and the standard ``logging`` module (which the
engine uses) through one JSON renderer. Each line has ``timestamp``, ``level``, ``message``,
``event_type``, ``trace_id``, ``span_id`` and the structured fields given.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import IO, Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, unbind_contextvars

from stalwart.telemetry._ids import root_span_id, step_span_id, trace_id_of

__all__ = ["bind_run_context", "bind_step_context", "configure_logging", "get_logger", "log_context"]

_CONFIGURED_HANDLER: logging.Handler | None = None


def _shape(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Rename structlog's ``event`` to ``message`` and make sure every line has the fixed keys."""
    msg = event.pop("event", "")
    event["message"] = msg if isinstance(msg, str) else str(msg)
    record = event.pop("_record", None)
    event.pop("_from_structlog", None)
    if "event_type" not in event:
        name = getattr(record, "name", None) or event.get("logger") or "log"
        event["event_type"] = str(name)
    event.setdefault("trace_id", None)
    event.setdefault("span_id", None)
    return event


def configure_logging(level: str | int = "INFO", *, json: bool = True, stream: IO[str] | None = None) -> None:
    """Send every log line (structlog and stdlib ``logging``) to ``stream`` (stderr) as JSON.

    ``json=False`` renders the same fields for a terminal. Calling it again reconfigures.
    """
    global _CONFIGURED_HANDLER
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _shape,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if _CONFIGURED_HANDLER is not None:
        root.removeHandler(_CONFIGURED_HANDLER)
    root.addHandler(handler)
    root.setLevel(lvl)
    _CONFIGURED_HANDLER = handler


def get_logger(name: str = "stalwart") -> Any:
    """A structlog logger; ``log.info("message", event_type="run.started", key=value)``."""
    return structlog.stdlib.get_logger(name)


def bind_run_context(run: Any) -> None:
    """Bind the run's trace id (and its root span id) to log lines of the current task.

    Call it inside the task that executes the run: asyncio copies context per task.
    """
    bind_contextvars(trace_id=trace_id_of(run.id, run.trace_id), span_id=root_span_id(run.id), run_id=run.id)


def bind_step_context(run_id: str, seq: int, attempt: int) -> None:
    """Point ``span_id`` at the span of the step attempt now running."""
    bind_contextvars(span_id=step_span_id(run_id, seq, attempt))


def unbind_run_context() -> None:
    unbind_contextvars("trace_id", "span_id", "run_id")


@contextmanager
def log_context(run: Any, seq: int | None = None, attempt: int = 1) -> Iterator[None]:
    """``with log_context(run, seq, attempt):`` binds trace/span ids for the block only."""
    span = root_span_id(run.id) if seq is None else step_span_id(run.id, seq, attempt)
    with bound_contextvars(trace_id=trace_id_of(run.id, run.trace_id), span_id=span, run_id=run.id):
        yield
