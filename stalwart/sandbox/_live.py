"""One started bubblewrap sandbox: spawned, its module imported, waiting for its one call.

A :class:`LiveSandbox` serves exactly one call and is then destroyed, whether it was started for
that call (cold) or ahead of need by the warm pool. Everything that differs per call (arguments,
credential, verifier snapshot, the egress proxy and its log) arrives in :meth:`LiveSandbox.call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from stalwart.sandbox._cgroups import CgroupHandle
from stalwart.sandbox._classify import Observed, classify
from stalwart.sandbox._process import SandboxProcess
from stalwart.sandbox._proctree import TreeUsage, tree_usage
from stalwart.sandbox._runner import READY

__all__ = ["LiveSandbox", "Profile"]

_TAIL = 4096


class _OutputExceeded(Exception):
    pass


@dataclass(frozen=True)
class Profile:
    """What a sandbox is started for; pool entries are shared only within one profile."""

    module: str
    code_root: str
    limits: Any
    egress: bool


@dataclass(eq=False)
class LiveSandbox:
    """A running sandbox process and what the host holds for it."""

    proc: SandboxProcess
    profile: Profile
    code_hash: str
    started: float
    """``time.monotonic()`` at spawn (pool age)."""
    cgroup: CgroupHandle | None = None
    proxy_dir: str | None = None
    ready: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    complete: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Done once the framed reply has fully arrived (the call's outcome is known; exit not awaited)."""
    reply: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    seen: int = 0
    cap: int = 1_000_000
    used: bool = False
    destroyed: bool = False
    rss_bytes: int = 0
    baseline: TreeUsage | None = None
    """The tree's usage once warm (measured by the pool, off the call's path)."""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    def start_readers(self) -> None:
        """Read stdout (ready byte, then the reply) and stderr (kept as a tail) until EOF."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._drain(self.proc.stdout, reply=True)),
            asyncio.create_task(self._drain(self.proc.stderr, reply=False)),
        ]

    async def _drain(self, stream: asyncio.StreamReader, *, reply: bool) -> None:
        first = reply
        try:
            while chunk := await stream.read(65536):
                self.seen += len(chunk)
                if self.seen > self.cap:
                    raise _OutputExceeded
                if first:
                    first = False
                    if chunk[:1] == READY:
                        chunk = chunk[1:]
                        if not self.ready.done():
                            self.ready.set_result(True)
                if reply:
                    self.reply += chunk
                    if not self.complete.done() and self.reply_body() is not None:
                        self.complete.set_result(None)
                else:
                    self.tail += chunk
                    if len(self.tail) > _TAIL:
                        del self.tail[:-_TAIL]
        finally:
            if reply and not self.ready.done():
                self.ready.set_result(False)

    def reply_body(self) -> bytes | None:
        """The reply once its frame is complete (``None`` before)."""
        if len(self.reply) < 4:
            return None
        size = int.from_bytes(self.reply[:4], "big")
        return bytes(self.reply[4 : 4 + size]) if len(self.reply) >= 4 + size else None

    @property
    def alive(self) -> bool:
        """Still running and not yet handed a call."""
        return not self.used and not self.destroyed and self.proc.returncode is None

    def usage(self) -> TreeUsage:
        """What the tree has used so far (host ``/proc``)."""
        return tree_usage(self.proc.pid)

    def send(self, data: bytes, *, close: bool) -> None:
        """Queue a message for the runner's stdin; a sandbox that already died is noticed by the reader."""
        self.proc.write(data, close=close)

    async def call(
        self, request: bytes, *, timeout_s: float, baseline: TreeUsage | None
    ) -> tuple[bool, str | None, dict[str, Any] | None, str]:
        """Hand over the call and wait for the reply within ``timeout_s``.

        Once the framed reply is complete the tree is SIGKILLed at once and the outcome returned;
        reaping the processes and removing the cgroups is left to :meth:`reap` (the caller runs
        it in the background), so the sandbox's teardown is not on the call's path. Without a
        complete reply (timeout, output cap, crash) the exit is awaited here, as its status says
        what happened.
        """
        self.used = True
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline = loop.time() + timeout_s
        base = baseline if baseline is not None else TreeUsage()
        timed_out = exceeded = False
        usage: TreeUsage | None = None
        elapsed: float | None = None
        returncode: int | None = None
        self.send(request, close=True)
        tasks: list[asyncio.Task[None]] = list(self._readers)
        try:
            while True:
                exceeded = any(
                    t.done() and not t.cancelled() and isinstance(t.exception(), _OutputExceeded)
                    for t in tasks
                )
                left = deadline - loop.time()
                if self.complete.done() or exceeded or all(t.done() for t in tasks) or left <= 0:
                    break
                waiting = [self.complete, *(t for t in tasks if not t.done())]
                await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finished = self.complete.done() and not exceeded
            pending = [t for t in tasks if not t.done()]
            timed_out = bool(pending) and not finished and not exceeded
            if timed_out:
                usage = self.usage().since(base)  # read before the kill: what the tool did with its time
                elapsed = time.monotonic() - started
            if finished:
                self.kill()  # the reply is in: nothing of the call may run on (reaped by reap())
            else:
                if pending or exceeded:
                    # Kill before waiting: a tool blocked on a full pipe nobody reads would never exit.
                    self.kill()
                    for t in pending:
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                try:
                    returncode = await asyncio.wait_for(self.proc.wait(), 10.0)
                except TimeoutError:
                    self.kill()
                    returncode = await self.proc.wait()
        except BaseException:
            self.kill()
            for t in tasks:
                t.cancel()
            raise
        oom = self.cgroup.oom_killed() if self.cgroup else False
        body = self.reply_body()
        ok, result_json, error = classify(
            Observed(
                returncode=returncode,
                reply=body if body is not None else bytes(self.reply),
                timed_out=timed_out,
                output_exceeded=exceeded,
                oom_killed=oom,
                timeout_s=timeout_s,
                max_output_bytes=self.cap,
                cpu_s=usage.cpu_s if usage else None,
                demand_s=usage.demand_s if usage else None,
                elapsed_s=elapsed,
            )
        )
        return ok, result_json, error, self.tail.decode("utf-8", "replace")

    async def reap(self) -> None:
        """Kill what is left, wait for the exit, then release the cgroups and the proxy directory."""
        try:
            self.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 10.0)
            for t in self._readers:
                t.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            if self.cgroup is not None and not self.destroyed:
                await asyncio.to_thread(self.cgroup.close)  # rmdir retries while the last exits
        finally:
            self.destroy()
            self.close_transport()

    def kill(self) -> None:
        """SIGKILL the tree (bwrap, then everything left in its cgroups)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def destroy(self) -> None:
        """Kill what is left and release the cgroups and the proxy directory (idempotent)."""
        if self.destroyed:
            return
        self.destroyed = True
        if self.proc.returncode is None:
            self.kill()
        if not self.loop.is_closed():
            for t in self._readers:
                if not t.done():
                    t.cancel()
        if self.cgroup is not None:
            self.cgroup.kill_all()
            self.cgroup.close()
        if self.proxy_dir is not None:
            shutil.rmtree(self.proxy_dir, ignore_errors=True)

    async def discard(self) -> None:
        """Destroy an unused sandbox and reap its process."""
        self.destroy()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 10.0)
        for t in self._readers:
            t.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self.close_transport()

    def close_transport(self) -> None:
        """Close the pipes now, on this loop, rather than when the garbage collector finds them."""
        with contextlib.suppress(Exception):
            self.proc.close()
