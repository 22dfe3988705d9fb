"""A long-lived process (an MCP stdio server) inside bubblewrap: the command line that starts it.

A tool invocation gets a fresh sandbox per call (``_bwrap``); an MCP server instead lives as long
as its session and speaks JSON-RPC on stdin/stdout, so whoever holds the session (the MCP SDK's
``stdio_client``) spawns it and owns its pipes. What this module adds is the argv: the same walls
as a tool sandbox, expressed so that a plain ``exec`` of the argv builds them.

* ``/bin/sh`` (still the worker's uid) opens the seccomp program on fd 3, then ``exec``\\ s
* ``setpriv`` (as root only) to the dedicated unprivileged uid with no supplementary groups, then
* ``prlimit`` (address space, processes per uid, file size, open files, no core dumps), then
* ``bwrap``: every namespace unshared (no network at all), a read-only root of ``/usr`` and the
  interpreter, the server's code read-only under ``/opt/stalwart/code``, site-packages read-only,
  a size-capped tmpfs at ``/tmp`` as the only writable place, a cleared environment, the seccomp
  filter, ``--die-with-parent``; the server is pid 1's child in its own pid namespace, so when
  bwrap dies every process it left behind dies with it.

Nothing secret is in the argv (``/proc/1/cmdline`` is readable inside).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from stalwart.errors import SandboxUnavailable
from stalwart.sandbox import _command, _host, _seccomp
from stalwart.sandbox._types import SandboxLimits

__all__ = ["StdioServerSandbox"]

_FILTER_PATH: str | None = None


def _filter_file() -> str:
    """The no-network seccomp program, written once per process to a file only this uid reads."""
    global _FILTER_PATH
    if _FILTER_PATH is None or not os.path.exists(_FILTER_PATH):
        fd, path = tempfile.mkstemp(prefix="stalwart-seccomp-", suffix=".bpf")
        with os.fdopen(fd, "wb") as fh:
            fh.write(_seccomp.build_filter(allow_inet=False))
        os.chmod(path, 0o600)
        _FILTER_PATH = path
    return _FILTER_PATH


@dataclass
class StdioServerSandbox:
    """Builds the argv that runs ``command`` as a sandboxed, long-lived stdio server.

    ``code_dir`` is bound read-only and is the first ``sys.path`` entry (``python -m pkg`` finds
    the server there); ``python`` or ``python3`` as the command's first word is the sandbox
    interpreter. Raises :class:`SandboxUnavailable` when the host cannot isolate (never a fallback).
    """

    limits: SandboxLimits
    uid: int = 65534
    python: str | None = None

    def argv(self, command: list[str], *, code_dir: str | None) -> list[str]:
        layout, checks = _host.discover(self.uid, self.python)
        if layout is None:
            missing = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok and c.name != "site-packages in sandbox")
            raise SandboxUnavailable(f"cannot sandbox MCP servers on this host: {missing}")
        if not command:
            raise ValueError("an MCP stdio server needs a command")
        exe = command[0]
        if exe in ("python", "python3"):
            exe = layout.python
        lim = self.limits
        mb = 1024 * 1024
        wrap = ["/bin/sh", "-c", 'exec 3<"$0"; exec "$@"', _filter_file()]
        if layout.switch_user:
            wrap += ["/usr/bin/setpriv", f"--reuid={layout.uid}", f"--regid={layout.gid}", "--clear-groups"]
        wrap += [
            "/usr/bin/prlimit", f"--as={lim.memory_mb * mb}", f"--nproc={lim.uid_nproc}",
            f"--fsize={lim.file_mb * mb}", f"--nofile={lim.open_files}", "--core=0", "--",
        ]
        bw = [
            layout.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--clearenv", "--hostname", "stalwart-mcp", "--ro-bind", "/usr", "/usr",
        ]
        for top, target in _command.host_top_links().items():
            bw += ["--symlink", target, top] if target is not None else ["--ro-bind-try", top, top]
        for path in ("/etc/ld.so.cache", "/etc/localtime", "/etc/ssl", "/etc/ca-certificates"):
            bw += ["--ro-bind-try", path, path]
        real = os.path.realpath(layout.python)
        if not real.startswith("/usr/"):
            prefix = os.path.dirname(os.path.dirname(real))
            bw += ["--ro-bind", prefix, prefix]
        bw += ["--proc", "/proc", "--dev", "/dev", "--size", str(lim.tmpfs_mb * mb), "--tmpfs", "/tmp"]
        path_entries = []
        if code_dir is not None:
            code = os.path.realpath(code_dir)
            blocked = _host.readable_by(code, layout.uid, layout.gid) if layout.switch_user else None
            if blocked is not None:
                raise SandboxUnavailable(f"sandbox uid {layout.uid} cannot read the MCP server's code at {blocked}")
            bw += ["--ro-bind", code, _command.CODE_DIR]
            path_entries.append(_command.CODE_DIR)
        if layout.site_packages:
            bw += ["--ro-bind", layout.site_packages, _command.SITE_DIR]
            path_entries.append(_command.SITE_DIR)
        bw += [
            "--remount-ro", "/", "--chdir", _command.CODE_DIR if code_dir is not None else "/tmp",
            "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONPATH", ":".join(path_entries),
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--seccomp", "3", "--", exe, *command[1:],
        ]
        return wrap + bw
