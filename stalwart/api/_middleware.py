"""ASGI middleware: body size limit, security headers, request metrics. Pure ASGI (no buffering)."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["SECURITY_HEADERS", "EdgeMiddleware"]

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        (
            b"default-src 'self'; img-src 'self' data:; style-src 'self'; style-src-attr 'unsafe-inline'; script-src 'self'; "
            b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        ),
    ),
]


def _too_large(limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps(
        {"error": {"code": "body_too_large", "message": f"request body exceeds the limit of {limit} bytes"}}
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` so the app's own handler answers 413 (the route never sees the body)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class EdgeMiddleware:
    """Refuses bodies over ``max_body_bytes`` (declared or streamed), adds security headers, and
    counts requests by route template and status into ``metrics`` (a pair of Prometheus metrics)."""

    def __init__(self, app: Any, max_body_bytes: int, metrics: Any = None, hsts: bool = False) -> None:
        self.app = app
        self.max = max_body_bytes
        self.metrics = metrics
        self.headers = list(SECURITY_HEADERS)
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max + 1
                if declared > self.max:
                    start, body = _too_large(self.max)
                    await send(start)
                    await send(body)
                    return
        seen = 0
        started = False
        status = 500
        t0 = time.perf_counter()

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max:
                    raise _BodyTooLarge(self.max)
            return message

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                existing = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in existing]
                if scope["path"].startswith(("/v1/", "/admin/")):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not started:
                start, body = _too_large(self.max)
                await send(start)
                await send(body)
                status = 413
        finally:
            if self.metrics is not None:
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                requests, latency = self.metrics
                requests.labels(scope["method"], path, str(status)).inc()
                latency.labels(scope["method"], path).observe(time.perf_counter() - t0)
