"""Calling a tool from a workflow: allowlist, argument validation, breaker, isolation."""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stalwart.engine._breaker import BreakerPolicy, BreakerState, breaker_allow, breaker_failure, breaker_success
from stalwart.engine._definitions import ToolDef
from stalwart.engine._serde import decode
from stalwart.errors import CircuitOpen, StalwartError, ToolError, ToolTimeout, UnauthorizedToolCall, error_from_dict

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
    return new


async def _breaker_record(ex: RunExecution, tool: ToolDef, state: BreakerState, ok: bool) -> None:
    policy: BreakerPolicy = ex.app.breaker_policy
    new = breaker_success(state, ex.now()) if ok else breaker_failure(state, ex.now(), policy)
    if new != state:
        await ex.store.set_flag(f"breaker:tool:{tool.name}", new.to_dict(), ex.now())


async def _in_process(tool: ToolDef, kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(tool.fn):
        return await asyncio.wait_for(tool.fn(**kwargs), tool.timeout_s)
    # A thread cannot be killed: on timeout the call is abandoned and reported as a timeout.
    return await asyncio.wait_for(asyncio.to_thread(tool.fn, **kwargs), tool.timeout_s)


async def call_tool(ex: RunExecution, tool: ToolDef, kwargs: dict[str, Any]) -> Any:
    """Invoke ``tool`` as a durable step of the run (see ``Context.tool``)."""

    async def body(seq: int, attempt: int) -> tuple[Any, dict[str, Any]]:
        meta: dict[str, Any] = {
            "mutating": tool.mutating,
            "compensate": tool.compensate is not None,
            "sandbox": tool.sandbox,
            "attempt": attempt,
        }
        if ex.wdef.tools.get(tool.name) is not tool:
            err = UnauthorizedToolCall(
                f"tool {tool.name!r} is not in the tools of workflow {ex.wdef.key}", retryable=False
            )
            ex.app._count_unauthorized(tool.name)
            raise err
        args = tool.validate_args(kwargs)
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
        state = await _breaker_check(ex, tool)
        started = ex.app.clock.monotonic()
        try:
            if tool.sandbox == "none":
                value = await _in_process(tool, call_args)
            else:
                value = await ex.app._run_sandboxed(ex, tool, call_args, meta)
        except StalwartError as err:
            err = err if not isinstance(err, TimeoutError) else ToolTimeout(str(err))
            if err.retryable:
                await _breaker_record(ex, tool, state, ok=False)
            meta["duration_ms"] = (ex.app.clock.monotonic() - started) * 1000
            err._stalwart_meta = meta  # type: ignore[attr-defined]
            raise
        except TimeoutError:
            await _breaker_record(ex, tool, state, ok=False)
            err = ToolTimeout(f"tool {tool.name!r} did not return within {tool.timeout_s}s")
            err._stalwart_meta = meta  # type: ignore[attr-defined]
            raise err from None
        except Exception as exc:
            await _breaker_record(ex, tool, state, ok=False)
            err2 = ToolError(f"tool {tool.name!r} raised {type(exc).__name__}: {exc}")
            err2.__cause__ = exc
            err2._stalwart_meta = meta  # type: ignore[attr-defined]
            raise err2 from exc
        await _breaker_record(ex, tool, state, ok=True)
        meta["duration_ms"] = (ex.app.clock.monotonic() - started) * 1000
        ex.guard().scan_json(value, "tool", f"the output of tool {tool.name!r}", meta)
        return value, meta

    return await ex.durable("tool", tool.name, body, retry=tool.retry, rtype=tool.return_type)


def outcome_value(outcome: Any, tool: ToolDef) -> Any:
    """Turn a sandbox ``ToolOutcome`` into the tool's value, or raise its error."""
    if not outcome.ok:
        err = error_from_dict(outcome.error or {"type": "ToolError", "message": "tool failed", "retryable": True})
        raise err
    return decode(outcome.result_json, tool.return_type)
