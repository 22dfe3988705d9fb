"""Escape attempts. Each probe raises when the attempt is stopped, so a contained attempt comes back
as a tool error and a successful one as a result (which the tests treat as a failure)."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import time

_libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
CLONE_NEWUSER = 0x10000000


def connect_direct(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=2):
        return f"connected to {host}:{port}"


def connect_via_proxy(host: str, port: int) -> str:
    """CONNECT through the sandbox's HTTPS_PROXY (the loopback shim) and report the status line."""
    proxy = os.environ["HTTPS_PROXY"].removeprefix("http://")
    phost, pport = proxy.rsplit(":", 1)
    with socket.create_connection((phost, int(pport)), timeout=5) as s:
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        status = s.recv(4096).split(b"\r\n", 1)[0].decode()
        if " 200 " not in f"{status} ":
            raise PermissionError(f"proxy refused: {status}")
        s.sendall(b"ping")
        return s.recv(100).decode()


def list_dir(path: str) -> list:
    return sorted(os.listdir(path))


def read_file(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(200).decode("latin-1")


def find_env_secret(name: str) -> str:
    if name in os.environ:
        return os.environ[name]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    for item in f.read().split(b"\0"):
                        if item.startswith(name.encode() + b"="):
                            return item.decode()
            except OSError:
                continue
    raise LookupError(f"{name} is not visible")


def write_file(path: str) -> str:
    with open(path, "w") as f:
        f.write("pwned")
    return path


def fill_tmp(chunk_mb: int, max_files: int) -> int:
    block = b"x" * (1024 * 1024)
    written = 0
    for i in range(max_files):
        with open(f"/tmp/fill-{i}", "wb") as f:
            for _ in range(chunk_mb):
                f.write(block)
                f.flush()
                written += 1
    return written


def big_file(mb: int) -> int:
    block = b"x" * (1024 * 1024)
    with open("/tmp/big", "wb") as f:
        for i in range(mb):
            f.write(block)
            f.flush()
    return mb


def fork_bomb(limit: int) -> int:
    count = 0
    try:
        for _ in range(limit):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            count += 1
    except OSError as exc:
        raise RuntimeError(f"fork failed after {count}: errno {exc.errno}") from None
    return count


def memory_bomb(max_mb: int) -> int:
    hoard = []
    for _ in range(max_mb // 64):
        hoard.append(bytearray(64 * 1024 * 1024))
    return len(hoard) * 64


def cpu_spin() -> int:
    n = 0
    while True:
        n += 1


def ptrace_attach(target: str) -> str:
    """Attach to ``pid1`` (the sandbox's init) or to a forked ``child``."""
    child = 0
    if target == "child":
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
    pid = 1 if target == "pid1" else child
    try:
        rc = _libc.ptrace(PTRACE_ATTACH, pid, None, None)
        if rc != 0:
            err = ctypes.get_errno()
            raise PermissionError(err, f"ptrace({pid}): {os.strerror(err)}")
        _libc.ptrace(PTRACE_DETACH, pid, None, None)
        return f"attached to {pid}"
    finally:
        if child:
            os.kill(child, 9)
            os.waitpid(child, 0)


def new_user_namespace() -> str:
    pid = os.fork()
    if pid == 0:
        rc = _libc.unshare(CLONE_NEWUSER)
        os._exit(0 if rc == 0 else min(ctypes.get_errno(), 250))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise PermissionError(code, f"unshare(CLONE_NEWUSER): {os.strerror(code)}")
    return "created a user namespace"


def flood_stdout() -> int:
    line = "x" * 65536
    while True:
        print(line)


def never_returns() -> None:
    while True:
        time.sleep(3600)


def threads_work() -> int:
    import threading

    box = []
    t = threading.Thread(target=lambda: box.append(errno.EPERM))
    t.start()
    t.join()
    return len(box)


# -- attempts that target the warm pool --------------------------------------------------------
def leave_behind(token: str) -> list:
    """Try to leave state for whichever call comes next (tmpfs, /dev/shm, the environment)."""
    left = []
    for path in ("/tmp/leftover", "/dev/shm/leftover", "/run/leftover"):
        try:
            with open(path, "w") as f:
                f.write(token)
            left.append(path)
        except OSError:
            continue
    os.environ["LEFTOVER"] = token
    return left


def find_leftovers() -> list:
    """Report anything a previous call left behind; raise when nothing is found."""
    found = [p for p in ("/tmp/leftover", "/dev/shm/leftover", "/run/leftover") if os.path.exists(p)]
    if "LEFTOVER" in os.environ:
        found.append("env")
    if found:
        return found
    raise LookupError("nothing left by a previous call")


def snoop(secret: str) -> str:
    """Look for another call's argument or credential anywhere this process can read."""
    from stalwart.sandbox import current_credential

    cred = current_credential()
    if cred is not None and secret in cred:
        return "own credential matches"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    if secret.encode() in f.read():
                        return f"found in /proc/{pid}/{name}"
            except OSError:
                continue
    for root, _dirs, files in os.walk("/tmp"):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    if secret.encode() in f.read():
                        return f"found in {root}/{name}"
            except OSError:
                continue
    raise LookupError("no trace of another call")


def keep_alive(token: str) -> int:
    """Start a detached process meant to outlive the call (named by ``token`` so the host can look)."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", token])
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.2)
    return pid


def echo_credential_len(secret: str) -> int:
    """A victim call: holds a secret argument and a credential while it runs."""
    from stalwart.sandbox import current_credential

    with open("/tmp/victim-notes", "w") as f:
        f.write(secret)
    return len(current_credential() or "")
