"""The seccomp filter loaded by bwrap (``--seccomp FD``), built as raw classic BPF.

Why not libseccomp: the policy is a short deny list, so the program is ~60 instructions that a
reviewer can read here, that unit tests execute with a small BPF interpreter, and that needs no
native dependency on the worker. Only x86_64 is supported; other architectures fail closed.

Policy: every syscall is allowed except those below, which return ``EPERM`` (``ENOSYS`` for
``clone3``, so glibc falls back to ``clone`` whose flags we can inspect). Foreign ABIs (i386 via
``int 0x80``, x32) kill the process.
"""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["DENIED_SYSCALLS", "build_filter", "supported"]

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_OFF_NR = 0
_OFF_ARCH = 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


DENIED_SYSCALLS: dict[str, int] = {
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "pidfd_getfd": 438,
    "kcmp": 312,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "open_tree": 428,
    "move_mount": 429,
    "mount_setattr": 442,
    "unshare": 272,
    "setns": 308,
    "bpf": 321,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "acct": 163,
    "syslog": 103,
    "quotactl": 179,
    "lookup_dcookie": 212,
    "vhangup": 153,
    "iopl": 172,
    "ioperm": 173,
    "uselib": 134,
    "fanotify_init": 300,
    "sethostname": 170,
    "setdomainname": 171,
    "settimeofday": 164,
    "clock_settime": 227,
}
NR_CLONE = 56
NR_CLONE3 = 435
NR_SOCKET = 41
NR_IOCTL = 16

CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10


def supported() -> tuple[bool, str]:
    """Whether this host's architecture has a filter (``(ok, machine)``)."""
    machine = platform.machine()
    return machine in ("x86_64", "amd64"), machine


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _deny_if_eq(value: int, ret: int) -> list[bytes]:
    return [_insn(_JEQ_K, 0, 1, value), _insn(_RET_K, 0, 0, ret)]


def build_filter(*, allow_inet: bool = False) -> bytes:
    """The BPF program as bwrap reads it: an array of ``struct sock_filter``.

    ``allow_inet`` lets the tool open AF_INET/AF_INET6 sockets; it is set only for tools with an
    egress allowlist, whose network namespace holds nothing but loopback and the proxy shim.
    """
    eperm = RET_ERRNO | errno.EPERM
    prog: list[bytes] = [
        _insn(_LD_W_ABS, 0, 0, _OFF_ARCH),
        _insn(_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, _OFF_NR),
        _insn(_JGE_K, 0, 1, X32_SYSCALL_BIT),
        _insn(_RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    for nr in DENIED_SYSCALLS.values():
        prog += _deny_if_eq(nr, eperm)
    prog += _deny_if_eq(NR_CLONE3, RET_ERRNO | errno.ENOSYS)

    # clone: refuse any namespace flag in args[0].
    prog += [
        _insn(_JEQ_K, 0, 4, NR_CLONE),
        _insn(_LD_W_ABS, 0, 0, _arg_lo(0)),
        _insn(_JSET_K, 0, 1, CLONE_NAMESPACE_FLAGS),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_RET_K, 0, 0, RET_ALLOW),
    ]
    # socket: AF_UNIX only (plus AF_INET/6 when egress is allowlisted).
    families = [AF_UNIX] + ([AF_INET, AF_INET6] if allow_inet else [])
    n = len(families)
    sock = [_insn(_JEQ_K, 0, n + 3, NR_SOCKET), _insn(_LD_W_ABS, 0, 0, _arg_lo(0))]
    for i, fam in enumerate(families):
        sock.append(_insn(_JEQ_K, n - i, 0, fam))
    sock += [_insn(_RET_K, 0, 0, RET_ERRNO | errno.EAFNOSUPPORT), _insn(_RET_K, 0, 0, RET_ALLOW)]
    prog += sock
    # ioctl: no injecting keystrokes into a terminal.
    prog += [
        _insn(_JEQ_K, 0, 5, NR_IOCTL),
        _insn(_LD_W_ABS, 0, 0, _arg_lo(1)),
        _insn(_JEQ_K, 1, 0, TIOCSTI),
        _insn(_JEQ_K, 0, 1, TIOCLINUX),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_RET_K, 0, 0, RET_ALLOW),
    ]
    prog.append(_insn(_RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)
