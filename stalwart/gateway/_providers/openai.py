"""The OpenAI-compatible Chat Completions adapter (OpenAI, vLLM, Ollama, Together, Fireworks…).

Uses the official SDK as transport with its retries off (``max_retries=0``): Stalwart's own
policy decides about retries and fallbacks. Supports tools, ``response_format`` json_schema and
streaming; a stream that ends without a finish reason is a failure, never a partial success.
"""

from __future__ import annotations

import json
from typing import Any

import openai

from stalwart.gateway._providers._base import canonical_tool
from stalwart.gateway._providers._errors import provider_error, translate
from stalwart.gateway._types import ProviderRequest, ProviderResponse

__all__ = ["OpenAIProvider"]


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.get("role") == "developer":
            m = {**m, "role": "system"}
        out.append(m)
    return out


def _tool_calls(raw: Any) -> list[dict[str, Any]]:
    calls = []
    for tc in raw or []:
        fn = tc.function
        try:
            args = json.loads(fn.arguments or "{}")
        except json.JSONDecodeError:
            args = {"_raw": fn.arguments}
        calls.append({"id": tc.id, "name": fn.name, "arguments": args})
    return calls


class OpenAIProvider:
    """Adapter for one ``provider = "openai"`` registry entry."""

    name = "openai"
    supports_json_schema = True

    def __init__(self, entry_name: str, *, base_url: str | None, api_key: str | None, timeout_s: float) -> None:
        self._where = f"openai model {entry_name!r}"
        self._secret = api_key
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, max_retries=0, timeout=timeout_s
        )

    def _kwargs(self, req: ProviderRequest) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": req.model_id, "messages": _messages(req.messages), "max_tokens": req.max_tokens}
        if req.temperature is not None:
            kw["temperature"] = req.temperature
        if req.tools:
            kw["tools"] = [{"type": "function", "function": canonical_tool(t)} for t in req.tools]
        if req.json_schema is not None:
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": req.schema_name, "schema": req.json_schema, "strict": True},
            }
        kw["timeout"] = req.timeout_s
        return kw

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        kw = self._kwargs(req)
        try:
            if req.stream:
                return await self._stream(req, kw)
            resp = await self._client.chat.completions.create(**kw)
        except Exception as exc:
            raise translate(exc, self._where, self._secret) from None
        if not resp.choices:
            raise provider_error(self._where, "malformed", "response has no choices")
        choice = resp.choices[0]
        msg = choice.message
        finish = choice.finish_reason or ""
        if finish == "content_filter" or getattr(msg, "refusal", None):
            raise provider_error(self._where, "content_filter", "the provider refused (content filter)")
        usage = resp.usage
        return ProviderResponse(
            text=msg.content or "",
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            response_model=resp.model or req.model_id,
            finish_reason=finish,
            tool_calls=_tool_calls(msg.tool_calls),
        )

    async def _stream(self, req: ProviderRequest, kw: dict[str, Any]) -> ProviderResponse:
        parts: list[str] = []
        tools: dict[int, dict[str, Any]] = {}
        finish = ""
        tokens_in = tokens_out = 0
        model = req.model_id
        stream = await self._client.chat.completions.create(
            **kw, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage is not None:
                tokens_in, tokens_out = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    parts.append(delta.content)
                for tc in delta.tool_calls or []:
                    slot = tools.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
                if choice.finish_reason:
                    finish = choice.finish_reason
        if not finish:
            raise provider_error(self._where, "stream_cut", "stream ended before the answer finished")
        if finish == "content_filter":
            raise provider_error(self._where, "content_filter", "the provider refused (content filter)")
        calls = []
        for slot in tools.values():
            try:
                args = json.loads(slot["arguments"] or "{}")
            except json.JSONDecodeError:
                raise provider_error(self._where, "stream_cut", "tool call arguments cut off") from None
            calls.append({"id": slot["id"], "name": slot["name"], "arguments": args})
        return ProviderResponse("".join(parts), tokens_in, tokens_out, model, finish, calls)

    async def aclose(self) -> None:
        await self._client.close()
