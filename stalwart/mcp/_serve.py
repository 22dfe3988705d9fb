"""The MCP face of an app: each workflow (latest version) is an MCP tool.

The tool's input schema is the workflow's signature (its parameters as a JSON-schema object); a
call starts a run, keyed for idempotency by the MCP request id (a client retrying the same request
gets the same run), waits for it and returns its output (structured, and as JSON text). A run that
fails answers as a tool error naming the run. ``org`` and ``user`` are whoever the transport
authenticated: the stdio face runs as the operator's org, ``POST /mcp`` as the API key's org.

The ``app`` is duck-typed (``workflows()``, ``start``, ``result``): this module sits below the
engine and never imports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["serve_stdio", "workflow_server", "workflow_tools"]


def _latest(app: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in app.workflows():
        cur = out.get(w.name)
        if cur is None or _vkey(w.version) > _vkey(cur.version):
            out[w.name] = w
    return out


def _vkey(v: str) -> tuple[Any, ...]:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in v.replace("-", ".").split("."))


def _schema(wdef: Any) -> dict[str, Any]:
    schema = dict(wdef._input_model.model_json_schema())
    schema.pop("title", None)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def workflow_tools(app: Any) -> list[Any]:
    """The app's workflows as MCP ``Tool`` definitions (name, description, input schema)."""
    import inspect

    from mcp.types import Tool

    tools = []
    for name, w in sorted(_latest(app).items()):
        doc = (inspect.getdoc(w.fn) or f"Run the workflow {w.key}.").split("\n\n")[0]
        tools.append(Tool(name=name, description=f"{doc} (Stalwart workflow {w.key})", input_schema=_schema(w)))
    return tools


def _input_of(wdef: Any, arguments: dict[str, Any]) -> Any:
    params = wdef._params
    if len(params) == 1:  # a one-parameter workflow takes its value bare
        return arguments.get(params[0].name)
    return arguments


def workflow_server(
    app: Any, *, identity: Callable[[Any], tuple[str, str]], timeout_s: float = 300.0, progress_every_s: float = 5.0
) -> Any:
    """A low-level MCP ``Server`` exposing ``app``'s workflows; ``identity(request_context)`` gives
    the caller's (org, user) for each request (the transport's authentication decides it, never the client).

    While a run goes on, a client that asked for progress (a progress token) gets a notification
    every ``progress_every_s`` naming the run and its status; a run still going after ``timeout_s``
    answers with its id (as an error result: the output is not there yet), and goes on."""
    from mcp import types
    from mcp.server.lowlevel import Server

    async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=workflow_tools(app))

    async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        from stalwart.errors import StalwartError, WorkflowFailed

        def failed(text: str) -> types.CallToolResult:
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)

        wdef = _latest(app).get(params.name)
        if wdef is None:
            return failed(f"no workflow {params.name!r}")
        org, user = identity(ctx)
        key = f"mcp:{ctx.request_id}" if ctx.request_id is not None else None
        try:
            run_id = await app.start(params.name, _input_of(wdef, dict(params.arguments or {})),
                                     idempotency_key=key, org=org, user=user, version=wdef.version)
            await ctx.session.report_progress(0, None, f"run {run_id} started")
            waited, beat = 0.0, 0
            while True:
                step = min(progress_every_s, timeout_s - waited)
                try:
                    output = await app.result(run_id, timeout=step)
                    break
                except TimeoutError:
                    waited += step
                    if waited >= timeout_s:
                        return failed(f"run {run_id} is still going after {timeout_s:g}s; it goes on "
                                      f"(`stalwart run follow {run_id}`)")
                    beat += 1
                    info = await app.get_run(run_id)
                    await ctx.session.report_progress(beat, None, f"run {run_id} is {info.status.value}")
        except WorkflowFailed as exc:
            return failed(f"run {exc.run_id} ended {exc.status}: {(exc.error or {}).get('message', '')}")
        except StalwartError as exc:
            return failed(f"{exc.code}: {exc}")
        structured = output if isinstance(output, dict) else {"result": output}
        text = json.dumps({"run_id": run_id, "output": output}, default=str)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structured_content=structured)

    return Server("stalwart", on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_stdio(app: Any, *, org: str, user: str, progress_every_s: float = 5.0) -> None:
    """Serve ``app``'s workflows over this process's stdin/stdout until the client hangs up."""
    from mcp.server.stdio import stdio_server

    server = workflow_server(app, identity=lambda ctx: (org, user), progress_every_s=progress_every_s)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
