"""The egress check on an HTTP MCP server's connections (stalwart.mcp._egress), with a scripted
resolver and a recording network backend: the checked address is the one connected, a name that
rebinds to a loopback address between connections is refused, link-local never passes."""

from __future__ import annotations

from typing import Any

import httpcore2
import pytest

from stalwart.errors import ConfigError
from stalwart.mcp import ServerSpec
from stalwart.mcp._egress import EgressRefused, GuardedBackend, url_target


class Recording(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, **_: Any) -> httpcore2.AsyncNetworkStream:
        self.connected.append((host, port))
        return httpcore2.AsyncNetworkStream()  # never read: the test only looks at where it connected


def scripted(*answers: list[str]) -> Any:
    queue = list(answers)

    async def resolver(host: str, port: int) -> list[str]:
        return queue.pop(0)

    return resolver


async def test_the_checked_address_is_connected_and_a_rebinding_is_refused() -> None:
    inner, log = Recording(), []
    backend = GuardedBackend(["mcp.example.com:443"], on_attempt=log.append, inner=inner,
                             resolver=scripted(["93.184.216.34"], ["127.0.0.1"]))
    await backend.connect_tcp("mcp.example.com", 443)
    with pytest.raises(EgressRefused, match=r"mcp\.example\.com:443 refused: .*127\.0\.0\.1 is a loopback address"):
        await backend.connect_tcp("mcp.example.com", 443)
    assert inner.connected == [("93.184.216.34", 443)]  # the address, not the name: no second lookup
    assert [(e["allowed"], e["address"]) for e in log] == [(True, "93.184.216.34"), (False, None)]


async def test_only_the_allowlisted_target_and_never_link_local() -> None:
    inner = Recording()
    backend = GuardedBackend(["mcp.example.com:443"], allow_private=True, inner=inner,
                             resolver=scripted(["10.0.0.5"], ["10.0.0.5", "169.254.169.254"]))
    with pytest.raises(EgressRefused, match="not on the egress allowlist"):
        await backend.connect_tcp("mcp.example.com", 80)
    with pytest.raises(EgressRefused, match="not on the egress allowlist"):
        await backend.connect_tcp("other.example.com", 443)
    await backend.connect_tcp("mcp.example.com", 443)  # private, admitted by the opt-in
    with pytest.raises(EgressRefused, match="169.254.169.254 is link-local"):
        await backend.connect_tcp("mcp.example.com", 443)
    with pytest.raises(EgressRefused, match="unix socket"):
        await backend.connect_unix_socket("/run/docker.sock")
    assert inner.connected == [("10.0.0.5", 443)]


def test_the_server_url_names_the_allowlisted_target() -> None:
    assert url_target("https://crm.example/mcp") == "crm.example:443"
    assert url_target("http://127.0.0.1:8123/mcp") == "127.0.0.1:8123"
    assert url_target("http://[::1]:9000/mcp") == "[::1]:9000"
    for bad in ("ftp://crm.example/mcp", "crm.example/mcp", "http://crm.example:99999/mcp"):
        with pytest.raises(ConfigError):
            ServerSpec(name="crm", url=bad)
