"""One MCP client session to one server, held for the life of a worker, restarted when it dies.

The session is an ``async with`` stack (transport, then ``ClientSession``) that the SDK requires
to be entered and left by the same task, so a dedicated task holds it open and callers only send
requests through it. When the server exits or the connection breaks, that task ends; the next call
starts a new one after a backoff that doubles with each consecutive failure (reset by a success).

stdio servers run inside the bubblewrap sandbox (:class:`stalwart.sandbox.StdioServerSandbox`)
unless the server was declared ``sandbox="none"``. HTTP servers are reached under the egress rules
of sandboxed tools (:mod:`stalwart.mcp._egress`: only the URL's own ``host:port``, DNS resolved once
and the checked address connected, loopback/private addresses only with ``allow_private``, every
attempt in :attr:`McpSession.egress_log`), and every request carries the bearer token the caller
set for it: the per-invocation credential on a tool call, a short-lived listing credential on
``tools/list`` and on the handshake (never a caller's token: the engine passes only what its broker
minted).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stalwart.errors import ConfigError, ToolError, ToolTimeout
from stalwart.mcp._pins import ToolDefinition

__all__ = ["CallOutcome", "McpSession", "ServerSpec"]

_ENVELOPE_BYTES = 64 * 1024
"""Room for the JSON-RPC envelope around a result of ``max_result_bytes``."""

_BEARER: contextvars.ContextVar[str | None] = contextvars.ContextVar("stalwart_mcp_bearer", default=None)
_EGRESS: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar("stalwart_mcp_egress",
                                                                                      default=None)
_EGRESS_KEPT = 256
"""Egress attempts a session keeps (the newest)."""


@dataclass(frozen=True)
class ServerSpec:
    """How to reach one MCP server. Exactly one of ``command`` (stdio) and ``url`` (streamable HTTP)."""

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    scopes: tuple[str, ...] = ()
    code_dir: str | None = None
    """stdio: the directory bound read-only into the sandbox as the server's code (first on ``sys.path``)."""
    sandbox: str = "process"
    """stdio: ``process`` (bubblewrap, the default) or ``none`` (a plain subprocess; an explicit opt-in)."""
    timeout_s: float = 30.0
    max_result_bytes: int = 4 * 1024 * 1024
    """A result whose JSON is larger fails the call for good (an agent has no use for it, and every
    byte kept would be scanned and stored); smaller results over 64 KiB go to the artifact store."""
    env: dict[str, str] = field(default_factory=dict)
    allow_private: bool = False
    """HTTP: admit a server whose name resolves to a loopback or private address (never link-local)."""

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ConfigError(f"MCP server {self.name!r}: give exactly one of command=[...] (stdio) or url=... (HTTP)")
        if self.sandbox not in ("process", "none"):
            raise ConfigError(f"MCP server {self.name!r}: sandbox must be 'process' or 'none', not {self.sandbox!r}")
        if not self.name or "::" in self.name or ":" in self.name:
            raise ConfigError(f"MCP server name {self.name!r} must be non-empty and contain no ':'")
        if self.url:
            from stalwart.mcp._egress import url_target

            url_target(self.url)

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"


@dataclass
class CallOutcome:
    """A tool call's answer as JSON data: ``content`` blocks, ``structured`` content, ``is_error``."""

    content: list[dict[str, Any]]
    structured: Any
    is_error: bool

    def to_value(self) -> dict[str, Any]:
        """``{"content": [...], "structured": ...}``. With structured content, the text blocks are
        dropped: by the protocol's convention they repeat it serialised (a result is not paid twice)."""
        content = self.content
        if self.structured is not None:
            content = [b for b in content if b.get("type") != "text"]
        return {"content": content, "structured": self.structured}

    def text(self) -> str:
        return "\n".join(str(b.get("text", "")) for b in self.content if b.get("type") == "text")


class McpSession:
    """A long-lived client session to ``spec``'s server (one per app per worker process)."""

    def __init__(
        self,
        spec: ServerSpec,
        *,
        sandbox_argv: Callable[[list[str], str | None], list[str]] | None = None,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self._sandbox_argv = sandbox_argv
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._monotonic = monotonic
        self._session: Any = None
        self._holder: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._failures = 0
        self._not_before = 0.0
        self._last_error: BaseException | None = None
        self._overflow: int | None = None
        self.starts = 0
        """How many times the session was (re)started (crash recovery is visible in tests)."""
        self.egress_log: list[dict[str, Any]] = []
        """HTTP: the newest connection attempts, admitted or refused (host, port, allowed, address, reason, at)."""
        self._resolver: Any = None
        """HTTP: the DNS resolver of the egress check (tests substitute one)."""

    # -- lifecycle -------------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        argv = list(self.spec.command)
        if self.spec.sandbox == "none":
            return argv
        if self._sandbox_argv is None:
            raise ConfigError(f"MCP server {self.spec.name!r}: no sandbox to run it in")
        return self._sandbox_argv(argv, self.spec.code_dir)

    def _transport(self) -> Any:
        if self.spec.command:
            from mcp.client.stdio import get_default_environment

            from stalwart.mcp._stdio import bounded_stdio

            errlog = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
            return bounded_stdio(
                self._argv(), max_message_bytes=self.spec.max_result_bytes + _ENVELOPE_BYTES,
                on_overflow=self._overflowed, env=get_default_environment() | dict(self.spec.env),
                cwd=self.spec.code_dir if self.spec.sandbox == "none" else None, errlog=errlog)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        from stalwart.mcp._egress import GuardedBackend, guarded_transport, url_target

        class _Bearer(httpx2.Auth):
            def auth_flow(self, request: Any) -> Any:
                token = _BEARER.get()
                if token:
                    request.headers["authorization"] = f"Bearer {token}"
                yield request

        backend = GuardedBackend([url_target(self.spec.url or "")], allow_private=self.spec.allow_private,
                                 on_attempt=self._egress_attempt, resolver=self._resolver)
        client = httpx2.AsyncClient(auth=_Bearer(), timeout=httpx2.Timeout(30.0, read=300.0), trust_env=False,
                                    transport=guarded_transport(backend))
        return _with_client(client, streamable_http_client(self.spec.url or "", http_client=client))

    def _egress_attempt(self, entry: dict[str, Any]) -> None:
        self.egress_log.append(entry)
        del self.egress_log[:-_EGRESS_KEPT]
        sink = _EGRESS.get()
        if sink is not None:
            sink.append(entry)

    async def _hold(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        from mcp import ClientSession

        try:
            async with self._transport() as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                self._session = session
                self._failures = 0
                ready.set()
                await stop.wait()
        except BaseException as exc:  # noqa: BLE001 - the failure is reported to the next caller
            self._last_error = exc
        finally:
            self._session = None
            ready.set()

    async def _ensure(self) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._session is not None and self._holder is not None and not self._holder.done():
                return self._session
            if self._holder is not None and not self._holder.done():
                await self._stop_holder()
            wait = self._not_before - self._monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._ready, self._stop = asyncio.Event(), asyncio.Event()
            self._last_error = None
            self.starts += 1
            self._holder = asyncio.get_running_loop().create_task(self._hold(self._ready, self._stop))
            await self._ready.wait()
            if self._session is None:
                self._failures += 1
                delay = min(self._backoff[0] * 2 ** (self._failures - 1), self._backoff[1])
                self._not_before = self._monotonic() + delay
                why = self._last_error
                raise ToolError(
                    f"MCP server {self.spec.name!r} did not start: {type(why).__name__}: {_first(why)}",
                    retryable=True, retry_after=delay,
                ) from None
            return self._session

    async def aclose(self) -> None:
        """End the session; the server process (and everything it started) is stopped."""
        await self._stop_holder()
        self._session = None

    async def _stop_holder(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._holder is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._holder, 10)
        self._holder = None

    # -- requests --------------------------------------------------------------------------------
    async def list_tools(self, *, bearer: str | None = None) -> list[ToolDefinition]:
        """Every tool the server lists now (all pages). Listing is idempotent: a connection found
        closed (the server died since the last request) is restarted and the listing tried once more.
        ``bearer`` (HTTP) goes with the listing, and with the handshake when the session starts here."""
        token = _BEARER.set(bearer)
        try:
            try:
                return await self._list_tools()
            except _ConnectionClosed:
                await self._restart()
                return await self._list_tools()
        finally:
            _BEARER.reset(token)

    async def _list_tools(self) -> list[ToolDefinition]:
        session = await self._ensure()
        out: list[ToolDefinition] = []
        cursor = None
        try:
            while True:
                from mcp.types import PaginatedRequestParams

                page = await asyncio.wait_for(
                    session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None),
                    self.spec.timeout_s)
                for t in page.tools:
                    ann = t.annotations.model_dump(exclude_none=True, by_alias=True) if t.annotations is not None else {}
                    out.append(ToolDefinition(t.name, t.description or "", dict(t.input_schema or {}), ann))
                cursor = page.next_cursor
                if not cursor:
                    return out
        except TimeoutError:
            await self._restart()
            raise ToolError(f"MCP server {self.spec.name!r} did not list its tools within {self.spec.timeout_s}s",
                            retryable=True) from None
        except Exception as exc:  # noqa: BLE001 - SDK and transport errors are translated at this boundary
            if _closed(exc):
                raise _ConnectionClosed from None
            raise self._translate(exc, "tools/list") from None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, timeout_s: float, bearer: str | None = None,
        egress: list[dict[str, Any]] | None = None,
    ) -> CallOutcome:
        """Call ``name``; on timeout the server is told to cancel (``notifications/cancelled``).
        ``bearer`` (HTTP) goes with the call, and with the handshake when the session starts here;
        connection attempts made for it are appended to ``egress`` too."""
        token = _BEARER.set(bearer)
        sink = _EGRESS.set(egress)
        try:
            session = await self._ensure()
            try:
                result = await asyncio.wait_for(
                    session.call_tool(name, arguments, read_timeout_seconds=timeout_s), timeout_s + 1.0)
            except TimeoutError:
                await self._restart()  # the SDK did not give up in time: the server is stuck, start afresh
                raise ToolTimeout(f"MCP tool {self.spec.name}::{name} did not return within {timeout_s}s",
                                  details={"limit": "timeout", "timeout_s": timeout_s}) from None
            except Exception as exc:  # noqa: BLE001 - SDK and transport errors are translated at this boundary
                raise self._translate(exc, name, timeout_s) from None
        finally:
            _EGRESS.reset(sink)
            _BEARER.reset(token)
        content = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in result.content]
        structured = getattr(result, "structured_content", None)
        return CallOutcome(content, structured, bool(getattr(result, "is_error", False)))

    def _overflowed(self, size: int) -> None:
        self._overflow = size

    async def _restart(self) -> None:
        await self.aclose()

    def _translate(self, exc: Exception, what: str, timeout_s: float | None = None) -> Exception:
        from mcp import MCPError

        if self._overflow is not None:
            size, self._overflow = self._overflow, None
            self._session = None
            return ToolError(f"MCP server {self.spec.name!r} sent a message of over {size} bytes during {what} "
                             f"(limit {self.spec.max_result_bytes} bytes): the server was stopped",
                             retryable=False, details={"limit": "result_bytes"})
        if _closed(exc):
            self._session = None  # the server is gone: the next request starts a new one
            return ToolError(f"MCP server {self.spec.name!r} went away during {what}", retryable=True)
        if isinstance(exc, MCPError):
            if timeout_s is not None and "timed out" in str(exc.error.message):
                return ToolTimeout(f"MCP tool {self.spec.name}::{what} did not return within {timeout_s}s "
                                   "(the server was told to cancel)",
                                   details={"limit": "timeout", "timeout_s": timeout_s})
            return ToolError(f"MCP server {self.spec.name!r} answered {what} with error {exc.error.code}: "
                             f"{exc.error.message[:300]}", retryable=False)
        if self._holder is None or self._holder.done():  # the connection died under the request
            return ToolError(f"MCP server {self.spec.name!r} went away during {what}: {type(exc).__name__}",
                             retryable=True)
        return ToolError(f"MCP server {self.spec.name!r}: {what} failed: {type(exc).__name__}: {_first(exc)}",
                         retryable=True)


class _ConnectionClosed(Exception):
    pass


def _closed(exc: BaseException) -> bool:
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED

    return isinstance(exc, MCPError) and exc.error.code == CONNECTION_CLOSED


def _first(exc: BaseException | None) -> str:
    """The innermost message of a (possibly grouped) exception, one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc).splitlines()[0][:300] if exc is not None and str(exc) else ""


@contextlib.asynccontextmanager
async def _with_client(client: Any, transport: Any) -> Any:
    async with client, transport as streams:
        yield streams
