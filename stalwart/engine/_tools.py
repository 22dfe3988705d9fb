"""Calling a tool from a workflow: allowlist, argument validation, breaker, isolation."""

from __future__ import annotations

import asyncio
import inspect
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stalwart.engine._breaker import BreakerPolicy, BreakerState, breaker_allow, breaker_failure, breaker_success
from stalwart.engine._definitions import ToolDef
from stalwart.engine._serde import decode, encode
from stalwart.errors import (
    CircuitOpen,
    StaleData,
    StalwartError,
    ToolError,
    ToolTimeout,
    UnauthorizedToolCall,
    error_from_dict,
)

if TYPE_CHECKING:
    from stalwart.engine._execution import RunExecution

__all__ = ["call_tool", "code_root_of"]


def code_root_of(fn: Any) -> str:
    """The sys.path entry from which ``fn``'s module is importable (bound read-only in the sandbox)."""
    module = sys.modules[fn.__module__]
    path = Path(inspect.getfile(module)).resolve()
    depth = fn.__module__.count(".") + (1 if path.name == "__init__.py" else 0)
    root = path.parent
    for _ in range(depth):
        root = root.parent
    return str(root)


async def _breaker_check(ex: RunExecution, tool: ToolDef) -> BreakerState:
    key = f"breaker:tool:{tool.name}"
    state = BreakerState.from_dict(await ex.store.get_flag(key))
    allowed, new, retry_after = breaker_allow(state, ex.now(), ex.app.breaker_policy)
    if not allowed:
        raise CircuitOpen(
            f"circuit breaker for tool {tool.name!r} is open after {state.failures} failures",
            retry_after=retry_after,
        )
    if new != state:
        await ex.store.set_flag(key, new.to_dict(), ex.now())
        _report_breaker(ex, tool, new)
    return new


def _report_breaker(ex: RunExecution, tool: ToolDef, state: BreakerState) -> None:
    if ex.app.telemetry is not None:
        ex.app.telemetry.set_breaker_state(f"tool:{tool.name}", state.state)


async def _breaker_record(ex: RunExecution, tool: ToolDef, state: BreakerState, ok: bool) -> None:
    policy: BreakerPolicy = ex.app.breaker_policy
    new = breaker_success(state, ex.now()) if ok else breaker_failure(state, ex.now(), policy)
    if new != state:
        await ex.store.set_flag(f"breaker:tool:{tool.name}", new.to_dict(), ex.now())
        _report_breaker(ex, tool, new)


async def _in_process(tool: ToolDef, kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(tool.fn):
        return await asyncio.wait_for(tool.fn(**kwargs), tool.timeout_s)
    # A thread cannot be killed: on timeout the call is abandoned and reported as a timeout.
    return await asyncio.wait_for(asyncio.to_thread(tool.fn, **kwargs), tool.timeout_s)


async def _invoke(ex: RunExecution, tool: ToolDef, call_args: dict[str, Any], meta: dict[str, Any]) -> Any:
    """One invocation of one tool behind its breaker; errors are classified and feed the breaker."""
    state = await _breaker_check(ex, tool)
    started = ex.app.clock.monotonic()
    try:
        if tool.http is not None:
            from stalwart.engine._http_tools import call_http_tool

            value = await call_http_tool(ex, tool, dict(call_args), meta)
        elif tool.mcp is not None:
            from stalwart.engine._mcp import call_mcp_tool

            value = await call_mcp_tool(ex, tool, dict(call_args), meta)
        elif tool.sandbox == "none":
            value = await _in_process(tool, call_args)
        else:
            value = await ex.app._run_sandboxed(ex, tool, call_args, meta)
    except StalwartError as err:
        if err.retryable:
            await _breaker_record(ex, tool, state, ok=False)
        raise
    except TimeoutError:
        await _breaker_record(ex, tool, state, ok=False)
        raise ToolTimeout(
            f"tool {tool.name!r} did not return within {tool.timeout_s}s",
            retryable=tool.retry_on_timeout is not False,
            details={"limit": "timeout", "timeout_s": tool.timeout_s},
        ) from None
    except Exception as exc:
        await _breaker_record(ex, tool, state, ok=False)
        err2 = ToolError(f"tool {tool.name!r} raised {type(exc).__name__}: {exc}")
        err2.__cause__ = exc
        raise err2 from exc
    finally:
        meta["duration_ms"] = round((ex.app.clock.monotonic() - started) * 1000, 3)
    await _breaker_record(ex, tool, state, ok=True)
    return value


def _as_of(value: Any) -> float | None:
    raw = value.get("as_of") if isinstance(value, dict) else getattr(value, "as_of", None)
    if raw is None:
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, datetime):
        return raw.timestamp()
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def check_fresh(tool: ToolDef, value: Any, now: float, max_staleness_s: float) -> float:
    """Raise :class:`StaleData` unless ``value`` carries an ``as_of`` within ``max_staleness_s``."""
    as_of = _as_of(value)
    if as_of is None:
        raise StaleData(f"tool {tool.name!r} declares max_staleness_s but returned no usable as_of",
                        retryable=False)
    age = now - as_of
    if age > max_staleness_s:
        raise StaleData(f"tool {tool.name!r} returned data {age:.0f}s old (allowed {max_staleness_s:.0f}s)",
                        details={"age_s": round(age, 3), "max_staleness_s": max_staleness_s})
    return age


async def call_tool(
    ex: RunExecution, tool: ToolDef, kwargs: dict[str, Any], *, seq: int | None = None,
    validated: dict[str, Any] | None = None, note: dict[str, Any] | None = None,
) -> Any:
    """Invoke ``tool`` as a durable step of the run (see ``Context.tool``); ``note`` is added to
    the step's meta (an agent's turn and call id).

    A tool with ``max_staleness_s`` must return an ``as_of``; stale data raises ``StaleData``
    (retryable). A tool with a ``fallback`` falls back to it, in the same step, when it fails or
    its data is stale; the fallback's use is recorded, and a fallback whose own data is stale is
    never used: the step fails for good instead (no silent cascade of stale inputs).
    """

    async def body(seq: int, attempt: int) -> tuple[Any, dict[str, Any]]:
        meta: dict[str, Any] = {
            "mutating": tool.mutating,
            "compensate": tool.compensate is not None,
            "sandbox": tool.sandbox,
            "attempt": attempt,
            **(note or {}),
        }
        if not ex.wdef.allows(tool):
            ex.app._count_unauthorized(tool.name)
            raise UnauthorizedToolCall(
                f"tool {tool.name!r} is not in the tools of workflow {ex.wdef.key}", retryable=False
            )
        args = validated if validated is not None else tool.validate_args(kwargs)
        meta["args"] = args
        call_args = dict(args)
        if tool.takes_idempotency_key:
            call_args["idempotency_key"] = f"{ex.run.id}:{seq}"
            meta["idempotency_key"] = call_args["idempotency_key"]
        if tool.pii_fields:
            vault = await ex.app.vault(required=True)
            for field_name in tool.pii_fields:
                if field_name in call_args:
                    call_args[field_name] = await vault.rehydrate_args(
                        call_args[field_name], ex.run.org or "default", scope=ex.run.id)
        try:
            value = await _invoke(ex, tool, call_args, meta)
            if tool.max_staleness_s is not None:
                meta["age_s"] = round(check_fresh(tool, value, ex.now(), tool.max_staleness_s), 3)
        except StalwartError as err:
            if tool.fallback is None:
                err._stalwart_meta = meta  # type: ignore[attr-defined]
                raise
            value = await _fall_back(ex, tool, args, seq, meta, err)
        await ex.guard().scan_json(value, "tool", f"the output of tool {tool.name!r}", meta)
        if ex.guard().pii_on:  # the audit entry redacts the arguments: have the redactor ready, off-loop
            await ex.app.guard_ready(pii=True)
        limit = ex.app.artifact_inline_limit
        if limit is not None and len(encode(value)) > limit:  # large results live outside the database
            arts = await ex.app.artifacts()
            value = await arts.externalize(ex.run.org or "default", value, limit=limit, run_id=ex.run.id,
                                           subject=ex.run.user or None)
            meta["artifact"] = {"sha256": value.get("sha256"), "size": value.get("size")}
        return value, meta

    from stalwart.store import is_artifact_ref

    recorded = await ex.durable("tool", tool.name, body, retry=tool.retry, seq=seq)
    if is_artifact_ref(recorded):
        from stalwart.engine._taint import observe

        recorded = await (await ex.app.artifacts()).internalize(recorded)
        observe(ex, seq if seq is not None else ex.seq - 1, "tool", tool.name, recorded)  # untrusted, like any result
    return decode(encode(recorded), tool.return_type) if tool.return_type is not None else recorded


async def _fall_back(
    ex: RunExecution, tool: ToolDef, args: dict[str, Any], seq: int, meta: dict[str, Any], cause: StalwartError
) -> Any:
    fb = tool.fallback
    assert fb is not None
    fb_meta: dict[str, Any] = {}
    record: dict[str, Any] = {"tool": fb.name, "because": f"{cause.code}: {cause.message}"}
    meta["fallback"] = record
    fb_args = {k: v for k, v in args.items() if k in fb.arg_names()}
    if fb.takes_idempotency_key:
        fb_args["idempotency_key"] = f"{ex.run.id}:{seq}:fallback"
    try:
        value = await _invoke(ex, fb, fb_args, fb_meta)
        limit = fb.max_staleness_s if fb.max_staleness_s is not None else tool.max_staleness_s
        if limit is not None:
            record["age_s"] = round(check_fresh(fb, value, ex.now(), limit), 3)
    except StalwartError as err:
        record["outcome"] = f"{err.code}: {err.message}"
        final = StaleData if isinstance(err, StaleData) else type(err)
        failure = final(
            f"tool {tool.name!r} failed ({cause.message}) and its fallback {fb.name!r} failed too ({err.message})",
            retryable=err.retryable and not isinstance(err, StaleData),
        )
        failure._stalwart_meta = meta  # type: ignore[attr-defined]
        raise failure from None
    record["outcome"] = "used"
    meta["fallback_duration_ms"] = fb_meta.get("duration_ms")
    return value


def outcome_value(outcome: Any, tool: ToolDef) -> Any:
    """Turn a sandbox ``ToolOutcome`` into the tool's value, or raise its error."""
    if not outcome.ok:
        err = error_from_dict(outcome.error or {"type": "ToolError", "message": "tool failed", "retryable": True})
        if isinstance(err, ToolTimeout) and tool.retry_on_timeout is not None:
            err.retryable = tool.retry_on_timeout  # the tool's own choice overrides the CPU-bound default
        raise err
    return decode(outcome.result_json, tool.return_type)
