"""Run a ``pydantic_ai.Agent`` durably inside a Stalwart workflow.

``await run(ctx, agent, prompt)`` runs the agent to its answer and returns Pydantic AI's own
``AgentRunResult``. Two things change for the agent, nothing else:

* its model is a :class:`StalwartModel`: every request is one journaled ``ctx.llm`` step on
  ``route`` (routing, budgets, guard scans, cache, the model's tool-call allowlist), so a resumed
  or replayed run gets the recorded answers and pays for no model call twice;
* its function tools must be Stalwart tools (functions registered with ``@app.tool`` and listed in
  the workflow's ``tools=[...]``), and each call the model asks for takes the governed path of
  ``ctx.tool``: allowlist, argument validation, Cedar policy, risk and review, credentials, the
  sandbox (unless the tool was registered ``sandbox="none"``), guard scans and audit, as its own
  journaled steps. The tool's JSON schema comes from its Stalwart registration.

A call that is refused (bad arguments, a policy denial) or fails for good is never made (or not
made again) and is answered to the model as ``{"error": ...}``; after ``max_tool_errors`` of them
the run fails with a :class:`~stalwart.errors.ToolError` saying so. A call to a tool the agent
does not have never reaches any function: the gateway drops it, records it on the step and
flags the run for review; Pydantic AI then tells the model the tool does not exist.

Calls asked for in one model turn may run concurrently: their sequence numbers are taken in the
model's order when the turn's answer arrives, so a replay matches the journal whatever order they
finished in. Structured output (an ``output_type`` that is a Pydantic model) is requested from the
gateway as that model (schema-constrained where the provider supports it, validated by the
gateway) and validated again by Pydantic AI as usual.

Example (the ``local`` provider plays the model here, scripted: it asks for ``lookup_order``,
then answers)::

    agent = Agent(instructions="Answer questions about orders.", output_type=Reply, tools=[lookup_order])

    @app.workflow(name="orders", version="1", tools=[lookup_order])
    async def orders(ctx: sw.Context, question: str) -> Reply:
        result = await stalwart.integrations.pydantic_ai.run(ctx, agent, question)
        return result.output

Not done: MCP and other toolsets of the agent (only its function tools are accepted; an agent
with another toolset is refused, never run ungoverned), streaming (``run_stream``), and tools
that take Pydantic AI's ``RunContext`` (a Stalwart tool takes only its own arguments).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext, Tool
from pydantic_ai.usage import RequestUsage

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
    from pydantic_ai.run import AgentRunResult

    from stalwart.engine import Context

__all__ = ["StalwartModel", "run"]

_TOOL_ERRORS = (ToolError, PolicyDenied, UnauthorizedToolCall, InvalidInput, InjectionBlocked)
"""Failures of one call that the model is told about (as for ``ctx.agent``); any other error (a
rejected review, a budget, a missing sandbox) ends the run as it would for ``ctx.tool``."""


class StalwartModel(Model):
    """A Pydantic AI model whose every request is a journaled Stalwart gateway step.

    Made by :func:`run`, which also supplies the governed tools; a request that offers the model
    a tool that is not one of them is refused, so no tool can run outside Stalwart's governance.
    """

    def __init__(self, ctx: Context, tools: dict[str, ToolDef], *, route: str = "default",
                 model: str | None = None, output: type[BaseModel] | None = None,
                 temperature: float | None = None) -> None:
        super().__init__(profile=ModelProfile(supports_tools=True, supports_json_schema_output=True,
                                              default_structured_output_mode="native"))
        self._ctx = ctx
        self._tools = dict(tools)
        self._route = route
        self._model = model
        self._output = output
        self._temperature = temperature
        self._turn = 0
        self._ids: set[str] = set()
        self.reserved: dict[str, list[int]] = {}
        """Journal positions taken for each tool call of the latest turn, by tool call id."""

    @property
    def model_name(self) -> str:
        return f"stalwart:{self._model or self._route}"

    @property
    def system(self) -> str:
        return "stalwart"

    async def request(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                      model_request_parameters: ModelRequestParameters) -> ModelResponse:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        if params.output_mode == "tool":
            raise ValueError("stalwart.integrations.pydantic_ai: output tools are not supported; give the agent "
                             "a plain output type (it is asked for natively) or PromptedOutput")
        offered = [t.name for t in params.function_tools]
        ungoverned = sorted(set(offered) - set(self._tools))
        if ungoverned:
            raise UnauthorizedToolCall(f"the agent offers tools that are not governed Stalwart tools: {ungoverned}",
                                       retryable=False)
        structured = self._output if params.output_object is not None else None
        temperature = (model_settings or {}).get("temperature", self._temperature)
        self._turn += 1
        data = await self._ctx._llm_step(
            self._route, messages=_to_messages(messages), output=structured, model=self._model,
            temperature=temperature, tools=[self._tools[n] for n in offered],
            allowed={n: self._tools[n] for n in offered} or None, note={"pydantic_ai": {"turn": self._turn}})
        parts: list[Any] = []
        calls = [*(data.get("tool_calls") or []), *(data.get("blocked_tool_calls") or [])]
        kept = len(data.get("tool_calls") or [])
        self.reserved = {}
        for i, c in enumerate(calls):
            cid = str(c.get("id") or "")
            if not cid or cid in self._ids:
                cid = f"{cid or 'call'}_{self._turn}_{i}"
            self._ids.add(cid)
            if i < kept:  # in the model's order, before any call starts: replay-stable
                self.reserved[cid] = self._ctx._ex.reserve(4)
            parts.append(ToolCallPart(str(c.get("name")), dict(c.get("arguments") or c.get("args") or {}),
                                      tool_call_id=cid))
        if not calls:
            value = data.get("value")
            text = json.dumps(value) if structured is not None and value is not None else str(data.get("text") or "")
            parts.insert(0, TextPart(text))
        elif data.get("text"):
            parts.insert(0, TextPart(str(data["text"])))
        return ModelResponse(parts=parts, usage=RequestUsage(input_tokens=int(data.get("tokens_in") or 0),
                                                             output_tokens=int(data.get("tokens_out") or 0)),
                             model_name=str(data.get("model") or self.model_name))


def _to_messages(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    """Pydantic AI's history as the gateway's chat messages (OpenAI-style dictionaries)."""
    out: list[dict[str, Any]] = []
    instructions = next((m.instructions for m in reversed(messages)
                         if isinstance(m, ModelRequest) and getattr(m, "instructions", None)), None)
    if instructions:
        out.append({"role": "system", "content": instructions})
    for m in messages:
        if isinstance(m, ModelRequest):
            for p in m.parts:
                if isinstance(p, SystemPromptPart):
                    out.append({"role": "system", "content": p.content})
                elif isinstance(p, UserPromptPart):
                    out.append({"role": "user", "content": _text(p.content)})
                elif isinstance(p, ToolReturnPart):
                    out.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": p.model_response_str()})
                elif isinstance(p, RetryPromptPart):
                    if p.tool_name is None:
                        out.append({"role": "user", "content": p.model_response()})
                    else:
                        out.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": p.model_response()})
        elif isinstance(m, ModelResponse):
            text = "".join(p.content for p in m.parts if isinstance(p, TextPart))
            calls = [{"id": p.tool_call_id, "type": "function",
                      "function": {"name": p.tool_name, "arguments": json.dumps(p.args_as_dict(), sort_keys=True)}}
                     for p in m.parts if isinstance(p, ToolCallPart)]
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and all(isinstance(c, str) for c in content):
        return "\n".join(content)
    raise ValueError("stalwart.integrations.pydantic_ai: only text prompts are supported, not "
                     f"{type(content).__name__} content")


def _governed(ctx: Context, tools: Sequence[Any], agent: Agent[Any, Any]) -> dict[str, ToolDef]:
    """The Stalwart tool behind each of the agent's function tools (and any ``tools`` given)."""
    found: dict[str, ToolDef] = {}
    for toolset in agent.toolsets:
        own = getattr(toolset, "tools", None)
        if not isinstance(own, dict):
            raise UnauthorizedToolCall(f"the agent has a toolset {toolset!r} that is not made of function tools; "
                                       "only function tools registered with @app.tool can run governed",
                                       retryable=False)
        for name, tool in own.items():
            tdef = ctx._ex.app.tool_for(tool.function)
            if not isinstance(tdef, ToolDef):
                raise UnauthorizedToolCall(f"the agent's tool {name!r} is not a Stalwart tool: register it with "
                                           "@app.tool and list it in the workflow's tools", retryable=False)
            found[tdef.name] = tdef
    for t in tools:
        tdef = ctx._ex.app.tool_for(t)
        if not isinstance(tdef, ToolDef):
            raise UnauthorizedToolCall(f"{t!r} is not a Stalwart tool: register it with @app.tool", retryable=False)
        found[tdef.name] = tdef
    return found


async def run(ctx: Context, agent: Agent[Any, Any], prompt: str, *, tools: Sequence[Any] = (),
              route: str = "default", model: str | None = None, temperature: float | None = None,
              max_tool_errors: int = 3, **kwargs: Any) -> AgentRunResult[Any]:
    """Run ``agent`` on ``prompt`` inside the workflow of ``ctx``; return its ``AgentRunResult``.

    The agent's function tools, and ``tools`` (more Stalwart tools to give it for this run), each
    a tool of this workflow, run governed (see the module docstring). ``route`` and ``model``
    choose the gateway route and model entry, as for ``ctx.llm``. Other keyword arguments
    (``deps``, ``message_history``, ``usage_limits``, ...) go to ``agent.run``.
    """
    if not isinstance(max_tool_errors, int) or isinstance(max_tool_errors, bool) or max_tool_errors < 1:
        raise ValueError(f"max_tool_errors must be an integer of 1 or more, not {max_tool_errors!r}")
    if "model" in kwargs or "toolsets" in kwargs:
        raise ValueError("run() chooses the agent's model and tools itself")
    governed = _governed(ctx, tools, agent)
    out = agent.output_type
    output = out if isinstance(out, type) and issubclass(out, BaseModel) else None
    stalwart_model = StalwartModel(ctx, governed, route=route, model=model, output=output, temperature=temperature)
    errors = 0

    def as_tool(tdef: ToolDef) -> Tool[Any]:
        async def call(rc: RunContext[Any], **arguments: Any) -> Any:
            nonlocal errors
            seqs = stalwart_model.reserved.pop(str(rc.tool_call_id), None) or ctx._ex.reserve(4)
            try:
                return await ctx._governed_tool(tdef, arguments, seqs, {"pydantic_ai": {"call": rc.tool_call_id}})
            except _TOOL_ERRORS as err:
                errors += 1
                if errors >= max_tool_errors:
                    raise ToolError(f"the agent stopped after {errors} refused or failed tool calls (the last: "
                                    f"{err.code}: {err.message})", retryable=False) from err
                return {"error": f"{err.code}: {err.message}"}

        return Tool.from_schema(call, name=tdef.name, description=tdef.description, json_schema=tdef.json_schema(),
                                takes_ctx=True)

    with agent.override(tools=[as_tool(t) for t in governed.values()], toolsets=[]):
        try:
            return await agent.run(prompt, model=stalwart_model, **kwargs)
        except BaseExceptionGroup as group:  # a concurrent tool call's error, unwrapped
            first = _first(group)
            raise first from None


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            return _first(e)
        if isinstance(e, StalwartError):
            return e
    e = group.exceptions[0]
    return _first(e) if isinstance(e, BaseExceptionGroup) else e
