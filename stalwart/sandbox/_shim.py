"""Loopback shim inside the sandbox: a TCP listener on 127.0.0.1 whose every connection is
piped to the host's egress proxy over the bind-mounted unix socket, so that ordinary HTTP
clients work through ``HTTPS_PROXY``. Standard library only (loaded by the runner by path)."""

from __future__ import annotations

import socket
import threading

__all__ = ["start"]


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(listener: socket.socket, socket_path: str) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(socket_path)
        except OSError:
            client.close()
            upstream.close()
            continue
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def start(socket_path: str) -> int:
    """Listen on an ephemeral loopback port and return it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    threading.Thread(target=_serve, args=(listener, socket_path), daemon=True).start()
    return int(listener.getsockname()[1])
