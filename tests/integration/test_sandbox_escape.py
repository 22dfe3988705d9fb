"""Escape suite: every attempt runs in the real bubblewrap sandbox and must come back as a
contained tool error naming the specific control that stopped it. Where it makes sense, a control
test runs the same probe with InProcessSandbox and shows that it succeeds there, so these tests
would fail if isolation were switched off."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from stalwart.sandbox import BwrapSandbox, InProcessSandbox, SandboxLimits, ToolInvocation, ToolOutcome

pytestmark = pytest.mark.bwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = "tests.integration.sandbox_tools.escape"
SECRET_ENV = "STALWART_ESCAPE_TEST_SECRET"


def inv(
    fn: str, timeout_s: float = 20.0, egress: list[str] | None = None, **kwargs: object
) -> ToolInvocation:
    return ToolInvocation(
        tool_name=fn,
        module=MODULE,
        qualname=fn,
        code_root=ROOT,
        kwargs_json=json.dumps(kwargs),
        timeout_s=timeout_s,
        egress=egress or [],
    )


def contained(out: ToolOutcome, *, exception: str | None = None, code: str | None = None) -> dict:
    assert not out.ok, f"escape attempt succeeded: {out.result_json}"
    assert out.error is not None
    if exception is not None:
        assert out.error.get("details", {}).get("exception") == exception, out.error
    if code is not None:
        assert out.error["code"] == code, out.error
    return out.error


async def _resolver(host: str, port: int) -> list[str]:
    return {"rebind.example.com": ["169.254.169.254"], "api.example.com": ["93.184.216.34"]}.get(host, [])


_COLD: BwrapSandbox | None = None


class PooledOnly:
    """Runs each attempt in a sandbox taken from the warm pool: the attempt's profile (limits,
    egress) is warmed first with a harmless call, and the attempt must be served pooled."""

    def __init__(self) -> None:
        self.clock = 1000.0
        self.sb = BwrapSandbox(resolver=_resolver, monotonic=lambda: self.clock)

    async def run(self, i: ToolInvocation) -> ToolOutcome:
        harmless = replace(i, qualname="threads_work", tool_name="threads_work", kwargs_json="{}", timeout_s=60)
        for _ in range(2):
            self.clock += 1.0
            assert (await self.sb.run(harmless)).ok
        await self.sb.pool.settle()
        self.clock += 1.0
        out = await self.sb.run(i)
        assert out.pooled, "the attempt was not served by a pooled sandbox"
        return out


@pytest.fixture(params=["cold", "pooled"])
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[BwrapSandbox | PooledOnly]:
    """Every attempt runs twice: in a cold sandbox, and in one that waited in the warm pool."""
    global _COLD
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    if request.param == "cold":
        if _COLD is None:
            _COLD = BwrapSandbox(resolver=_resolver, pool=False)
            _COLD.preflight()
        yield _COLD
        return
    pooled = PooledOnly()
    yield pooled
    await pooled.sb.aclose()


# -- network ---------------------------------------------------------------------------------
@pytest.mark.parametrize("host,port", [("1.1.1.1", 53), ("169.254.169.254", 80)])
async def test_direct_connections_are_refused_by_seccomp(sandbox: BwrapSandbox | PooledOnly, host: str, port: int) -> None:
    err = contained(await sandbox.run(inv("connect_direct", host=host, port=port)), exception="OSError")
    assert "Errno 97" in err["message"]  # EAFNOSUPPORT: no AF_INET sockets without an allowlist


@pytest.mark.parametrize("host,port", [("1.1.1.1", 53), ("169.254.169.254", 80)])
async def test_direct_connections_with_egress_have_no_route(
    sandbox: BwrapSandbox | PooledOnly, host: str, port: int
) -> None:
    out = await sandbox.run(inv("connect_direct", egress=["api.example.com:443"], host=host, port=port))
    err = contained(out, exception="OSError")
    assert "Errno 101" in err["message"]  # ENETUNREACH: the namespace only has loopback
    assert out.egress_log == []


async def test_non_allowlisted_host_through_proxy(sandbox: BwrapSandbox | PooledOnly) -> None:
    out = await sandbox.run(
        inv("connect_via_proxy", egress=["api.example.com:443"], host="evil.example.com", port=443)
    )
    err = contained(out, exception="PermissionError")
    assert "403" in err["message"]
    assert [(e["host"], e["port"], e["allowed"], e["reason"]) for e in out.egress_log] == [
        ("evil.example.com", 443, False, "not on the egress allowlist")
    ]


async def test_dns_rebinding_to_metadata_through_proxy(sandbox: BwrapSandbox | PooledOnly) -> None:
    out = await sandbox.run(
        inv("connect_via_proxy", egress=["rebind.example.com:80"], host="rebind.example.com", port=80)
    )
    err = contained(out, exception="PermissionError")
    assert "403" in err["message"]
    (entry,) = out.egress_log
    assert entry["allowed"] is False and "169.254.169.254 is link-local" in entry["reason"]


# -- filesystem and secrets ------------------------------------------------------------------
async def test_reading_root_home(sandbox: BwrapSandbox | PooledOnly) -> None:
    contained(await sandbox.run(inv("list_dir", path="/root")), exception="FileNotFoundError")


async def test_reading_root_home_in_process_control() -> None:
    out = await InProcessSandbox().run(inv("list_dir", path="/root"))
    assert out.ok, out.error


async def test_reading_etc_shadow(sandbox: BwrapSandbox | PooledOnly) -> None:
    contained(await sandbox.run(inv("read_file", path="/etc/shadow")), exception="FileNotFoundError")


async def test_reading_etc_shadow_in_process_control() -> None:
    out = await InProcessSandbox().run(inv("read_file", path="/etc/shadow"))
    assert out.ok and "root:" in json.loads(out.result_json or '""')


async def test_host_environment_secrets(sandbox: BwrapSandbox | PooledOnly, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "hunter2")
    err = contained(await sandbox.run(inv("find_env_secret", name=SECRET_ENV)), exception="LookupError")
    assert "hunter2" not in json.dumps(err)


async def test_host_environment_secrets_in_process_control(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "hunter2")
    out = await InProcessSandbox().run(inv("find_env_secret", name=SECRET_ENV))
    assert out.ok and json.loads(out.result_json or '""') == "hunter2"


@pytest.mark.parametrize("path", ["/opt/stalwart/code/pwned", "/pwned", "/usr/pwned", "/opt/stalwart/lib/x"])
async def test_writing_outside_tmpfs(sandbox: BwrapSandbox | PooledOnly, path: str) -> None:
    err = contained(await sandbox.run(inv("write_file", path=path)), exception="OSError")
    assert "Errno 30" in err["message"]  # EROFS
    assert not os.path.exists(os.path.join(ROOT, "pwned"))


async def test_filling_the_tmpfs(sandbox: BwrapSandbox | PooledOnly) -> None:
    i = replace(inv("fill_tmp", chunk_mb=4, max_files=100), limits=SandboxLimits(tmpfs_mb=8, file_mb=6))
    err = contained(await sandbox.run(i), exception="OSError")
    assert "Errno 28" in err["message"]  # ENOSPC


async def test_file_size_limit(sandbox: BwrapSandbox | PooledOnly) -> None:
    i = replace(inv("big_file", mb=20), limits=SandboxLimits(tmpfs_mb=64, file_mb=4))
    err = contained(await sandbox.run(i), exception="OSError")
    assert "Errno 27" in err["message"]  # EFBIG


# -- resources ---------------------------------------------------------------------------------
async def test_fork_bomb_is_bounded(sandbox: BwrapSandbox | PooledOnly) -> None:
    i = replace(inv("fork_bomb", limit=5000), limits=SandboxLimits(max_procs=24, uid_nproc=200))
    err = contained(await sandbox.run(i))
    m = re.search(r"fork failed after (\d+): errno 11", err["message"])
    assert m, err
    assert int(m.group(1)) < 200


async def test_memory_bomb_is_bounded(sandbox: BwrapSandbox | PooledOnly) -> None:
    i = replace(inv("memory_bomb", max_mb=8192), limits=SandboxLimits(memory_mb=256))
    out = await sandbox.run(i)
    err = contained(out)
    assert (
        err.get("details", {}).get("exception") == "MemoryError" or err["code"] == "tool_memory_exceeded"
    ), err
    assert err["retryable"] is False


async def test_cpu_spin_is_bounded(sandbox: BwrapSandbox | PooledOnly) -> None:
    i = replace(inv("cpu_spin", timeout_s=30), limits=SandboxLimits(cpu_s=1))
    err = contained(await sandbox.run(i), code="tool_cpu_exceeded")
    assert err["retryable"] is False


# -- kernel attack surface ---------------------------------------------------------------------
async def test_ptrace_of_sandbox_pid1(sandbox: BwrapSandbox | PooledOnly) -> None:
    err = contained(await sandbox.run(inv("ptrace_attach", target="pid1")), exception="PermissionError")
    assert "ptrace(1): Operation not permitted" in err["message"]


async def test_ptrace_of_own_child(sandbox: BwrapSandbox | PooledOnly) -> None:
    err = contained(await sandbox.run(inv("ptrace_attach", target="child")), exception="PermissionError")
    assert "Operation not permitted" in err["message"]


async def test_ptrace_in_process_control() -> None:
    out = await InProcessSandbox().run(inv("ptrace_attach", target="child"))
    assert out.ok, out.error


async def test_new_user_namespace(sandbox: BwrapSandbox | PooledOnly) -> None:
    err = contained(await sandbox.run(inv("new_user_namespace")), exception="PermissionError")
    assert "Operation not permitted" in err["message"]


async def test_new_user_namespace_in_process_control() -> None:
    out = await InProcessSandbox().run(inv("new_user_namespace"))
    assert out.ok, out.error


async def test_threads_still_work_with_clone3_refused(sandbox: BwrapSandbox | PooledOnly) -> None:
    out = await sandbox.run(inv("threads_work"))
    assert out.ok and out.result_json == "1", out.error


# -- output and time ---------------------------------------------------------------------------
async def test_flooding_stdout(sandbox: BwrapSandbox | PooledOnly) -> None:
    i = replace(inv("flood_stdout"), limits=SandboxLimits(max_output_bytes=200_000))
    err = contained(await sandbox.run(i), code="tool_output_exceeded")
    assert err["retryable"] is False


async def test_tool_that_never_returns(sandbox: BwrapSandbox | PooledOnly) -> None:
    err = contained(await sandbox.run(inv("never_returns", timeout_s=1.0)), code="tool_timeout")
    assert err["type"] == "ToolTimeout" and err["retryable"] is True


async def test_project_root_is_not_visible(sandbox: BwrapSandbox | PooledOnly) -> None:
    """Only the tool's package is bound: the project's .git, .env and database stay outside."""
    err = contained(
        await sandbox.run(inv("list_dir", path="/opt/stalwart/code/.git")), exception="FileNotFoundError"
    )
    assert ".git" in err["message"]
    out = await sandbox.run(inv("list_dir", path="/opt/stalwart/code"))
    assert out.ok and json.loads(out.result_json or "[]") == ["tests"]
