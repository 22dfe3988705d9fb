"""The Anthropic Messages API adapter, with tool use. SDK retries are off (``max_retries=0``)."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from stalwart.errors import StalwartError
from stalwart.gateway._providers._base import canonical_tool
from stalwart.gateway._providers._errors import provider_error, translate
from stalwart.gateway._types import ProviderRequest, ProviderResponse

__all__ = ["AnthropicProvider", "to_anthropic"]


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Split OpenAI-shaped messages into Anthropic's ``system`` string and content-block messages."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(str(m.get("content") or ""))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id", ""),
                "content": str(m.get("content") or ""),
            }
            out.append({"role": "user", "content": [block]})
        elif role == "assistant" and m.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if m.get("content"):
                blocks.append({"type": "text", "text": m["content"]})
            for tc in m["tool_calls"]:
                fn = tc.get("function", tc)
                args = fn.get("arguments", {})
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": tc.get("id", ""),
                        "name": fn["name"],
                        "input": json.loads(args) if isinstance(args, str) else args,
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    return "\n\n".join(system), out


class AnthropicProvider:
    """Adapter for one ``provider = "anthropic"`` registry entry.

    The Messages API has no JSON Schema response format here, so structured calls carry the schema
    in the system prompt and rely on Stalwart's validation and correction loop.
    """

    name = "anthropic"
    supports_json_schema = False

    def __init__(
        self, entry_name: str, *, base_url: str | None, api_key: str | None, timeout_s: float
    ) -> None:
        self._where = f"anthropic model {entry_name!r}"
        self._secret = api_key
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or "not-needed", base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        system, messages = to_anthropic(req.messages)
        kw: dict[str, Any] = {"model": req.model_id, "max_tokens": req.max_tokens, "messages": messages}
        if system:
            kw["system"] = system
        if req.temperature is not None:
            kw["temperature"] = req.temperature
        if req.tools:
            kw["tools"] = [
                {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                for t in map(canonical_tool, req.tools)
            ]
        try:
            if req.stream or req.on_delta is not None:
                async with self._client.messages.stream(**kw, timeout=req.timeout_s) as stream:
                    async for event in stream:
                        if event.type == "text" and event.text and req.on_delta is not None:
                            await req.on_delta(event.text)
                    resp = await stream.get_final_message()
                if resp.stop_reason is None:
                    raise provider_error(self._where, "stream_cut", "stream ended before the answer finished")
            else:
                resp = await self._client.messages.create(**kw, timeout=req.timeout_s)
        except StalwartError:
            raise  # ours already (a stream cut by the guard or the budget in ``on_delta``)
        except Exception as exc:  # noqa: BLE001 - every failure is translated here, once
            raise translate(exc, self._where, self._secret) from None
        stop = resp.stop_reason or ""
        if stop == "refusal":
            raise provider_error(self._where, "content_filter", "the provider refused (stop_reason=refusal)")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in resp.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append({"id": block.id, "name": block.name, "arguments": dict(block.input or {})})
        finish = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}.get(stop, stop)
        return ProviderResponse(
            text="".join(texts),
            tokens_in=resp.usage.input_tokens,
            tokens_out=resp.usage.output_tokens,
            response_model=resp.model or req.model_id,
            finish_reason=finish,
            tool_calls=calls,
        )

    async def aclose(self) -> None:
        await self._client.close()
