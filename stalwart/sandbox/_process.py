"""A child process with asyncio pipes, without ``asyncio.create_subprocess_exec``.

Why not the stdlib helper: starting a subprocess through it runs an internal task that connects
the pipes; if the event loop is torn down (``asyncio.run`` returning) while a warm-pool refill is
starting a sandbox, that task is cancelled with the others and CPython 3.11 then waits forever for
the pipes to disconnect. Here the fork/exec is ``subprocess.Popen`` (what asyncio calls too), the
pipes are plain pipe transports, and the exit is observed through a pidfd, so nothing waits on a
task that teardown can cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from typing import Any

__all__ = ["SandboxProcess", "start_process"]


class _Sink(asyncio.Protocol):
    """Protocol of the stdin pipe: nothing to receive, flow control handled by buffering."""


class SandboxProcess:
    """The parts of ``asyncio.subprocess.Process`` the sandbox uses: pid, returncode, stdout and
    stderr readers, a buffered stdin, kill and wait."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.loop = loop
        self.stdout = asyncio.StreamReader(limit=2**16, loop=loop)
        self.stderr = asyncio.StreamReader(limit=2**16, loop=loop)
        self._transports: list[asyncio.BaseTransport] = []
        self._stdin: asyncio.WriteTransport | None = None
        self._waiters: list[asyncio.Future[int]] = []
        self._pidfd: int | None = None

    async def connect(self) -> None:
        """Attach the pipes to the loop and start watching for the exit."""
        assert self.popen.stdin and self.popen.stdout and self.popen.stderr
        for pipe, reader in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            protocol = asyncio.StreamReaderProtocol(reader, loop=self.loop)
            transport, _ = await self.loop.connect_read_pipe(lambda p=protocol: p, pipe)  # type: ignore[misc]
            self._transports.append(transport)
        wt, _ = await self.loop.connect_write_pipe(_Sink, self.popen.stdin)
        self._stdin = wt
        self._transports.append(wt)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # no pidfd: wait() polls
        if self._pidfd is not None:
            self.loop.add_reader(self._pidfd, self._exited)

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal)."""
        return self.popen.returncode

    def _exited(self) -> None:
        if self.popen.poll() is None:
            return
        self._stop_watching()
        for w in self._waiters:
            if not w.done():
                w.set_result(self.popen.returncode)  # type: ignore[arg-type]
        self._waiters.clear()

    def _stop_watching(self) -> None:
        if self._pidfd is not None:
            if not self.loop.is_closed():
                self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def write(self, data: bytes, *, close: bool) -> None:
        """Queue ``data`` for stdin (written as the pipe accepts it); ``close`` ends stdin after it."""
        if self._stdin is None or self._stdin.is_closing():
            return
        self._stdin.write(data)
        if close:
            self._stdin.close()

    def kill(self) -> None:
        """SIGKILL (nothing if already reaped)."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()

    async def wait(self) -> int:
        """Wait for the exit; the status as ``returncode``."""
        if self.popen.poll() is not None:
            self._stop_watching()
            return self.popen.returncode
        if self._pidfd is None:
            while self.popen.poll() is None:
                await asyncio.sleep(0.01)
            return self.popen.returncode
        fut: asyncio.Future[int] = self.loop.create_future()
        self._waiters.append(fut)
        return await fut

    def close(self) -> None:
        """Close the pipes (on this loop while it runs) and stop watching the exit."""
        if not self.loop.is_closed():
            for t in self._transports:
                t.close()
        else:
            for f in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
                with contextlib.suppress(OSError):
                    f and f.close()
        self._transports = []
        self._stop_watching()


async def start_process(argv: list[str], **kw: Any) -> SandboxProcess:
    """Fork/exec ``argv`` with three pipes; ``kw`` goes to ``subprocess.Popen``."""
    # Popen in the loop's thread, as asyncio's own subprocess transport does: fork/exec (vfork) is
    # brief, and no thread can leave a half-started sandbox behind.
    popen = subprocess.Popen(  # noqa: ASYNC220
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, **kw
    )
    proc = SandboxProcess(popen, asyncio.get_running_loop())
    try:
        await proc.connect()
    except BaseException:
        proc.kill()
        proc.close()
        raise
    return proc
