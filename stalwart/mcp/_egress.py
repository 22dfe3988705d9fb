"""The egress rules of sandboxed tools, applied to the client's own connections to an HTTP MCP server.

Every TCP connection the HTTP client opens goes through :class:`GuardedBackend`: the target
``host:port`` must be on the allowlist (the server URL's own host and port, nothing else), the name
is resolved once, every address it resolves to must be global (loopback and private addresses only
with the server's explicit ``allow_private``; link-local never), and the connection is made to the
address that was checked, so a second lookup cannot rebind the name. TLS still names the host (SNI
and certificate check) and the ``Host`` header is the URL's. Every attempt, admitted or refused, is
recorded (``on_attempt``), shaped like the entries of a sandboxed tool's egress log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore2

from stalwart.errors import ConfigError
from stalwart.sandbox import egress_decision, parse_allowlist, resolve

__all__ = ["EgressRefused", "GuardedBackend", "guarded_transport", "url_target"]


class EgressRefused(httpcore2.ConnectError):
    """A connection the egress rules refused (the message names the target, address and reason)."""


def url_target(url: str) -> str:
    """``http://h:8080/mcp`` -> ``h:8080`` (the default port of the scheme when none is given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"MCP server URL {url!r} must be http:// or https:// with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"MCP server URL {url!r} has an invalid port") from None
    host = parts.hostname
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """An httpcore network backend that admits only allowlisted, checked connections."""

    def __init__(
        self,
        allow: Iterable[str],
        *,
        allow_private: bool = False,
        on_attempt: Callable[[dict[str, Any]], None] = lambda entry: None,
        resolver: Any = None,
        inner: httpcore2.AsyncNetworkBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allow = parse_allowlist(allow)
        self.allow_private = allow_private
        self._on_attempt = on_attempt
        self._resolver = resolver or resolve
        self._inner = inner or httpcore2.AnyIOBackend()
        self._clock = clock

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        name = host.strip("[]").lower().rstrip(".")
        entry: dict[str, Any] = {"host": name, "port": port, "allowed": False, "address": None, "at": self._clock()}
        address, reason = await egress_decision(name, port, self.allow, self._resolver,
                                                allow_private=self.allow_private)
        entry["reason"] = reason
        if address is None:
            self._on_attempt(entry)
            hint = "" if self.allow_private or "not on the egress allowlist" in reason else (
                " (a server on a private or loopback address needs allow_private=True)")
            raise EgressRefused(f"egress to {name}:{port} refused: {reason}{hint}")
        entry["address"] = address
        try:
            stream = await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                   socket_options=socket_options)
        except Exception as exc:
            entry["reason"] = f"connect to {address}:{port} failed: {exc}"
            self._on_attempt(entry)
            raise
        entry["allowed"] = True
        self._on_attempt(entry)
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise EgressRefused(f"egress to the unix socket {path!r} refused: only allowlisted TCP targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(backend: GuardedBackend) -> Any:
    """An httpx2 transport whose every connection goes through ``backend``. It ignores proxy
    environment variables (``trust_env=False``): a proxy would connect on our behalf, unchecked."""
    import httpx2

    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    # httpx2's transport takes no network backend; its pool does (the same pool it builds itself).
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx2.create_ssl_context(trust_env=False), network_backend=backend,
        max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
    return transport
