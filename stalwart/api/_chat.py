"""``POST /v1/chat/completions``: the OpenAI-compatible face of the model gateway.

Each call: untrusted messages are scanned for injection (a block answers 400), PII is replaced by
placeholders before anything leaves, the gateway routes and charges the call to the caller's org
budget, the answer is scanned as untrusted model output, the caller's own values are put back in
place of placeholders, and an audit entry records who called which model at what cost (never the
content). ``stream: true`` answers with server-sent events in OpenAI's chunk format, forwarding
the provider's tokens as they are produced: the output guard scans them incrementally (a sliding
window; only scanned text leaves) and a block, a budget cut or a provider failure mid-stream ends
the stream with an ``error`` event. A failure before the first token is an ordinary HTTP error.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from stalwart.api._auth import Principal, requires
from stalwart.api._errors import ApiError, error_body, status_for
from stalwart.api._schemas import ErrorOut
from stalwart.api._stream_guard import StreamGuard
from stalwart.errors import StalwartError

__all__ = ["router"]

router = APIRouter(
    tags=["openai"], responses={c: {"model": ErrorOut} for c in (400, 401, 402, 403, 404, 422, 429)}
)

_PLACEHOLDER = re.compile(r"\{\{[A-Z_]+_\d+\}\}")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(None, max_length=200)
    tool_call_id: str | None = Field(None, max_length=200)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of OpenAI's Chat Completions request that Stalwart honours (unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        min_length=1, max_length=200, description="A model registry entry, a route name, or 'default'."
    )
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    max_tokens: int | None = Field(None, ge=1, le=200_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=200_000)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    n: int = Field(1, ge=1, le=1)
    user: str | None = Field(None, max_length=200)


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatChoice(BaseModel):
    index: int
    message: dict[str, Any]
    finish_reason: str | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    system_fingerprint: str | None = None


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))


def _resolve(gw: Any, model: str) -> tuple[str, str | None]:
    """``(task, model_override)`` for the requested model name."""
    reg = gw.registry
    if model in reg.models:
        return "chat", model
    if model in reg.routes:
        return model, None
    if model in ("default", "stalwart"):
        return "default", None
    known = sorted({*reg.models, *reg.routes})
    raise ApiError(404, "model_not_found", f"unknown model {model!r}; use one of: {', '.join(known)}")


async def _guarded_messages(
    guard: Any, req: ChatRequest
) -> tuple[list[dict[str, Any]], dict[str, str], dict]:
    from stalwart.guard import PlaceholderMap

    placeholders = PlaceholderMap()
    out: list[dict[str, Any]] = []
    mapping: dict[str, str] = {}
    flags: list[dict[str, Any]] = []
    redacted = 0
    for i, m in enumerate(req.messages):
        text = _text(m.content)
        if m.role in ("user", "tool") and text:
            verdict = await asyncio.to_thread(guard.scan, text, "tool" if m.role == "tool" else "user")
            if verdict.action == "block":
                raise ApiError(
                    400,
                    "injection_blocked",
                    f"message {i} was blocked by the prompt-injection guard",
                    details={"reasons": list(verdict.reasons)[:5]},
                )
            if verdict.action == "flag":
                flags.append({"message": i, "score": round(verdict.score, 3)})
        red = await asyncio.to_thread(guard.redact, text, placeholders) if text else None
        msg: dict[str, Any] = {
            # Developer messages keep their role: each provider maps it to what its server takes.
            "role": m.role,
            "content": red.text if red is not None else (m.content or ""),
        }
        if red is not None:
            mapping.update(red.mapping)
            redacted += len(red.entities)
        extra = m.model_extra or {}
        if m.role == "assistant" and extra.get("tool_calls"):
            msg["tool_calls"] = extra["tool_calls"]
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        if m.name:
            msg["name"] = m.name
        out.append(msg)
    return out, mapping, {"flags": flags, "redacted": redacted}


def _rehydrate(text: str, mapping: dict[str, str]) -> str:
    """Put the caller's own values back where the model echoed a placeholder."""
    return _PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text) if mapping else text


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(
    body: ChatRequest, request: Request, p: Principal = Depends(requires("operator", "admin"))
) -> Any:
    """OpenAI-compatible chat completion through the guard, the gateway and the caller's org budget."""
    from stalwart.gateway import CallContext, LLMRequest

    ctx = request.app.state.stalwart
    app = ctx.app
    gw = await app.gateway()
    task, override = _resolve(gw, body.model)
    guard = app.guard()
    messages, mapping, guard_info = await _guarded_messages(guard, body)
    call_id = f"chatcmpl-{secrets.token_hex(12)}"
    req = LLMRequest(
        task=task,
        messages=messages,
        model=override,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        tools=body.tools,
    )
    call = CallContext(run_id=call_id, org=p.org, user=p.subject, workflow="api.chat")
    started = time.time()
    if body.stream:
        return await _stream(ctx, gw, guard, req, call, body, p, mapping, guard_info, call_id, int(started))
    try:
        result = await gw.complete(req, call)
    except Exception as exc:
        await ctx.gov.audit(
            "gateway.chat_completion",
            actor=p.actor,
            org=p.org,
            action="complete",
            resource=f"model:{body.model}",
            decision="error",
            user_id=p.subject,
            details={"call_id": call_id, "error": getattr(exc, "code", type(exc).__name__)},
        )
        raise
    scan = await asyncio.to_thread(guard.scan, result.text, "model") if result.text else None
    if scan is not None and scan.action == "block":
        await ctx.gov.audit(
            "gateway.chat_completion",
            actor=p.actor,
            org=p.org,
            action="complete",
            resource=f"model:{result.model}",
            decision="output_blocked",
            user_id=p.subject,
            details={"call_id": call_id},
        )
        raise ApiError(502, "output_blocked", "the model's answer was blocked by the output guard")
    text = _rehydrate(result.text, mapping)
    await ctx.gov.audit(
        "gateway.chat_completion",
        actor=p.actor,
        org=p.org,
        action="complete",
        resource=f"model:{result.model}",
        decision="allow",
        user_id=p.subject,
        details={
            "call_id": call_id,
            "model_id": result.model_id,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
            "cost_usd": result.cost_usd,
            "cached": result.cached,
            "pii_redacted": guard_info["redacted"],
            "injection_flags": guard_info["flags"],
            "output_verdict": scan.action if scan else "allow",
        },
    )
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if result.tool_calls:
        message["tool_calls"] = [_tool_call(i, c) for i, c in enumerate(result.tool_calls)]
    usage = {
        "prompt_tokens": result.tokens_in,
        "completion_tokens": result.tokens_out,
        "total_tokens": result.tokens_in + result.tokens_out,
    }
    return {
        "id": call_id,
        "object": "chat.completion",
        "created": int(started),
        "model": result.model_id,
        "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason or "stop"}],
        "usage": usage,
        "system_fingerprint": None,
    }


def _tool_call(i: int, c: dict[str, Any]) -> dict[str, Any]:
    args = c.get("arguments", c.get("args", {}))
    return {
        "id": c.get("id") or f"call_{i}",
        "type": "function",
        "function": {
            "name": c.get("name", ""),
            "arguments": args if isinstance(args, str) else json.dumps(args),
        },
    }


async def _audit(ctx: Any, p: Principal, resource: str, decision: str, details: dict[str, Any]) -> None:
    await ctx.gov.audit(
        "gateway.chat_completion",
        actor=p.actor,
        org=p.org,
        action="complete",
        resource=resource,
        decision=decision,
        user_id=p.subject,
        details=details,
    )


async def _stream(
    ctx: Any,
    gw: Any,
    guard: Any,
    req: Any,
    call: Any,
    body: ChatRequest,
    p: Principal,
    mapping: dict[str, str],
    guard_info: dict[str, Any],
    call_id: str,
    created: int,
) -> StreamingResponse:
    """Run the call in a task whose tokens flow through a queue into the SSE response.

    The response starts only once the first token (or the whole answer) exists, so that a call
    refused up front (budget, routing, provider down) is still an ordinary HTTP error."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def on_delta(piece: str) -> None:
        await queue.put(("delta", piece))

    async def run() -> None:
        try:
            await queue.put(("done", await gw.complete(req, call, on_delta=on_delta)))
        except Exception as exc:  # noqa: BLE001 - handed to the response, which reports it
            await queue.put(("error", exc))

    task = asyncio.create_task(run())
    try:
        first = await queue.get()
    except asyncio.CancelledError:  # the client went away before the first token
        task.cancel()
        raise
    if first[0] == "error":
        exc = first[1]
        await _audit(
            ctx,
            p,
            f"model:{body.model}",
            "error",
            {"call_id": call_id, "error": getattr(exc, "code", type(exc).__name__)},
        )
        raise exc
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _sse(ctx, p, guard, body, mapping, guard_info, call_id, created, first, queue, task, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(
    ctx: Any,
    p: Principal,
    guard: Any,
    body: ChatRequest,
    mapping: dict[str, str],
    guard_info: dict[str, Any],
    call_id: str,
    created: int,
    first: tuple[str, Any],
    queue: asyncio.Queue[tuple[str, Any]],
    task: asyncio.Task[None],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    model = body.model

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        doc = {
            "id": call_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(doc)}\n\n".encode()

    def failure(code: str, message: str, status: int) -> bytes:
        doc = error_body(code, message)
        doc["error"].update(type=code, status=status)
        return f"data: {json.dumps(doc)}\n\n".encode()

    # Scanning costs ~10 ms a window: off the event loop is not worth a thread hop per step.
    sg = StreamGuard(scan=lambda text: guard.scan(text, "model"), rehydrate=lambda t: _rehydrate(t, mapping))
    yield chunk({"role": "assistant", "content": ""})
    event = first
    try:
        while True:
            kind, value = event
            if kind == "delta":
                text = sg.feed(value)
                if text:
                    yield chunk({"content": text})
            elif kind == "error":
                text = sg.finish()
                if text:
                    yield chunk({"content": text})
                code = getattr(value, "code", "internal_error")
                status = status_for(value) if isinstance(value, StalwartError) else 500
                message = value.message if isinstance(value, StalwartError) else "internal error"
                await _audit(
                    ctx, p, f"model:{model}", "error", {"call_id": call_id, "error": code, "streamed": True}
                )
                yield failure(code, message, status)
                yield b"data: [DONE]\n\n"
                return
            else:
                result = value
                model = result.model_id
                text = ""
                if result.text and not (sg.scans or sg.pending):
                    # Nothing was streamed (a cache hit, a non-streaming provider): all at once.
                    text = sg.feed(result.text)
                text += sg.finish()
                if text:
                    yield chunk({"content": text})
                break
            if sg.blocked is not None:
                break
            event = await queue.get()
        if sg.blocked is not None:
            task.cancel()
            await _audit(
                ctx,
                p,
                f"model:{model}",
                "output_blocked",
                {"call_id": call_id, "streamed": True, "reasons": list(sg.blocked.reasons)[:5]},
            )
            yield failure("output_blocked", "the model's answer was blocked by the output guard", 502)
            yield b"data: [DONE]\n\n"
            return
        if result.tool_calls:
            calls = [_tool_call(i, c) for i, c in enumerate(result.tool_calls)]
            yield chunk({"tool_calls": [{"index": i, **tc} for i, tc in enumerate(calls)]})
        yield chunk({}, result.finish_reason or "stop")
        usage = {
            "prompt_tokens": result.tokens_in,
            "completion_tokens": result.tokens_out,
            "total_tokens": result.tokens_in + result.tokens_out,
        }
        await _audit(
            ctx,
            p,
            f"model:{result.model}",
            "allow",
            {
                "call_id": call_id,
                "model_id": result.model_id,
                "tokens_in": result.tokens_in,
                "tokens_out": result.tokens_out,
                "cost_usd": result.cost_usd,
                "cost_known": result.cost_known,
                "cached": result.cached,
                "pii_redacted": guard_info["redacted"],
                "injection_flags": guard_info["flags"],
                "output_verdict": "allow",
                "streamed": True,
                "guard_scans": sg.scans,
            },
        )
        if include_usage:
            doc = {
                "id": call_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(doc)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        # A client that went away, or a block: stop generating (the hold is still settled).
        if not task.done():
            task.cancel()
