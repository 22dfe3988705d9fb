"""Saga compensation: undo completed mutating tool calls in reverse order, durably."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from stalwart.engine._control import Cancelled, Drain, Fenced, Suspend
from stalwart.engine._retry import RetryPolicy, next_delay
from stalwart.engine._serde import decode, encode
from stalwart.store import JournalEntry

if TYPE_CHECKING:
    from stalwart.engine._execution import RunExecution

__all__ = ["compensable_steps", "run_compensations"]

_COMPENSATION_RETRY = RetryPolicy(max_attempts=5, initial_s=0.1, max_s=5.0)


def compensable_steps(ex: RunExecution) -> list[JournalEntry]:
    """Completed tool calls of this generation that declared a compensation, in reverse order of
    completion (parallel branches finish in any order)."""
    steps = [
        e
        for e in ex.journal.values()
        if e.seq >= ex.run.seq_base
        and e.kind == "tool"
        and e.status == "completed"
        and (e.meta or {}).get("compensate")
    ]
    return sorted(steps, key=lambda e: (e.finished_at or 0.0, e.seq), reverse=True)


async def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    return await asyncio.to_thread(fn, **kwargs)


async def run_compensations(ex: RunExecution) -> list[dict[str, Any]]:
    """Run each pending compensation once to success (retried), journaling each outcome."""
    from stalwart.engine._execution import _error_record, as_stalwart_error

    done = {e.name: e for e in ex.journal.values() if e.kind == "compensation"}
    outcome: list[dict[str, Any]] = []
    for step in compensable_steps(ex):
        name = f"{step.name}:{step.seq}"
        prior = done.get(name)
        if prior is not None and prior.status in ("completed", "failed"):
            outcome.append({"tool": step.name, "seq": step.seq, "status": prior.status})
            continue
        tool = ex.wdef.tools.get(step.name) or ex.app.tool_def(step.name)
        fn = tool.compensate if tool is not None else None
        seq = prior.seq if prior is not None else max(ex.journal, default=-1) + 1
        if fn is None:
            outcome.append({"tool": step.name, "seq": step.seq, "status": "missing"})
            continue
        params = inspect.signature(fn).parameters
        args = dict((step.meta or {}).get("args") or {})
        kwargs = {k: v for k, v in args.items() if k in params}
        if "result" in params:
            kwargs["result"] = decode(step.result_json)
        if "idempotency_key" in params:
            kwargs["idempotency_key"] = f"{ex.run.id}:{seq}"
        attempts = prior.attempts if prior is not None else 0
        while True:
            attempts += 1
            started = ex.now()
            try:
                value = await _call(fn, kwargs)
                entry = JournalEntry(ex.run.id, seq, "compensation", name, "completed", encode(value),
                                     attempts=attempts, started_at=started, finished_at=ex.now(),
                                     meta={"compensates": step.seq})
            except (Suspend, Cancelled, Drain, Fenced):
                raise
            except Exception as exc:
                err = as_stalwart_error(exc)
                delay = next_delay(_COMPENSATION_RETRY, attempts, err, ex.app.jitter)
                status = "failed" if delay is None else "retrying"
                entry = JournalEntry(ex.run.id, seq, "compensation", name, status, None,
                                     error=_error_record(err), attempts=attempts, started_at=started,
                                     finished_at=ex.now() if delay is None else None,
                                     meta={"compensates": step.seq})
                await ex.commit(entry)
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
                outcome.append({"tool": step.name, "seq": step.seq, "status": "failed", "error": err.message})
                break
            await ex.commit(entry)
            outcome.append({"tool": step.name, "seq": step.seq, "status": "completed"})
            break
    return outcome
