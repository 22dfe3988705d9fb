"""Handing a tool call to the isolation layer (``stalwart.sandbox``) and reading its outcome."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from stalwart.engine._definitions import ToolDef
from stalwart.engine._serde import encode
from stalwart.engine._tools import code_root_of, outcome_value

if TYPE_CHECKING:
    from stalwart.engine._app import App
    from stalwart.engine._execution import RunExecution

__all__ = ["prewarm_sandboxes", "run_sandboxed", "supply_chain_hashes"]

_log = logging.getLogger("stalwart.worker")

_HASHES: dict[str, str] = {}


def _file_sha256(path: str) -> str:
    import hashlib

    if path not in _HASHES:
        try:
            with open(path, "rb") as fh:
                _HASHES[path] = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            _HASHES[path] = "unreadable"
    return _HASHES[path]


def supply_chain_hashes(fn: Any, sandbox: Any) -> tuple[str, str]:
    """SHA-256 of the tool's module file and of the sandbox interpreter, recorded on each call
    (computed once per process: what ran can be traced back to exact bytes)."""
    import inspect
    import os

    module_file = inspect.getsourcefile(fn) or ""
    python = getattr(getattr(sandbox, "_layout", None), "python", None) or "/usr/bin/python3.11"
    return _file_sha256(module_file), _file_sha256(os.path.realpath(python))


def _sandbox_of(app: App) -> Any:
    from stalwart.sandbox import BwrapSandbox

    if app._sandbox is None:
        app._sandbox = BwrapSandbox(app.settings.sandbox)
    return app._sandbox


async def prewarm_sandboxes(app: App, concurrency: int) -> dict[str, Any] | None:
    """Warm the pool for every sandboxed tool the app registers, before a worker claims anything.

    Waits until the pool holds what it asked for, or ``[sandbox] pool_prewarm_wait_s``, whichever
    comes first; the warm-ups left go on in the background. Never raises: a host that cannot
    sandbox, or a tool whose code cannot be bound, is logged and its calls fail as they would have
    (cold). Returns what was asked and what was ready, for logs and the demo; ``None`` when there
    was nothing to warm.
    """
    from stalwart.sandbox import ToolInvocation

    st = app.settings.sandbox
    tools = [t for t in app._tools.values() if t.sandbox == "process" and t.http is None]
    if not st.pool_prewarm or not tools:
        return None
    started = time.monotonic()
    sandbox = _sandbox_of(app)
    if not hasattr(sandbox, "prewarm"):
        return None
    invocations = [
        ToolInvocation(
            tool_name=t.name,
            module=t.fn.__module__,
            qualname=t.fn.__qualname__,
            code_root=code_root_of(t.fn),
            kwargs_json="{}",
            timeout_s=t.timeout_s,
            egress=list(t.egress),
        )
        for t in tools
    ]
    try:
        asked = await sandbox.prewarm(invocations, concurrency)
    except Exception as exc:  # noqa: BLE001 - a worker without warm sandboxes still serves (cold)
        _log.warning("sandbox pre-warm skipped: %s", exc)
        return {"asked": {}, "ready": 0, "complete": False, "seconds": 0.0, "error": str(exc)}
    complete = await sandbox.pool.wait_warm(st.pool_prewarm_wait_s) if asked else True
    lim = sandbox.pool.limits
    report = {
        "asked": asked,
        "ready": sandbox.pool.ready_count(),
        "complete": complete,
        "seconds": round(time.monotonic() - started, 3),
        "bounds": {"processes": lim.max_processes, "memory_mb": lim.max_memory_mb},
    }
    if not complete:
        _log.info("sandbox pre-warm not complete after %.1fs: %s", report["seconds"], report)
    return report


async def run_sandboxed(
    app: App, ex: RunExecution, tool: ToolDef, args: dict[str, Any], meta: dict[str, Any]
) -> Any:
    from stalwart.sandbox import ToolInvocation

    _sandbox_of(app)  # its first run raises SandboxUnavailable when the host cannot isolate
    credential = None
    verifier = None
    broker = await app.credential_broker()
    if broker is not None and tool.scopes:
        credential, jti = await broker.mint(ex.run.id, ex.run.org or "default", tool.name, list(tool.scopes))
        verifier = broker.snapshot()
        meta["credential_id"] = jti
    inv = ToolInvocation(
        tool_name=tool.name,
        module=tool.fn.__module__,
        qualname=tool.fn.__qualname__,
        code_root=code_root_of(tool.fn),
        kwargs_json=encode(args),
        timeout_s=tool.timeout_s,
        egress=list(tool.egress),
        credential=credential,
        verifier=verifier,
    )
    outcome = await app._sandbox.run(inv)
    meta["sandbox_ms"] = outcome.duration_ms
    meta["sandbox_pooled"] = bool(getattr(outcome, "pooled", False))
    meta["code_sha256"], meta["interpreter_sha256"] = supply_chain_hashes(tool.fn, app._sandbox)
    if outcome.egress_log:
        meta["egress"] = outcome.egress_log
    return outcome_value(outcome, tool)
