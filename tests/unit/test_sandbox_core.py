"""Pure parts of the sandbox: the seccomp program (executed by a small BPF interpreter), the argv,
the outcome classifier, the runner's encoder and error mapping, the proxy's address policy."""

from __future__ import annotations

import errno
import json
import signal
import struct

import pytest

from stalwart.errors import StaleData
from stalwart.sandbox import _seccomp
from stalwart.sandbox._classify import Observed, classify
from stalwart.sandbox._command import build_argv
from stalwart.sandbox._proxy import EgressProxy, address_refusal, parse_allowlist
from stalwart.sandbox._runner import ResultInvalid, check_result, dumps, error_dict, prepare_kwargs

X86_64 = _seccomp.AUDIT_ARCH_X86_64


def run_bpf(prog: bytes, nr: int, args: tuple[int, ...] = (), arch: int = X86_64) -> int:
    """Execute a classic BPF seccomp program on one ``struct seccomp_data``."""
    a6 = list(args) + [0] * (6 - len(args))
    data = struct.pack("=iIQ6Q", nr, arch, 0, *a6)
    insns = [struct.unpack_from("=HBBI", prog, i) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == 0x06:
            return k
        elif code in (0x15, 0x35, 0x45):
            hit = acc == k if code == 0x15 else acc >= k if code == 0x35 else bool(acc & k)
            pc += 1 + (jt if hit else jf)
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


EPERM = _seccomp.RET_ERRNO | errno.EPERM
ALLOW = _seccomp.RET_ALLOW
NO_INET = _seccomp.build_filter(allow_inet=False)
INET = _seccomp.build_filter(allow_inet=True)


@pytest.mark.parametrize(
    "name",
    [
        "ptrace",
        "mount",
        "unshare",
        "setns",
        "bpf",
        "keyctl",
        "io_uring_setup",
        "perf_event_open",
        "process_vm_readv",
        "userfaultfd",
    ],
)
def test_seccomp_denies(name: str) -> None:
    assert run_bpf(NO_INET, _seccomp.DENIED_SYSCALLS[name]) == EPERM


def test_seccomp_allows_ordinary_syscalls() -> None:
    for nr in (0, 1, 2, 3, 9, 60, 231, 257):  # read write open close mmap exit exit_group openat
        assert run_bpf(NO_INET, nr) == ALLOW


def test_seccomp_clone_new_user_denied_plain_clone_allowed() -> None:
    assert run_bpf(NO_INET, _seccomp.NR_CLONE, (0x10000000 | 0x11,)) == EPERM
    assert run_bpf(NO_INET, _seccomp.NR_CLONE, (0x40000000,)) == EPERM  # CLONE_NEWNET
    assert run_bpf(NO_INET, _seccomp.NR_CLONE, (0x003D0F00,)) == ALLOW  # glibc pthread_create flags
    assert run_bpf(NO_INET, _seccomp.NR_CLONE3) == _seccomp.RET_ERRNO | errno.ENOSYS


def test_seccomp_sockets() -> None:
    unix, inet, inet6, netlink = 1, 2, 10, 16
    assert run_bpf(NO_INET, _seccomp.NR_SOCKET, (unix,)) == ALLOW
    for fam in (inet, inet6, netlink):
        assert run_bpf(NO_INET, _seccomp.NR_SOCKET, (fam,)) == _seccomp.RET_ERRNO | errno.EAFNOSUPPORT
    assert run_bpf(INET, _seccomp.NR_SOCKET, (inet,)) == ALLOW
    assert run_bpf(INET, _seccomp.NR_SOCKET, (inet6,)) == ALLOW
    assert run_bpf(INET, _seccomp.NR_SOCKET, (netlink,)) == _seccomp.RET_ERRNO | errno.EAFNOSUPPORT


def test_seccomp_foreign_abis_are_killed() -> None:
    assert run_bpf(NO_INET, 0, arch=0x40000003) == _seccomp.RET_KILL_PROCESS  # i386
    assert run_bpf(NO_INET, 0x40000000 | 101) == _seccomp.RET_KILL_PROCESS  # x32 ptrace


def test_seccomp_tiocsti() -> None:
    assert run_bpf(NO_INET, _seccomp.NR_IOCTL, (0, 0x5412)) == EPERM
    assert run_bpf(NO_INET, _seccomp.NR_IOCTL, (0, 0x5401)) == ALLOW  # TCGETS


def test_argv_isolation_flags_and_no_secrets(tmp_path) -> None:
    (tmp_path / "tools").mkdir()
    argv = build_argv(
        bwrap="/usr/bin/bwrap",
        python="/usr/bin/python3.11",
        pkg_dir="/src/stalwart",
        code_root=str(tmp_path),
        module="tools.lookup",
        site_packages=None,
        seccomp_fd=5,
        tmpfs_bytes=1 << 20,
        proxy_dir=None,
        top_links={"/lib": "usr/lib"},
    )
    for flag in (
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in argv
    assert argv[argv.index("--seccomp") + 1] == "5"
    assert argv[argv.index("--size") + 1] == str(1 << 20) and argv[argv.index("--size") + 2] == "--tmpfs"
    assert argv[argv.index("--remount-ro") + 1] == "/"
    assert "--bind" not in argv  # nothing is bound writable
    i = argv.index(str(tmp_path / "tools"))
    assert argv[i - 1 : i + 2] == ["--ro-bind", str(tmp_path / "tools"), "/opt/stalwart/code/tools"]
    assert str(tmp_path) not in argv  # only the tool's package, never the project root
    assert argv[-5:] == [
        "/usr/bin/python3.11",
        "-I",
        "-S",
        "-B",
        "/opt/stalwart/lib/stalwart/sandbox/_runner.py",
    ]


@pytest.mark.parametrize(
    "obs,code,retryable",
    [
        (Observed(None, b"", timed_out=True, timeout_s=1), "tool_timeout", True),
        (Observed(-9, b"", output_exceeded=True), "tool_output_exceeded", False),
        (Observed(137, b"", oom_killed=True), "tool_memory_exceeded", False),
        (Observed(128 + signal.SIGXCPU, b""), "tool_cpu_exceeded", False),
        (Observed(128 + signal.SIGSEGV, b""), "tool_crashed", True),
        (Observed(1, b""), "tool_crashed", True),
        (Observed(0, b"{not json"), "tool_protocol_error", False),
    ],
)
def test_classify_failures(obs: Observed, code: str, retryable: bool) -> None:
    ok, result, err = classify(obs)
    assert not ok and result is None and err is not None
    assert (err["code"], err["retryable"]) == (code, retryable)


def test_classify_reply() -> None:
    assert classify(Observed(0, b'{"ok": true, "result_json": "[1]"}')) == (True, "[1]", None)
    err = {"type": "StaleData", "code": "stale_data", "message": "m", "retryable": True}
    assert classify(Observed(0, json.dumps({"ok": False, "error": err}).encode()))[2] == err


@pytest.mark.parametrize(
    "value", [{"a": [1, 2.5, None, True, False, 'q"\\\n\u2028é\x00']}, [], "", -7, 1e300]
)
def test_runner_encoder_round_trips(value: object) -> None:
    assert json.loads(dumps(value)) == value


@pytest.mark.parametrize("value", [float("nan"), {1: 2}, object(), {"a": {1, 2}}])
def test_runner_encoder_refuses_non_json(value: object) -> None:
    with pytest.raises(ValueError):
        dumps(value)


def test_error_dict_keeps_stalwart_retryable_and_classifies_others() -> None:
    assert error_dict(StaleData("x", retryable=False))["retryable"] is False
    assert error_dict(StaleData("x"))["type"] == "StaleData"
    assert error_dict(ValueError("bad"))["retryable"] is False
    conn = error_dict(ConnectionError("reset"))
    assert (
        conn["retryable"] is True
        and conn["type"] == "ToolError"
        and conn["details"]["exception"] == "ConnectionError"
    )


def test_check_result_and_credential_injection() -> None:
    def f(x: int, *, credential: str) -> int:
        return x

    def g(x: int) -> list[int]:
        return [x]

    assert check_result(f, 3) == 3
    with pytest.raises(ResultInvalid):
        check_result(f, True)
    assert check_result(g, ["1"]) == [1]
    with pytest.raises(ResultInvalid):
        check_result(g, ["x"])
    assert prepare_kwargs(f, {"x": 1}, "tok") == {"x": 1, "credential": "tok"}
    assert prepare_kwargs(g, {"x": 1}, "tok") == {"x": 1}


@pytest.mark.parametrize(
    "ip,refused",
    [
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
        ("169.254.169.254", True),
        ("127.0.0.1", True),
        ("10.0.0.5", True),
        ("192.168.1.1", True),
        ("172.16.0.1", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),
        ("::ffff:169.254.169.254", True),
        ("224.0.0.1", True),
    ],
)
def test_address_policy(ip: str, refused: bool) -> None:
    assert (address_refusal(ip) is not None) is refused


def test_allowlist_parsing() -> None:
    assert parse_allowlist(["API.example.com:443", "[2001:db8::1]:8443"]) == {
        ("api.example.com", 443),
        ("2001:db8::1", 8443),
    }
    with pytest.raises(ValueError):
        parse_allowlist(["example.com"])


async def test_proxy_decisions_with_rebinding_resolver() -> None:
    answers = {
        "api.example.com": ["93.184.216.34"],
        "rebind.example.com": ["93.184.216.34", "169.254.169.254"],
    }

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    proxy = EgressProxy(["api.example.com:443", "rebind.example.com:443"], [], resolver=resolver)
    assert await proxy.decide("api.example.com", 443) == ("93.184.216.34", "allowlisted")
    assert (await proxy.decide("api.example.com", 80))[0] is None
    addr, why = await proxy.decide("rebind.example.com", 443)
    assert addr is None and "link-local" in why


# -- timeouts: which limit fired, and whether another attempt makes sense ------------------------
def test_cpu_bound_timeout_is_not_retryable() -> None:
    obs = Observed(None, b"", timed_out=True, timeout_s=5, cpu_s=2.1, demand_s=4.9, elapsed_s=5.0)
    ok, _, err = classify(obs)
    assert not ok and err is not None
    assert err["code"] == "tool_timeout" and err["retryable"] is False
    assert err["details"] == {"limit": "timeout", "timeout_s": 5, "cpu_s": 2.1, "cpu_share": 0.98, "cpu_bound": True}
    assert "CPU-bound" in err["message"]


def test_waiting_timeout_is_retryable() -> None:
    obs = Observed(None, b"", timed_out=True, timeout_s=5, cpu_s=0.1, demand_s=0.2, elapsed_s=5.0)
    err = classify(obs)[2]
    assert err is not None and err["retryable"] is True and err["details"]["cpu_bound"] is False


@pytest.mark.parametrize(
    "obs,limit",
    [
        (Observed(-9, b"", output_exceeded=True), "output"),
        (Observed(137, b"", oom_killed=True), "memory"),
        (Observed(128 + signal.SIGXCPU, b""), "cpu_time"),
        (Observed(128 + signal.SIGXFSZ, b""), "file_size"),
    ],
)
def test_each_limit_names_itself(obs: Observed, limit: str) -> None:
    err = classify(obs)[2]
    assert err is not None and err["details"]["limit"] == limit


# -- warm pool sizing (pure) ------------------------------------------------------------------------
def test_pool_target_size_follows_the_call_rate() -> None:
    from stalwart.sandbox._pool import KeyStats, PoolLimits, target_size

    lim = PoolLimits(per_profile_max=3, idle_s=30)
    st = KeyStats()
    assert target_size(st, 0.0, lim) == 0  # never called
    st.record_call(100.0, lim.idle_s)
    assert target_size(st, 100.0, lim) == 0  # one call is no rate
    st.record_call(110.0, lim.idle_s)
    assert target_size(st, 110.0, lim) == 1  # slow calls: one ready sandbox covers them
    for t in range(111, 140):
        st.record_call(float(t) * 0.01 + 110, lim.idle_s)
    assert target_size(st, st.last_call or 0, lim) == 3  # fast calls: capped per profile
    assert target_size(st, (st.last_call or 0) + 31, lim) == 0  # idle: drops to zero
    st.record_call((st.last_call or 0) + 100, lim.idle_s)
    assert st.interval_s is None  # a call after a quiet spell starts a new rate


def test_runner_frames_round_trip() -> None:
    import marshal

    from stalwart.sandbox._runner import frame

    data = frame({"module": "m", "kwargs": {"a": 1}})
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert marshal.loads(data[4:]) == {"module": "m", "kwargs": {"a": 1}}


def test_a_prewarm_floor_holds_while_active_and_drops_to_zero_when_idle() -> None:
    from stalwart.sandbox._pool import KeyStats, PoolLimits, target_size

    lim = PoolLimits(per_profile_max=2, idle_s=30)
    st = KeyStats(floor=8, prewarmed_at=100.0)
    assert target_size(st, 100.0, lim) == 8  # above per_profile_max: the worker's concurrency asks for it
    assert target_size(st, 129.0, lim) == 8
    assert target_size(st, 131.0, lim) == 0  # no call since the pre-warm: idle
    st.record_call(140.0, lim.idle_s)
    assert target_size(st, 140.0, lim) == 8  # called again: the floor is back
    assert target_size(st, 171.0, lim) == 0
    no_floor = KeyStats(prewarmed_at=100.0)
    assert target_size(no_floor, 100.0, lim) == 0


def test_prewarm_sizes_share_the_process_bound_fairly() -> None:
    from stalwart.sandbox._pool import prewarm_sizes

    assert prewarm_sizes({"a": 16, "b": 8}, 32) == {"a": 16, "b": 8}  # all fit
    assert prewarm_sizes({"a": 16, "b": 8, "c": 2}, 10) == {"a": 4, "b": 4, "c": 2}
    assert prewarm_sizes({"a": 5, "b": 5, "c": 5}, 2) == {"a": 1, "b": 1, "c": 0}  # one each, in order
    assert prewarm_sizes({"a": 3}, 0) == {"a": 0}
    assert sum(prewarm_sizes({"a": 64, "b": 64}, 16).values()) == 16
