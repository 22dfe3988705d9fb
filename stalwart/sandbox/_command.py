"""The bwrap command line for one invocation (pure: paths in, argv out).

Nothing secret ever goes here: inside the sandbox ``/proc/1/cmdline`` shows this argv.
"""

from __future__ import annotations

import os

__all__ = ["CODE_DIR", "LIB_DIR", "RUNNER", "RUN_DIR", "SITE_DIR", "build_argv"]

CODE_DIR = "/opt/stalwart/code"
LIB_DIR = "/opt/stalwart/lib"
SITE_DIR = "/opt/stalwart/site"
RUN_DIR = "/run/stalwart"
RUNNER = f"{LIB_DIR}/stalwart/sandbox/_runner.py"
PROXY_SOCKET = f"{RUN_DIR}/egress.sock"

_ETC = ("/etc/ld.so.cache", "/etc/localtime", "/etc/ssl", "/etc/ca-certificates")
_TOP = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")


def _top_level(islink: dict[str, str | None]) -> list[str]:
    out: list[str] = []
    for top in _TOP:
        target = islink.get(top)
        if target is not None:
            out += ["--symlink", target, top]
        else:
            out += ["--ro-bind-try", top, top]
    return out


def host_top_links() -> dict[str, str | None]:
    """Which of /bin, /lib… are symlinks on this host (merged /usr) and to where."""
    return {top: (os.readlink(top) if os.path.islink(top) else None) for top in _TOP}


def code_binding(code_root: str, module: str) -> tuple[str, str]:
    """Bind only the tool's top-level package (or single module file), not all of ``code_root``:
    a project root also holds ``.git``, ``.env`` files and the SQLite database with the signing key."""
    top = module.split(".", 1)[0]
    if not top.isidentifier():
        raise ValueError(f"module {module!r} is not an importable name")
    for name in (top, f"{top}.py"):
        path = os.path.join(code_root, name)
        if os.path.exists(path):
            return path, f"{CODE_DIR}/{name}"
    raise ValueError(f"module {module!r} is not under code_root {code_root!r}")


def build_argv(
    *,
    bwrap: str,
    python: str,
    pkg_dir: str,
    code_root: str,
    module: str,
    site_packages: str | None,
    seccomp_fd: int,
    tmpfs_bytes: int,
    proxy_dir: str | None,
    top_links: dict[str, str | None],
    block_fd: int | None = None,
) -> list[str]:
    """Assemble the argv; the interpreter is bound read-only when it lives outside ``/usr``."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--hostname",
        "stalwart-sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
        *_top_level(top_links),
    ]
    for path in _ETC:
        argv += ["--ro-bind-try", path, path]
    real_python = os.path.realpath(python)
    if not real_python.startswith("/usr/"):
        prefix = os.path.dirname(os.path.dirname(real_python))
        argv += ["--ro-bind", prefix, prefix]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(tmpfs_bytes),
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        *code_binding(code_root, module),
        "--ro-bind",
        pkg_dir,
        f"{LIB_DIR}/stalwart",
    ]
    if site_packages:
        argv += ["--ro-bind", site_packages, SITE_DIR]
    if proxy_dir:
        argv += ["--ro-bind", proxy_dir, RUN_DIR]
    argv += [
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
        "--setenv",
        "HOME",
        "/tmp",
        "--setenv",
        "TMPDIR",
        "/tmp",
        "--setenv",
        "PATH",
        "/usr/local/bin:/usr/bin:/bin",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--seccomp",
        str(seccomp_fd),
        *(["--block-fd", str(block_fd)] if block_fd is not None else []),
        "--",
        python,
        "-I",
        "-S",
        "-B",
        RUNNER,
    ]
    return argv


def sandbox_sys_path(site_packages: str | None) -> list[str]:
    """``sys.path`` entries the runner prepends: the tool's code, Stalwart, then site-packages."""
    return [CODE_DIR, LIB_DIR] + ([SITE_DIR] if site_packages else [])
