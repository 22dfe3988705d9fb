"""``InProcessSandbox``: the same contract for trusted ``sandbox="none"`` tools, run in this process.

It isolates nothing. Choosing it is an explicit, audited opt-in on the tool's definition.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from typing import Any

from stalwart.sandbox import _runner
from stalwart.sandbox._classify import tool_error
from stalwart.sandbox._types import ToolInvocation, ToolOutcome

__all__ = ["InProcessSandbox"]


class InProcessSandbox:
    """Calls the tool function directly: async functions on the loop, sync ones in a thread.

    A sync tool that overruns its timeout is reported as ``ToolTimeout`` but its thread cannot be
    killed; only ``BwrapSandbox`` can stop a runaway tool.
    """

    async def run(self, inv: ToolInvocation) -> ToolOutcome:
        """Run one invocation; never raises for the tool's own failure."""
        started = time.perf_counter()
        ok, result_json, error = False, None, None
        try:
            if inv.code_root and inv.code_root not in sys.path:
                sys.path.append(inv.code_root)
            fn = _runner.resolve(inv.module, inv.qualname)
            kwargs = json.loads(inv.kwargs_json)
            if not isinstance(kwargs, dict):
                raise TypeError("kwargs_json must be a JSON object")
            kwargs = _runner.prepare_kwargs(fn, kwargs, inv.credential)
            value = await asyncio.wait_for(self._call(fn, kwargs, inv), inv.timeout_s)
            result = _runner.check_result(fn, value)
            result_json = json.dumps(result, allow_nan=False)
            if len(result_json) > inv.limits.max_output_bytes:
                error = tool_error(
                    f"tool result exceeds {inv.limits.max_output_bytes} bytes",
                    code="tool_output_exceeded",
                    retryable=False,
                )
                result_json = None
            else:
                ok = True
        except TimeoutError:
            error = tool_error(
                f"tool did not finish within {inv.timeout_s:g} s",
                kind="ToolTimeout",
                code="tool_timeout",
                retryable=True,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a tool's failure is data
            error = _runner.error_dict(exc)
        return ToolOutcome(
            ok=ok,
            result_json=result_json,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            egress_log=[],
            stderr_tail="",
        )

    @staticmethod
    async def _call(fn: Any, kwargs: dict[str, Any], inv: ToolInvocation) -> Any:
        from stalwart.sandbox._context import use_credential

        with use_credential(inv.credential, inv.verifier):
            if inspect.iscoroutinefunction(fn):
                return await fn(**kwargs)
            out = await asyncio.to_thread(fn, **kwargs)
            if inspect.isawaitable(out):
                out = await out
            return out
