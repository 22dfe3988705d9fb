"""The OpenAI-compatible Chat Completions adapter (OpenAI, vLLM, Ollama, Together, Fireworks…).

Supports tools, ``response_format`` json_schema and streaming; a stream that ends without a
finish reason is a failure, never a partial success. Streams go through the official SDK (its
SSE handling) with its retries off (``max_retries=0``): Stalwart's policy decides about retries
and fallbacks. Plain calls go straight through one pooled ``httpx`` client: the SDK's typed
request transform and response models cost more per call than the whole rest of the gateway.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
import openai

from stalwart.errors import ProviderError, StalwartError
from stalwart.gateway._providers._base import canonical_tool
from stalwart.gateway._providers._errors import error_body_message, provider_error, status_error, translate
from stalwart.gateway._types import ProviderRequest, ProviderResponse

__all__ = ["OpenAIProvider", "unsupported_parameter"]

log = logging.getLogger("stalwart.gateway")


_UNSUPPORTED = [
    re.compile(r"unsupported (?:parameter|value)[:\s]+'?\"?([A-Za-z_][\w.]*)", re.IGNORECASE),
    re.compile(r"'?\"?([A-Za-z_][\w.]*)'?\"? is not supported", re.IGNORECASE),
    re.compile(r"unrecognized request argument supplied:\s*'?\"?([A-Za-z_][\w.]*)", re.IGNORECASE),
    re.compile(
        r"(?:unknown|unexpected|extra) (?:field|parameter|argument)s?[:\s]+'?\"?([A-Za-z_][\w.]*)",
        re.IGNORECASE,
    ),
]
_RENAMED = {"max_tokens": "max_completion_tokens"}
"""Parameters a server refuses in favour of a newer name (OpenAI's reasoning models)."""


def _messages(messages: list[dict[str, Any]], developer_role: str) -> list[dict[str, Any]]:
    """Messages as this server takes them. With ``developer_role="system"`` every system and
    developer message is folded, in order, into one leading system message: many local servers'
    chat templates reject a second system message or one that is not first."""
    if developer_role == "developer":
        return list(messages)
    head = [m for m in messages if m.get("role") in ("system", "developer")]
    if not head:
        return list(messages)
    text = "\n\n".join(str(m.get("content") or "") for m in head)
    rest = [m for m in messages if m.get("role") not in ("system", "developer")]
    return [{"role": "system", "content": text}, *rest]


def unsupported_parameter(message: str, sent: dict[str, Any]) -> str | None:
    """The request parameter a 400 names as unsupported, when it is one we sent (else ``None``)."""
    for pattern in _UNSUPPORTED:
        for match in pattern.finditer(message):
            name = match.group(1).split(".")[0]
            # The output cap is never dropped (only renamed): budgets rely on it.
            if name in sent and name not in ("model", "messages", "max_completion_tokens"):
                return name
    return None


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        args = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {"_raw": raw}
    return args if isinstance(args, dict) else {"_value": args}


class OpenAIProvider:
    """Adapter for one ``provider = "openai"`` registry entry."""

    name = "openai"
    supports_json_schema = True

    def __init__(
        self,
        entry_name: str,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        developer_role: str = "system",
    ) -> None:
        self._where = f"openai model {entry_name!r}"
        self._secret = api_key
        self._developer_role = developer_role
        self.dropped: dict[str, set[str]] = {}
        """Per model id, parameters its server refused as unsupported: never sent to it again."""
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, max_retries=0, timeout=timeout_s
        )
        self._http = httpx.AsyncClient(
            base_url=str(self._client.base_url),
            headers={
                "Authorization": f"Bearer {api_key or 'not-needed'}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=timeout_s,
        )

    def _kwargs(self, req: ProviderRequest) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": req.model_id,
            "messages": _messages(req.messages, self._developer_role),
            "max_tokens": req.max_tokens,
        }
        if req.temperature is not None:
            kw["temperature"] = req.temperature
        if req.tools:
            kw["tools"] = [{"type": "function", "function": canonical_tool(t)} for t in req.tools]
        if req.json_schema is not None:
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": req.schema_name, "schema": req.json_schema, "strict": True},
            }
        for name in self.dropped.get(req.model_id, ()):
            value = kw.pop(name, None)
            if name in _RENAMED and value is not None:
                kw[_RENAMED[name]] = value
        kw["timeout"] = req.timeout_s
        return kw

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        """One call; a 400 naming a parameter as unsupported is retried once without it, and
        that parameter is never sent to this model again."""
        try:
            return await self._complete(req)
        except ProviderError as err:
            if err.status != 400 or err.details.get("kind") != "bad_request":
                raise
            name = unsupported_parameter(err.message, self._kwargs(req))
            if name is None:
                raise
            self.dropped.setdefault(req.model_id, set()).add(name)
            log.warning("%s: the server does not support %r; retrying without it", self._where, name)
            return await self._complete(req)

    async def _complete(self, req: ProviderRequest) -> ProviderResponse:
        kw = self._kwargs(req)
        try:
            if req.stream:
                return await self._stream(req, kw)
            timeout = kw.pop("timeout")
            http = await self._http.post("chat/completions", content=json.dumps(kw).encode(), timeout=timeout)
            if http.status_code >= 400:
                raise status_error(
                    self._where, http.status_code, error_body_message(http.text), http.headers, self._secret
                )
            resp = json.loads(http.content)
        except StalwartError:
            raise  # ours already (a stream cut by the guard or the budget in ``on_delta``)
        except Exception as exc:  # noqa: BLE001 - every failure is translated here, once
            raise translate(exc, self._where, self._secret) from None
        try:
            choice = resp["choices"][0]
            msg = choice["message"]
            usage = resp.get("usage") or {}
            finish = choice.get("finish_reason") or ""
            calls = [
                {
                    "id": tc.get("id", ""),
                    "name": tc["function"]["name"],
                    "arguments": _args(tc["function"].get("arguments")),
                }
                for tc in msg.get("tool_calls") or []
            ]
            out = ProviderResponse(
                text=msg.get("content") or "",
                tokens_in=int(usage.get("prompt_tokens") or 0),
                tokens_out=int(usage.get("completion_tokens") or 0),
                response_model=resp.get("model") or req.model_id,
                finish_reason=finish,
                tool_calls=calls,
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise provider_error(self._where, "malformed", "response is not a chat completion") from None
        if finish == "content_filter" or msg.get("refusal"):
            raise provider_error(self._where, "content_filter", "the provider refused (content filter)")
        return out

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
                    if req.on_delta is not None:
                        await req.on_delta(delta.content)
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
        await self._http.aclose()
        await self._client.close()
