"""Cost estimates before a run starts: the workflow's first prompt, its version's history, its cap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stalwart.engine._app import App

__all__ = ["estimate_cost"]

_HISTORY = 200


class _Captured(BaseException):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


class _Blocked(BaseException):
    pass


class _DryContext:
    """Runs the workflow only up to its first model call, executing nothing."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.org = self.user = ""

    async def llm(self, task: str, **kwargs: Any) -> Any:
        raise _Captured({"task": task, **kwargs})

    def __getattr__(self, name: str) -> Any:
        async def blocked(*a: Any, **k: Any) -> Any:
            raise _Blocked()

        if name in ("now", "random", "uuid", "partial"):
            return lambda *a, **k: None
        return blocked


async def estimate_cost(app: App, workflow: str, input: Any, version: str | None = None) -> Any:
    """USD and token p50/p95/max for one run of ``workflow`` on ``input`` (no provider is called)."""
    from stalwart.gateway import LLMRequest

    wdef = app.workflow_def(workflow, version)
    kwargs = wdef.validate_input(input)
    captured: dict[str, Any] | None = None
    try:
        await wdef.fn(_DryContext("estimate"), **kwargs)
    except _Captured as c:
        captured = c.kwargs
    except (_Blocked, Exception):
        captured = None
    store = await app.connect()
    history = []
    for rec in await store.list_runs(status="COMPLETED", workflow=wdef.name, limit=_HISTORY):
        if rec.version == wdef.version and "cost_usd" in rec.meta:
            history.append((int(rec.meta.get("tokens", 0)), float(rec.meta["cost_usd"])))
    gateway = await app.gateway()
    if captured is None:
        captured = {"task": "default", "messages": [{"role": "user", "content": ""}]}
    fields = {k: captured.get(k) for k in ("template", "messages", "output", "model", "max_tokens")}
    req = LLMRequest(task=captured["task"], vars=captured.get("vars") or {}, **fields)
    return gateway.estimate(req, history=history or None, budget=wdef.budget)
