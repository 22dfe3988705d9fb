"""Run an OpenAI Agents SDK ``agents.Agent`` durably inside a Stalwart workflow.

``await run(ctx, agent, input)`` runs the agent with ``agents.Runner.run`` and returns the SDK's
own ``RunResult``. What changes for the agent:

* its model is a :class:`StalwartModel`: every model call is one journaled ``ctx.llm``-path step
  on ``route`` (routing, budgets, guard scans, cache, the model's tool-call allowlist), whatever
  model the agent names, so a resumed or replayed run gets the recorded answers and pays for no
  model call twice;
* its function tools run as governed Stalwart tools: each must wrap a function registered with
  ``@app.tool`` (``function_tool(lookup_order)``), or be given as ``tools=[...]``, and be listed in
  the workflow's ``tools``. Each call the model asks for takes the governed path of ``ctx.tool``
  (allowlist, argument validation against the Stalwart schema, Cedar policy, risk and review,
  credentials, the sandbox unless registered ``sandbox="none"``, guard scans, audit) as its own
  journaled steps;
* tracing to OpenAI is off (Stalwart's journal and spans record the run).

The agent's input and output guardrails still run, as the SDK runs them. A refused call (bad
arguments, a policy denial) or one that fails for good is never made (or not made again) and is
answered to the model as ``{"error": ...}``; after ``max_tool_errors`` of them the run fails with
a :class:`~stalwart.errors.ToolError`. A call to a tool the agent does not have never reaches a
function: the gateway drops it, records it on the step and flags the run for review. Calls asked
for in one turn take their journal positions in the model's order when the turn's answer arrives,
so they may run concurrently and a replay still matches. An ``output_type`` that is a Pydantic
model is asked of the gateway as that model and validated again by the SDK.

Not done: handoffs to other agents, MCP servers, hosted tools (an agent with any is refused, never
run ungoverned), and ``Runner.run_streamed``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from agents import Agent, FunctionTool, ModelResponse, RunConfig, Runner, Usage
from agents.models.chatcmpl_converter import Converter
from agents.models.interface import Model
from agents.tool_context import ToolContext
from openai.types.chat import ChatCompletionMessage
from pydantic import BaseModel

from stalwart.engine import ToolDef
from stalwart.errors import (
    InjectionBlocked,
    InvalidInput,
    PolicyDenied,
    StalwartError,
    ToolError,
    UnauthorizedToolCall,
)

if TYPE_CHECKING:
    from agents.result import RunResult

    from stalwart.engine import Context

__all__ = ["StalwartModel", "run"]

_TOOL_ERRORS = (ToolError, PolicyDenied, UnauthorizedToolCall, InvalidInput, InjectionBlocked)
"""Failures of one call the model is told about (as for ``ctx.agent``)."""


class StalwartModel(Model):
    """An Agents SDK model whose every call is a journaled Stalwart gateway step.

    Made by :func:`run`, which also supplies the governed tools; a call that offers the model a
    tool that is not one of them is refused, so no tool can run outside Stalwart's governance.
    """

    def __init__(self, ctx: Context, tools: dict[str, ToolDef], *, route: str = "default",
                 model: str | None = None, output: type[BaseModel] | None = None, max_tool_errors: int = 3) -> None:
        self._ctx = ctx
        self._max_tool_errors = max_tool_errors
        self.tool_errors = 0
        """Refused or failed tool calls so far in this run."""
        self._tools = dict(tools)
        self._route = route
        self._model = model
        self._output = output
        self._turn = 0
        self._ids: set[str] = set()
        self.reserved: dict[str, list[int]] = {}
        """Journal positions taken for each tool call of the latest turn, by call id."""

    async def get_response(self, system_instructions: str | None, input: Any, model_settings: Any,
                           tools: list[Any], output_schema: Any, handoffs: list[Any], tracing: Any,
                           *, previous_response_id: str | None = None, conversation_id: str | None = None,
                           prompt: Any = None) -> ModelResponse:
        if handoffs:
            raise ValueError("stalwart.integrations.openai_agents: handoffs are not supported")
        offered = [t.name for t in tools]
        ungoverned = sorted(set(offered) - set(self._tools))
        if ungoverned:
            raise UnauthorizedToolCall(f"the agent offers tools that are not governed Stalwart tools: {ungoverned}",
                                       retryable=False)
        messages: list[dict[str, Any]] = []
        if system_instructions:
            messages.append({"role": "system", "content": system_instructions})
        messages.extend(_plain(m) for m in Converter.items_to_messages(input))
        structured = None
        if output_schema is not None and not output_schema.is_plain_text():
            structured = self._output
        while True:
            self._turn += 1
            data = await self._ctx._llm_step(
                self._route, messages=messages, output=structured, model=self._model,
                temperature=getattr(model_settings, "temperature", None), tools=[self._tools[n] for n in offered],
                allowed={n: self._tools[n] for n in offered} or None, note={"openai_agents": {"turn": self._turn}})
            calls = [self._named(i, c) for i, c in enumerate(data.get("tool_calls") or [])]
            blocked = [self._named(len(calls) + i, c) for i, c in enumerate(data.get("blocked_tool_calls") or [])]
            if calls or not blocked:
                break
            # only calls the agent may not make: never made; the model is told, and asked again
            messages.append({"role": "assistant", "content": None, "tool_calls": blocked})
            for b, why in zip(blocked, data.get("blocked_tool_calls") or [], strict=True):
                reason = f"{why.get('code')}: {why.get('reason')}"
                self.count_error(reason)
                messages.append({"role": "tool", "tool_call_id": b["id"], "content": json.dumps({"error": reason})})
        self.reserved = {c["id"]: self._ctx._ex.reserve(4) for c in calls}  # model's order: replay-stable
        tool_calls = calls
        text = str(data.get("text") or "")
        if not calls and structured is not None and data.get("value") is not None:
            text = json.dumps(data["value"])
        message = ChatCompletionMessage.model_validate(
            {"role": "assistant", "content": text or None, "tool_calls": tool_calls or None})
        tokens_in, tokens_out = int(data.get("tokens_in") or 0), int(data.get("tokens_out") or 0)
        return ModelResponse(output=Converter.message_to_output_items(message),
                             usage=Usage(requests=1, input_tokens=tokens_in, output_tokens=tokens_out,
                                         total_tokens=tokens_in + tokens_out),
                             response_id=None)

    def _named(self, i: int, call: dict[str, Any]) -> dict[str, Any]:
        """A call as a chat tool call with an id unique in the run (scripted models repeat them)."""
        cid = str(call.get("id") or "")
        if not cid or cid in self._ids:
            cid = f"{cid or 'call'}_{self._turn}_{i}"
        self._ids.add(cid)
        return {"id": cid, "type": "function", "function": {
            "name": str(call.get("name") or call.get("tool")),
            "arguments": json.dumps(call.get("arguments") or call.get("args") or {}, sort_keys=True)}}

    def count_error(self, reason: str) -> None:
        """Count a refused or failed call; at ``max_tool_errors`` the run ends, saying why."""
        self.tool_errors += 1
        if self.tool_errors >= self._max_tool_errors:
            raise ToolError(f"the agent stopped after {self.tool_errors} refused or failed tool calls (the last: "
                            f"{reason})", retryable=False)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("stalwart.integrations.openai_agents: Runner.run_streamed is not supported")


def _plain(message: Any) -> dict[str, Any]:
    """A chat message with its content as text (the gateway's messages carry strings)."""
    m = dict(message)
    content = m.get("content")
    if isinstance(content, list):
        m["content"] = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return m


def _governed(ctx: Context, agent: Agent[Any], tools: Sequence[Any]) -> dict[str, ToolDef]:
    if agent.handoffs or agent.mcp_servers:
        raise UnauthorizedToolCall("the agent has handoffs or MCP servers; only function tools registered with "
                                   "@app.tool can run governed", retryable=False)
    found: dict[str, ToolDef] = {}
    for t in tools:
        tdef = ctx._ex.app.tool_for(t)
        if not isinstance(tdef, ToolDef):
            raise UnauthorizedToolCall(f"{t!r} is not a Stalwart tool: register it with @app.tool", retryable=False)
        found[tdef.name] = tdef
    for tool in agent.tools:
        if not isinstance(tool, FunctionTool):
            raise UnauthorizedToolCall(f"the agent's tool {getattr(tool, 'name', tool)!r} is not a function tool; "
                                       "only function tools can run as governed Stalwart tools", retryable=False)
        tdef = ctx._ex.app.tool_for(getattr(tool, "__wrapped__", None))
        if not isinstance(tdef, ToolDef):
            tdef = found.get(tool.name)
        if not isinstance(tdef, ToolDef):
            raise UnauthorizedToolCall(f"the agent's tool {tool.name!r} is not a Stalwart tool: register its function "
                                       "with @app.tool and list it in the workflow's tools", retryable=False)
        found[tdef.name] = tdef
    return found


async def run(ctx: Context, agent: Agent[Any], input: Any, *, tools: Sequence[Any] = (), route: str = "default",
              model: str | None = None, max_turns: int = 10, max_tool_errors: int = 3,
              **kwargs: Any) -> RunResult:
    """Run ``agent`` on ``input`` inside the workflow of ``ctx``; return the SDK's ``RunResult``.

    ``tools`` adds Stalwart tools to the agent for this run; ``route`` and ``model`` choose the
    gateway route and model entry, as for ``ctx.llm``; ``max_turns`` is the SDK's bound. Other
    keyword arguments (``context``, ``hooks``, ...) go to ``Runner.run``.
    """
    if not isinstance(max_tool_errors, int) or isinstance(max_tool_errors, bool) or max_tool_errors < 1:
        raise ValueError(f"max_tool_errors must be an integer of 1 or more, not {max_tool_errors!r}")
    if "run_config" in kwargs:
        raise ValueError("run() sets the run configuration itself (the model is Stalwart's, tracing is off)")
    governed = _governed(ctx, agent, tools)
    out = agent.output_type
    output = out if isinstance(out, type) and issubclass(out, BaseModel) else None
    stalwart_model = StalwartModel(ctx, governed, route=route, model=model, output=output,
                                   max_tool_errors=max_tool_errors)

    def as_tool(tdef: ToolDef) -> FunctionTool:
        async def call(tc: ToolContext[Any], arguments: str) -> str:
            seqs = stalwart_model.reserved.pop(str(tc.tool_call_id), None) or ctx._ex.reserve(4)
            failed: StalwartError
            try:
                args = json.loads(arguments or "{}")
                if not isinstance(args, dict):
                    raise InvalidInput(f"the arguments of {tdef.name} must be a JSON object")
                value = await ctx._governed_tool(tdef, args, seqs, {"openai_agents": {"call": tc.tool_call_id}})
            except json.JSONDecodeError as err:
                value, failed = None, InvalidInput(f"the arguments of {tdef.name} are not JSON: {err}")
            except _TOOL_ERRORS as err:
                value, failed = None, err
            else:
                return json.dumps(value, default=str)
            try:
                stalwart_model.count_error(f"{failed.code}: {failed.message}")
            except ToolError as stop:
                raise stop from failed
            return json.dumps({"error": f"{failed.code}: {failed.message}"})

        return FunctionTool(name=tdef.name, description=tdef.description, params_json_schema=tdef.json_schema(),
                            on_invoke_tool=call, strict_json_schema=False)

    governed_agent = agent.clone(tools=[as_tool(t) for t in governed.values()], model=stalwart_model)
    return await Runner.run(governed_agent, input, max_turns=max_turns,
                            run_config=RunConfig(tracing_disabled=True), **kwargs)
