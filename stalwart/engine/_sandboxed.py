"""Handing a tool call to the isolation layer (``stalwart.sandbox``) and reading its outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stalwart.engine._definitions import ToolDef
from stalwart.engine._serde import encode
from stalwart.engine._tools import code_root_of, outcome_value

if TYPE_CHECKING:
    from stalwart.engine._app import App
    from stalwart.engine._execution import RunExecution

__all__ = ["run_sandboxed", "supply_chain_hashes"]

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


async def run_sandboxed(
    app: App, ex: RunExecution, tool: ToolDef, args: dict[str, Any], meta: dict[str, Any]
) -> Any:
    from stalwart.sandbox import BwrapSandbox, ToolInvocation

    if app._sandbox is None:
        app._sandbox = BwrapSandbox(app.settings.sandbox)  # raises SandboxUnavailable when it cannot isolate
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
