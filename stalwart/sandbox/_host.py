"""What the host offers the sandbox: bwrap, an interpreter the sandbox uid can run, readable code,
user namespaces, cgroups. Each fact is a :class:`Check` so that ``stalwart doctor`` and the
fail-closed start-up share one source of truth."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from stalwart.sandbox import _seccomp

__all__ = ["Check", "HostLayout", "discover", "readable_by"]

PKG_DIR = Path(__file__).resolve().parents[1]
"""The ``stalwart`` package directory (bound read-only into every sandbox)."""


@dataclass(frozen=True)
class Check:
    """One host capability as ``stalwart doctor`` prints it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class HostLayout:
    """Everything resolved once per ``BwrapSandbox``."""

    bwrap: str
    python: str
    uid: int
    gid: int
    switch_user: bool
    site_packages: str | None


def readable_by(path: str | Path, uid: int, gid: int, *, execute: bool = False) -> str | None:
    """Return the first path component that ``uid``/``gid`` cannot traverse or read, or ``None``."""
    if uid == 0:
        return None
    p = Path(path).resolve()
    parts = [p, *p.parents][::-1]
    for i, part in enumerate(parts):
        try:
            st = part.stat()
        except OSError:
            return str(part)
        if st.st_uid == uid:
            shift = 6
        elif st.st_gid == gid:
            shift = 3
        else:
            shift = 0
        bits = (st.st_mode >> shift) & 0o7
        last = i == len(parts) - 1
        if stat.S_ISDIR(st.st_mode):
            need = 0o5 if last else 0o1
        else:
            need = 0o1 if execute else 0o4
        if bits & need != need:
            return str(part)
    return None


def _sandbox_ids(uid: int) -> tuple[int, int, bool]:
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), False
    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        gid = uid
    return uid, gid, True


def _candidates(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [f"/usr/bin/python{v}", f"/usr/local/bin/python{v}", "/usr/bin/python3"]


def _python_version(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", "import sys;print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _probe_userns(bwrap: str, uid: int, gid: int, switch: bool) -> str | None:
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "true",
    ]
    kw: dict[str, object] = {"user": uid, "group": gid, "extra_groups": []} if switch else {}
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False, **kw)  # type: ignore[call-overload]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if out.returncode == 0 else (out.stderr.strip() or f"exit status {out.returncode}")


def find_setpriv() -> str | None:
    """Path of util-linux ``setpriv``, or ``None``.

    A root worker drops to the sandbox uid through it rather than through ``Popen(user=...)``: with
    a uid or group to set, CPython 3.11 forks instead of using vfork, and forking a worker that has
    loaded models copies its page tables (tens to hundreds of milliseconds, on the event loop).
    """
    return shutil.which("setpriv") or ("/usr/bin/setpriv" if os.path.exists("/usr/bin/setpriv") else None)


def find_bwrap() -> str | None:
    """Path of the bwrap binary, or ``None``."""
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.path.exists("/usr/bin/bwrap") else None)


def discover(uid: int = 65534, python: str | None = None) -> tuple[HostLayout | None, list[Check]]:
    """Resolve the layout and list every check; the layout is ``None`` when a required check fails."""
    checks: list[Check] = []
    ok_arch, machine = _seccomp.supported()
    checks.append(
        Check(
            "seccomp filter",
            ok_arch,
            f"architecture {machine}",
            "" if ok_arch else "run workers on x86_64 (the only architecture with a filter)",
        )
    )
    bwrap = find_bwrap()
    checks.append(
        Check(
            "bubblewrap",
            bwrap is not None,
            bwrap or "bwrap not found on PATH",
            "" if bwrap else "apt-get install bubblewrap",
        )
    )
    s_uid, s_gid, switch = _sandbox_ids(uid)
    checks.append(
        Check(
            "sandbox uid",
            True,
            f"tools run as uid {s_uid} gid {s_gid}" + ("" if switch else " (not root: own uid)"),
        )
    )
    chosen: str | None = None
    tried = []
    for cand in _candidates(python):
        blocked = readable_by(cand, s_uid, s_gid, execute=True) if os.path.exists(cand) else cand
        if blocked is None:
            chosen = cand
            break
        tried.append(f"{cand} (blocked at {blocked})")
    checks.append(
        Check(
            "sandbox interpreter",
            chosen is not None,
            chosen or "none usable: " + ", ".join(tried),
            ""
            if chosen
            else f"apt-get install python3 (or set sandbox.python to an interpreter uid {s_uid} can execute)",
        )
    )
    blocked = readable_by(PKG_DIR, s_uid, s_gid)
    checks.append(
        Check(
            "stalwart package readable",
            blocked is None,
            str(PKG_DIR),
            ""
            if blocked is None
            else f"uid {s_uid} cannot read {blocked}; install Stalwart outside /root or chmod o+rx the path",
        )
    )
    site: str | None = None
    host_v = f"{sys.version_info.major}.{sys.version_info.minor}"
    sandbox_v = _python_version(chosen) if chosen else None
    purelib = sysconfig.get_paths()["purelib"]
    if sandbox_v == host_v and readable_by(purelib, s_uid, s_gid) is None:
        site = purelib
    checks.append(
        Check(
            "site-packages in sandbox",
            site is not None,
            site or f"sandbox python {sandbox_v} vs host {host_v}, {purelib}",
            ""
            if site
            else "use a sandbox interpreter of the host's Python version and a "
            "world-readable virtualenv (pydantic return validation and verify_credential need it)",
        )
    )
    userns_err = _probe_userns(bwrap, s_uid, s_gid, switch) if bwrap else "bwrap missing"
    checks.append(
        Check(
            "user namespaces",
            userns_err is None,
            userns_err or "bwrap can create a user namespace",
            ""
            if userns_err is None
            else "sysctl -w kernel.unprivileged_userns_clone=1 (and user.max_user_namespaces > 0)",
        )
    )
    required_ok = all(c.ok for c in checks if c.name != "site-packages in sandbox")
    if not required_ok or bwrap is None or chosen is None:
        return None, checks
    return HostLayout(
        bwrap=bwrap, python=chosen, uid=s_uid, gid=s_gid, switch_user=switch, site_packages=site
    ), checks
