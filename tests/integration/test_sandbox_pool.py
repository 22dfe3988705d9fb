"""The single-use warm pool against real bubblewrap: pooled calls, what is discarded, timeouts that
mean it, and escape attempts aimed at the pool (state left for the next call, another call's
arguments or credential, a process outliving its call)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from stalwart.sandbox import BwrapSandbox, SandboxLimits, ToolInvocation, ToolOutcome
from stalwart.settings import SandboxSettings

pytestmark = pytest.mark.bwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ESCAPE = "tests.integration.sandbox_tools.escape"
BASIC = "tests.integration.sandbox_tools.basic"


def inv(fn: str, module: str = ESCAPE, timeout_s: float = 20.0, **kwargs: object) -> ToolInvocation:
    return ToolInvocation(
        tool_name=fn, module=module, qualname=fn, code_root=ROOT, kwargs_json=json.dumps(kwargs), timeout_s=timeout_s
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sandbox(clock: Clock) -> AsyncIterator[BwrapSandbox]:
    assert shutil.which("bwrap"), "bubblewrap is required for these tests: apt-get install bubblewrap"
    sb = BwrapSandbox(monotonic=clock)
    yield sb
    await sb.aclose()
    assert sb.pool.ready_count() == 0


async def warm(sb: BwrapSandbox, i: ToolInvocation, clock: Clock) -> None:
    """Two calls give the profile a call rate; wait until its entry is ready."""
    for _ in range(2):
        clock.t += 1.0
        out = await sb.run(i)
        assert not out.pooled or out.ok or out.error
    await sb.pool.settle()
    assert sb.pool.ready_count() >= 1


def dying(pid: int) -> bool:
    """Gone, a zombie, or with SIGKILL pending: nothing of it runs again."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return True
    if fields.get("State", "").split()[:1] in (["Z"], ["X"]):
        return True
    sigkill = 1 << (9 - 1)
    return any(int(fields.get(k, "0").strip(), 16) & sigkill for k in ("SigPnd", "ShdPnd"))


async def pooled_run(sb: BwrapSandbox, i: ToolInvocation, clock: Clock) -> ToolOutcome:
    await sb.pool.settle()
    clock.t += 1.0
    out = await sb.run(i)
    assert out.pooled, "expected the call to be served from the warm pool"
    return out


async def test_a_pooled_sandbox_serves_one_call_and_is_replaced(sandbox: BwrapSandbox, clock: Clock) -> None:
    i = inv("echo", module=BASIC, value="hi")
    first = await sandbox.run(i)
    assert first.ok and not first.pooled
    await warm(sandbox, i, clock)
    entries = [x for xs in sandbox.pool.entries.values() for x in xs]
    out = await pooled_run(sandbox, i, clock)
    assert out.ok and json.loads(out.result_json or "") == {"value": "hi"}
    used = [x for x in entries if x.used]
    assert used and not any(x.alive for x in used)
    assert all(dying(x.proc.pid) for x in used)  # SIGKILLed before the call returned
    await sandbox.pool.settle()  # reaped off the call's path
    assert all(x.destroyed and x.proc.returncode is not None for x in used)
    assert sandbox.pool.ready_count() >= 1  # refilled in the background
    # other tools of the same module share the profile; arguments arrive only with the call
    out = await pooled_run(sandbox, inv("async_add", module=BASIC, a=2, b=3), clock)
    assert out.ok and out.result_json == "5"


async def test_aged_entries_are_discarded(sandbox: BwrapSandbox, clock: Clock) -> None:
    i = inv("echo", module=BASIC, value="x")
    await warm(sandbox, i, clock)
    clock.t += SandboxSettings().pool_max_age_s + 1
    sandbox.pool.stats[next(iter(sandbox.pool.stats))].last_call = clock.t  # still busy, only old
    out = await sandbox.run(i)
    assert out.ok and not out.pooled


async def test_idle_profiles_drop_to_zero(sandbox: BwrapSandbox, clock: Clock) -> None:
    i = inv("echo", module=BASIC, value="x")
    await warm(sandbox, i, clock)
    clock.t += SandboxSettings().pool_idle_s + 1
    sandbox.pool.sweep()
    assert sandbox.pool.ready_count() == 0


def _write_module(path: str, version: int) -> None:
    with open(path, "w") as f:
        f.write(f"def version() -> int:\n    return {version}\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)


async def test_entries_of_changed_code_are_discarded(clock: Clock) -> None:
    root = tempfile.mkdtemp(prefix="stalwart-pool-test-")
    try:
        os.chmod(root, 0o755)
        path = os.path.join(root, "pool_tool_mod.py")
        _write_module(path, 1)
        sb = BwrapSandbox(monotonic=clock)
        try:
            i = ToolInvocation(
                tool_name="version", module="pool_tool_mod", qualname="version", code_root=root, kwargs_json="{}"
            )
            await warm(sb, i, clock)
            _write_module(path, 2)
            clock.t += 1.0
            out = await sb.run(i)
            assert out.ok and out.result_json == "2" and not out.pooled
        finally:
            await sb.aclose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_pool_off_means_every_call_cold(clock: Clock) -> None:
    sb = BwrapSandbox(SandboxSettings(pool_max_processes=0), monotonic=clock)
    try:
        i = inv("echo", module=BASIC, value="x")
        for _ in range(3):
            clock.t += 1.0
            assert not (await sb.run(i)).pooled
        await sb.pool.settle()
        assert sb.pool.ready_count() == 0
    finally:
        await sb.aclose()


# -- timeouts that mean it ---------------------------------------------------------------------
async def test_cpu_bound_tool_is_killed_at_its_timeout_and_not_retryable(sandbox: BwrapSandbox) -> None:
    i = replace(inv("cpu_spin", timeout_s=2.0), limits=SandboxLimits(cpu_s=60))
    out = await sandbox.run(i)
    assert not out.ok and out.error is not None
    err = out.error
    assert err["type"] == "ToolTimeout" and err["code"] == "tool_timeout", err
    assert err["details"]["limit"] == "timeout" and err["details"]["cpu_bound"] is True, err
    assert err["retryable"] is False


async def test_waiting_tool_timeout_stays_retryable(sandbox: BwrapSandbox) -> None:
    out = await sandbox.run(inv("never_returns", timeout_s=1.0))
    err = out.error or {}
    assert err.get("code") == "tool_timeout" and err["details"]["cpu_bound"] is False, err
    assert err["retryable"] is True


async def test_cpu_bound_timeout_in_a_pooled_sandbox(sandbox: BwrapSandbox, clock: Clock) -> None:
    i = replace(inv("cpu_spin", timeout_s=2.0), limits=SandboxLimits(cpu_s=60))
    await warm(sandbox, replace(inv("threads_work"), limits=SandboxLimits(cpu_s=60)), clock)
    out = await pooled_run(sandbox, i, clock)
    err = out.error or {}
    assert err.get("code") == "tool_timeout" and err["details"]["cpu_bound"] is True, err
    assert err["retryable"] is False


# -- escape attempts aimed at the pool ---------------------------------------------------------
async def test_nothing_left_behind_for_the_next_call(sandbox: BwrapSandbox, clock: Clock) -> None:
    token = secrets.token_hex(8)
    await warm(sandbox, inv("threads_work"), clock)
    left = await pooled_run(sandbox, inv("leave_behind", token=token), clock)
    assert left.ok and "/tmp/leftover" in json.loads(left.result_json or "[]")  # the write itself worked
    out = await pooled_run(sandbox, inv("find_leftovers"), clock)
    assert not out.ok, f"the next call found state: {out.result_json}"
    assert (out.error or {}).get("details", {}).get("exception") == "LookupError", out.error


async def test_a_call_cannot_read_another_calls_arguments_or_credential(
    sandbox: BwrapSandbox, clock: Clock
) -> None:
    secret = "s3cr3t-" + secrets.token_hex(8)
    await warm(sandbox, inv("threads_work"), clock)
    victim = replace(inv("echo_credential_len", secret=secret), credential=f"cred-{secret}")
    # the victim runs while the next pooled sandbox is already waiting; then the attacker gets it
    out = await sandbox.run(victim)
    assert out.ok, out.error
    attacker = await pooled_run(sandbox, inv("snoop", secret=secret), clock)
    assert not attacker.ok, f"another call's secret was visible: {attacker.result_json}"
    assert (attacker.error or {}).get("details", {}).get("exception") == "LookupError", attacker.error


def _host_processes_with(arg: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if arg.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


async def test_no_process_outlives_its_call(sandbox: BwrapSandbox, clock: Clock) -> None:
    token = f"{3000 + secrets.randbelow(1000)}.{secrets.randbelow(10**6):06d}"
    await warm(sandbox, inv("threads_work"), clock)
    out = await pooled_run(sandbox, inv("keep_alive", token=token), clock)
    assert out.ok, out.error  # the tool did start its detached process
    # killed when the reply came, before the call returned; reaped in the background
    assert all(dying(pid) for pid in _host_processes_with(token)), "a process from the call is still running"
    await sandbox.pool.settle()
    assert _host_processes_with(token) == [], "a process from the call outlived its reaping"


def test_keep_alive_control_outside_the_sandbox() -> None:
    """Control: the same probe, run as a plain process, does leave a survivor behind."""
    import subprocess
    import sys

    token = f"{4000 + secrets.randbelow(1000)}.{secrets.randbelow(10**6):06d}"
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from {ESCAPE} import keep_alive; keep_alive({token!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    pids = _host_processes_with(token)
    try:
        assert pids, "the control should have left a process running"
    finally:
        for pid in pids:
            os.kill(pid, 9)


async def test_framework_bytecode_is_precompiled_and_read_only(sandbox: BwrapSandbox) -> None:
    out = await sandbox.run(inv("framework_bytecode", module=BASIC))
    assert out.ok, out.error
    got = json.loads(out.result_json or "{}")
    assert got["cached"].startswith("/opt/stalwart/lib/stalwart/")
    assert got["exists"] is True and got["writable"] is False


async def test_the_janitor_watches_every_ready_entry(sandbox: BwrapSandbox, clock: Clock) -> None:
    """Idle entries are reaped without another call: a sweeper runs while the pool holds any."""
    await warm(sandbox, inv("echo", module=BASIC, value="x"), clock)
    janitor = sandbox.pool._janitor
    assert janitor is not None and not janitor.done()


def test_a_loop_that_ends_during_a_refill_does_not_hang(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``asyncio.run`` returning while the pool starts a sandbox (no ``aclose``) must not hang the
    process: asyncio's own subprocess start waits forever when teardown cancels it half-way."""
    import subprocess
    import sys

    script = tmp_path / "refill_at_exit.py"
    script.write_text(
        "import asyncio, json, sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from stalwart.sandbox import BwrapSandbox, ToolInvocation\n"
        "sb = BwrapSandbox()\n"
        f"inv = ToolInvocation(tool_name='echo', module={BASIC!r}, qualname='echo', code_root={ROOT!r},"
        " kwargs_json='{\"value\": \"x\"}')\n"
        "async def main():\n"
        "    for _ in range(2):\n"
        "        assert (await sb.run(inv)).ok\n"
        "    await asyncio.sleep(0)  # the refill has begun starting a sandbox\n"
        "asyncio.run(main())\n"
        "asyncio.run(main())\n"
        "print('exited')\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "exited", out.stderr[-2000:]


async def test_the_pool_is_bounded_in_processes_and_memory(clock: Clock) -> None:
    one = BwrapSandbox(SandboxSettings(pool_max_processes=1), monotonic=clock)
    tiny = BwrapSandbox(SandboxSettings(pool_max_memory_mb=1), monotonic=clock)
    try:
        for fn in ("echo", "async_add"):  # two profiles: BASIC with default and with other limits
            i = inv(fn, module=BASIC, value="x") if fn == "echo" else inv(fn, module=BASIC, a=1, b=2)
            if fn == "async_add":
                i = replace(i, limits=SandboxLimits(memory_mb=300))
            for _ in range(3):
                clock.t += 1.0
                assert (await one.run(i)).ok
                assert (await tiny.run(i)).ok
            await one.pool.settle()
            await tiny.pool.settle()
        assert one.pool.ready_count() == 1  # one process in all, although two profiles want one each
        assert tiny.pool.ready_count() == 0  # not even one sandbox fits in 1 MiB
        [entry] = [x for xs in one.pool.entries.values() for x in xs]
        assert entry.rss_bytes > 1024 * 1024  # measured from the host
    finally:
        await one.aclose()
        await tiny.aclose()
