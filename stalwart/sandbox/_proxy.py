"""The host-side egress proxy: HTTP CONNECT over a unix socket that is bind-mounted into one sandbox.

It admits only ``host:port`` pairs on the tool's allowlist, resolves DNS itself, refuses any name
that resolves to a private, loopback, link-local (cloud metadata) or otherwise non-global address,
and then connects to the address it checked, so a second lookup cannot rebind the name. Every
attempt, admitted or refused, is appended to the invocation's egress log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["Connector", "EgressProxy", "Resolver", "address_refusal", "egress_decision", "parse_allowlist", "resolve"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
Connector = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

_MAX_HEAD = 8192


def parse_allowlist(entries: Iterable[str]) -> set[tuple[str, int]]:
    """``["api.example.com:443", "[2001:db8::1]:443"]`` -> ``{("api.example.com", 443), ...}``."""
    out: set[tuple[str, int]] = set()
    for entry in entries:
        host, port = split_target(entry)
        out.add((host, port))
    return out


def split_target(target: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 in brackets); raises ``ValueError`` when malformed."""
    host, sep, port_s = target.strip().rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"egress entry {target!r} is not host:port")
    host = host.strip("[]").lower().rstrip(".")
    return host, int(port_s)


def address_refusal(ip: str) -> str | None:
    """Why ``ip`` may not be reached from a tool, or ``None`` when it is a public address."""
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return f"{ip} is a loopback address"
    if addr.is_link_local:
        return f"{ip} is link-local (cloud metadata lives here)"
    if addr.is_private:
        return f"{ip} is a private address"
    if addr.is_multicast or addr.is_unspecified or addr.is_reserved or not addr.is_global:
        return f"{ip} is not a global address"
    return None


def _private_ok(ip: str) -> bool:
    """A loopback or private (RFC 1918, ULA) address: what an explicit ``allow_private`` admits.
    Link-local (cloud metadata), multicast and unspecified addresses are never admitted."""
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_link_local or addr.is_multicast or addr.is_unspecified:
        return False
    return addr.is_loopback or addr.is_private


async def egress_decision(
    host: str, port: int, allow: set[tuple[str, int]], resolver: Resolver, *, allow_private: bool = False
) -> tuple[str | None, str]:
    """Decide one egress attempt: ``(address, reason)``, ``address`` being the one checked address to
    connect to (no second lookup), or ``None`` when refused. ``host:port`` must be on ``allow``; every
    address the name resolves to must be global (or, with ``allow_private``, loopback or private)."""
    host = host.strip("[]").lower().rstrip(".")
    if (host, port) not in allow:
        return None, "not on the egress allowlist"
    try:
        ips = await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        return None, f"DNS lookup failed: {exc}"
    if not ips:
        return None, "DNS returned no address"
    for ip in ips:
        why = address_refusal(ip)
        if why and not (allow_private and _private_ok(ip)):
            return None, f"{host} resolves to {why}"
    return ips[0], "allowlisted"


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (one lookup), in the resolver's order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        ip = str(info[4][0])
        if ip not in seen:
            seen.append(ip)
    return seen


async def _connect(ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(ip, port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class EgressProxy:
    """One proxy per sandboxed invocation; ``log`` is the invocation's egress log."""

    def __init__(
        self,
        allow: Iterable[str],
        log: list[dict[str, Any]],
        *,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
        clock: Callable[[], float] = time.time,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.allow = parse_allowlist(allow)
        self.log = log
        self._resolver = resolver or resolve
        self._connector = connector or _connect
        self._clock = clock
        self._connect_timeout_s = connect_timeout_s
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, path: str) -> None:
        """Listen on the unix socket ``path`` (its directory limits who may connect)."""
        self._server = await asyncio.start_unix_server(self._handle, path=path)
        os.chmod(path, 0o666)

    async def close(self) -> None:
        """Stop listening and tear down every open tunnel."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def decide(self, host: str, port: int) -> tuple[str | None, str]:
        """Return ``(address, reason)``; ``address`` is ``None`` when refused."""
        return await egress_decision(host, port, self.allow, self._resolver)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (
            TimeoutError,
            ConnectionError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if len(head) > _MAX_HEAD:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        entry: dict[str, Any] = {
            "host": None,
            "port": None,
            "allowed": False,
            "address": None,
            "at": self._clock(),
        }
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            entry["reason"] = f"only CONNECT is supported, got {parts[0] if parts else '?'!r}"
            self.log.append(entry)
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            host, port = split_target(parts[1])
        except ValueError as exc:
            entry["reason"] = str(exc)
            self.log.append(entry)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        entry.update(host=host, port=port)
        address, reason = await self.decide(host, port)
        entry["reason"] = reason
        if address is None:
            self.log.append(entry)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        entry["address"] = address
        try:
            up_reader, up_writer = await asyncio.wait_for(
                self._connector(address, port), self._connect_timeout_s
            )
        except (TimeoutError, OSError) as exc:
            entry["reason"] = f"connect to {address}:{port} failed: {exc}"
            self.log.append(entry)
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        entry["allowed"] = True
        self.log.append(entry)
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
