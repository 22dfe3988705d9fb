"""A real HTTP server on loopback that speaks OpenAI Chat Completions and Anthropic Messages.

It runs in a thread (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive) and supports tools,
``response_format`` json_schema and SSE streaming. Faults are injected per model or for any model:

=================  ================================================================
``"500"``/``"503"``  a server error
``"429"``/``"429:S"``  rate limited, with ``Retry-After: S`` (default 1)
``"timeout"``/``"timeout:S"``  sleeps S seconds (default ``timeout_s``) before answering
``"malformed"``      200 with a body that is not JSON
``"schema"``         a JSON answer that violates the requested schema
``"cut"``            the answer stops mid-way (stream: no finish, no terminating chunk)
``"refusal"``        a content-filter refusal
``"overflow"``       400 context length exceeded
``"401"``            bad key; the message echoes the key, as some real providers do
``"gate"``           stream: half the answer, then wait for ``srv.gate`` before the rest
=================  ================================================================

Conventions of servers users run: ``reject_param(name)`` answers 400 "Unsupported parameter"
to every request carrying ``name`` (as OpenAI's reasoning models do for ``temperature``), and
``strict_roles = True`` refuses a ``developer`` message or a system message that is not first
(what many llama.cpp / Ollama chat templates do).

``compromised = True`` makes it obey instructions it finds in the prompt (guard evals). Every
request is counted and its raw body recorded (for PII-leak counting at the HTTP boundary).
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FakeLLMServer", "Recorded"]

Reply = str | dict[str, Any] | Callable[[dict[str, Any]], "str | dict[str, Any]"]


@dataclass(slots=True)
class Recorded:
    """One request as received."""

    path: str
    model: str
    body: dict[str, Any]
    raw: str
    fault: str | None
    at: float = field(default_factory=time.time)


def _tokens(text: str, model: str) -> int:
    from stalwart.gateway import count_text

    return count_text(text, model)


def _prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, model: str) -> int:
    """Usage as OpenAI reports it: tiktoken counts with per-message framing."""
    from stalwart.gateway import count_messages

    return count_messages(messages, model, tools)


def _example(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return _example(defs[schema["$ref"].split("/")[-1]], defs)
    if "anyOf" in schema:
        return _example(schema["anyOf"][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if t == "object":
        return {k: _example(v, defs) for k, v in schema.get("properties", {}).items()}
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "array": [], "null": None}.get(
        t if isinstance(t, str) else "string", "example"
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            _text(b.get("text") or b.get("content") or "") for b in content if isinstance(b, dict)
        )
    return ""


_SCHEMA_IN_PROMPT = re.compile(r"JSON Schema:\s*(\{.*\})\s*$", re.DOTALL)
_OBEY = re.compile(r"ignore (?:all )?(?:the )?(?:previous|prior|above) instructions", re.IGNORECASE)
_CALL = re.compile(r"call (?:the )?(?:tool )?`?([A-Za-z_]\w*)`?(?: with (\{.*?\}))?", re.IGNORECASE)
_SAY = re.compile(r"(?:say|reply|respond|output|answer)(?: with)?:?\s*[\"'](.+?)[\"']", re.IGNORECASE)


class FakeLLMServer:
    """Start with ``with FakeLLMServer() as srv:``; point clients at ``srv.openai_url`` /
    ``srv.anthropic_url``."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 3.0, seed: int = 0
    ) -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.compromised = False
        self.strict_roles = False
        self.rejected_params: dict[str | None, set[str]] = {}
        self.gate = threading.Event()
        self.requests: list[Recorded] = []
        self._faults: dict[str | None, list[str]] = {}
        self._ratio: dict[str | None, tuple[float, tuple[str, ...]]] = {}
        self._replies: dict[str | None, Reply] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def start(self) -> FakeLLMServer:
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, *faults: str, model: str | None = None) -> None:
        """Queue faults for the next requests to ``model`` (or to any model), one per request."""
        with self._lock:
            self._faults.setdefault(model, []).extend(faults)

    def fail_ratio(self, ratio: float, kinds: tuple[str, ...] = ("500",), model: str | None = None) -> None:
        """Fail about ``ratio`` of the requests (seeded, so reproducible) with one of ``kinds``."""
        with self._lock:
            self._ratio[model] = (ratio, kinds)

    def reply(self, reply: Reply, model: str | None = None) -> None:
        """Answer ``model`` (or any model) with fixed text, a JSON object, or ``fn(body)``."""
        with self._lock:
            self._replies[model] = reply

    def reject_param(self, name: str, model: str | None = None) -> None:
        """From now on answer 400 "Unsupported parameter" to requests (to ``model``) carrying ``name``."""
        with self._lock:
            self.rejected_params.setdefault(model, set()).add(name)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._ratio.clear()
            self._replies.clear()
            self.compromised = False
            self.strict_roles = False
            self.rejected_params.clear()
            self.gate.clear()

    def count(self, model: str | None = None, path: str | None = None) -> int:
        """Requests received (for one model and/or path)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (model is None or r.model == model) and (path is None or r.path == path)
            )

    def bodies(self) -> list[str]:
        """Raw request bodies, as they crossed the HTTP boundary."""
        with self._lock:
            return [r.raw for r in self.requests]

    # -- decisions (called from handler threads) --------------------------------------------
    def _take_fault(self, model: str) -> str | None:
        with self._lock:
            for key in (model, None):
                queue = self._faults.get(key)
                if queue:
                    return queue.pop(0)
            for key in (model, None):
                if key in self._ratio:
                    ratio, kinds = self._ratio[key]
                    if self._rng.random() < ratio:
                        return self._rng.choice(kinds)
        return None

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def _answer(
        self,
        body: dict[str, Any],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        schema: dict[str, Any] | None,
    ) -> tuple[str, list[dict[str, Any]]]:
        """(text, tool calls [{id, name, arguments}])."""
        model = str(body.get("model", ""))
        if self.compromised:
            obeyed = self._obey(messages)
            if obeyed is not None:
                return obeyed
        with self._lock:
            reply = self._replies.get(model, self._replies.get(None))
        if reply is not None:
            out = reply(body) if callable(reply) else reply
            return (json.dumps(out) if isinstance(out, dict) else str(out)), []
        done_tools = any(
            m.get("role") == "tool"
            or (
                isinstance(m.get("content"), list)
                and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in m["content"])
            )
            for m in messages
        )
        if tools and not done_tools:
            t = tools[0]
            fn = t.get("function", t)
            params = fn.get("parameters") or fn.get("input_schema") or {}
            return "", [{"id": "call_1", "name": fn["name"], "arguments": _example(params)}]
        if schema is not None:
            return json.dumps(_example(schema)), []
        last = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        return f"fake answer to: {last[:80]}", []

    def _obey(self, messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]] | None:
        text = "\n".join(_text(m.get("content")) for m in messages)
        if not _OBEY.search(text):
            return None
        if m := _CALL.search(text):
            args = json.loads(m.group(2)) if m.group(2) else {}
            return "", [{"id": "call_evil", "name": m.group(1), "arguments": args}]
        if m := _SAY.search(text):
            return m.group(1), []
        system = next((_text(x.get("content")) for x in messages if x.get("role") == "system"), "")
        return f"Sure. My instructions were: {system}", []


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # -- plumbing ------------------------------------------------------------------------------
    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(
        self, anthropic: bool, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        if anthropic:
            doc: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            doc = {"error": {"message": message, "type": kind, "code": kind}}
        self._send_json(status, doc, headers)

    def do_POST(self) -> None:
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "invalid JSON body"}})
            return
        path = self.path.split("?")[0]
        anthropic = path == "/v1/messages"
        if path not in ("/v1/chat/completions", "/v1/messages"):
            self._send_json(404, {"error": {"message": f"no route {path}"}})
            return
        model = str(body.get("model", ""))
        fault = self.fake._take_fault(model)
        self.fake._record(Recorded(path, model, body, raw, fault))
        if fault and self._common_fault(fault, anthropic):
            return
        if not anthropic and self._convention_error(body, model):
            return
        if anthropic:
            self._anthropic(body, fault)
        else:
            self._openai(body, fault)

    def _convention_error(self, body: dict[str, Any], model: str) -> bool:
        with self.fake._lock:
            rejected = self.fake.rejected_params.get(None, set()) | self.fake.rejected_params.get(
                model, set()
            )
        for name in sorted(rejected):
            if name in body:
                self._error(
                    False,
                    400,
                    "invalid_request_error",
                    f"Unsupported parameter: '{name}' is not supported with this model.",
                )
                return True
        if self.fake.strict_roles:
            roles = [m.get("role") for m in body.get("messages") or []]
            if "developer" in roles or "system" in roles[1:]:
                self._error(False, 400, "invalid_request_error", "System message must be at the beginning.")
                return True
        return False

    def _common_fault(self, fault: str, anthropic: bool) -> bool:
        name, _, arg = fault.partition(":")
        if name in ("500", "502", "503", "529"):
            self._error(
                anthropic, int(name), "api_error" if anthropic else "server_error", "injected server error"
            )
        elif name == "429":
            self._error(
                anthropic, 429, "rate_limit_error", "injected rate limit", {"Retry-After": arg or "1"}
            )
        elif name == "401":
            auth = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
            key = auth.removeprefix("Bearer ").strip()
            self._error(anthropic, 401, "authentication_error", f"Incorrect API key provided: {key}.")
        elif name == "overflow":
            self._error(
                anthropic,
                400,
                "invalid_request_error",
                "This model's maximum context length is 8192 tokens (context_length_exceeded)",
            )
        elif name == "malformed":
            data = b'{"id": "chatcmpl-broken", "choices": [ {"message": '
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif name == "timeout":
            time.sleep(float(arg) if arg else self.fake.timeout_s)
            return False
        else:
            return False
        return True

    # -- OpenAI --------------------------------------------------------------------------------
    def _openai(self, body: dict[str, Any], fault: str | None) -> None:
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        rf = body.get("response_format") or {}
        schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
        if fault == "refusal":
            text, calls, finish = "", [], "content_filter"
        else:
            text, calls = self.fake._answer(body, messages, tools, schema)
            finish = "tool_calls" if calls else "stop"
        if fault == "schema":
            text, calls = json.dumps({"unexpected": "shape", "note": "violates the schema"}), []
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 4096)
        model = str(body.get("model", ""))
        text, finish, n_out = _truncate(text, max_tokens, finish, model)
        usage = {
            "prompt_tokens": _prompt_tokens(messages, tools or None, model),
            "completion_tokens": n_out + sum(_tokens(json.dumps(c["arguments"]), model) for c in calls),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        tool_calls = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for c in calls
        ]
        if body.get("stream"):
            self._openai_stream(
                model, text, tool_calls, finish, usage, body, cut=fault == "cut", gate=fault == "gate"
            )
            return
        doc = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "logprobs": None,
                    "message": {
                        "role": "assistant",
                        "content": text or None,
                        **({"tool_calls": tool_calls} if tool_calls else {}),
                    },
                }
            ],
            "usage": usage,
        }
        if fault == "cut":
            data = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._cut()
            return
        self._send_json(200, doc)

    def _openai_stream(
        self,
        model: str,
        text: str,
        tool_calls: list[dict[str, Any]],
        finish: str,
        usage: dict[str, int],
        body: dict[str, Any],
        *,
        cut: bool,
        gate: bool = False,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(delta: dict[str, Any], finish_reason: str | None = None, with_usage: bool = False) -> None:
            doc: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if with_usage:
                doc["choices"] = []
                doc["usage"] = usage
            self._chunk(f"data: {json.dumps(doc)}\n\n".encode())

        event({"role": "assistant", "content": ""})
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)] or []
        if cut:
            for p in pieces[: max(1, len(pieces) // 2)]:
                event({"content": p})
            self._cut()
            return
        for i, p in enumerate(pieces):
            if gate and i == max(1, len(pieces) // 2):
                self.fake.gate.wait(self.fake.timeout_s * 10)
            event({"content": p})
        for i, tc in enumerate(tool_calls):
            event(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": tc["id"],
                            "type": "function",
                            "function": {"name": tc["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
            event({"tool_calls": [{"index": i, "function": {"arguments": tc["function"]["arguments"]}}]})
        event({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            event({}, None, with_usage=True)
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- Anthropic -----------------------------------------------------------------------------
    def _anthropic(self, body: dict[str, Any], fault: str | None) -> None:
        messages = list(body.get("messages") or [])
        system = body.get("system")
        all_messages = ([{"role": "system", "content": _text(system)}] if system else []) + messages
        tools = body.get("tools") or []
        if fault == "refusal":
            text, calls, stop = "", [], "refusal"
        else:
            m = _SCHEMA_IN_PROMPT.search(_text(system) if system else "")
            schema = json.loads(m.group(1)) if m else None
            text, calls = self.fake._answer(body, all_messages, tools, schema)
            stop = "tool_use" if calls else "end_turn"
        if fault == "schema":
            text, calls = json.dumps({"unexpected": "shape"}), []
        model = str(body.get("model", ""))
        text, finish, n_out = _truncate(text, int(body.get("max_tokens") or 4096), stop, model)
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [
            {"type": "tool_use", "id": f"toolu_{c['id']}", "name": c["name"], "input": c["arguments"]}
            for c in calls
        ]
        doc = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": content,
            "stop_reason": "max_tokens" if finish == "length" else finish,
            "stop_sequence": None,
            "usage": {
                "input_tokens": _prompt_tokens(all_messages, tools or None, model),
                "output_tokens": n_out + sum(_tokens(json.dumps(c["arguments"]), model) for c in calls),
            },
        }
        if body.get("stream"):
            self._anthropic_stream(doc, cut=fault == "cut")
            return
        if fault == "cut":
            data = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._cut()
            return
        self._send_json(200, doc)

    def _anthropic_stream(self, doc: dict[str, Any], *, cut: bool) -> None:
        """Anthropic's streaming events: message_start, content blocks as deltas, message_delta."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(kind: str, data: dict[str, Any]) -> None:
            self._chunk(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())

        usage = doc["usage"]
        start = {**doc, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 0}}
        event("message_start", {"message": start})
        for i, block in enumerate(doc["content"]):
            if block["type"] == "text":
                event("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                pieces = [block["text"][j : j + 8] for j in range(0, len(block["text"]), 8)]
                for n, piece in enumerate(pieces):
                    if cut and n == len(pieces) // 2:
                        self._cut()
                        return
                    event("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": piece}})
            else:
                event("content_block_start", {"index": i, "content_block": {**block, "input": {}}})
                partial = json.dumps(block["input"])
                event(
                    "content_block_delta",
                    {"index": i, "delta": {"type": "input_json_delta", "partial_json": partial}},
                )
            event("content_block_stop", {"index": i})
        event(
            "message_delta",
            {"delta": {"stop_reason": doc["stop_reason"], "stop_sequence": None}, "usage": usage},
        )
        event("message_stop", {})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _truncate(text: str, max_tokens: int, finish: str, model: str) -> tuple[str, str, int]:
    """The answer cut to ``max_tokens`` tokens: (text, finish reason, tokens)."""
    from stalwart.gateway._tokens import encoding_for

    enc = encoding_for(model)
    ids = enc.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return text, finish, len(ids)
    return enc.decode(ids[:max_tokens]), "length", max_tokens


def main() -> None:
    """Serve on loopback until stdin closes (used by bench/gateway.py to keep the server in its own
    process); prints the base URL on the first line."""
    import sys

    with FakeLLMServer() as srv:
        print(srv.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
