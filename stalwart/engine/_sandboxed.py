"""Handing a tool call to the isolation layer (``stalwart.sandbox``) and reading its outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stalwart.engine._definitions import ToolDef
from stalwart.engine._serde import encode
from stalwart.engine._tools import code_root_of, outcome_value

if TYPE_CHECKING:
    from stalwart.engine._app import App
    from stalwart.engine._execution import RunExecution

__all__ = ["run_sandboxed"]


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
    if outcome.egress_log:
        meta["egress"] = outcome.egress_log
    return outcome_value(outcome, tool)
