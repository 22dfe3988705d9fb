"""``BwrapSandbox``: one fresh bubblewrap sandbox per tool invocation.

Layers, outermost first: a dedicated unprivileged uid (root-run bwrap would ignore
``RLIMIT_NPROC`` and map the sandbox to host uid 0); per-invocation ``pids`` and ``memory`` cgroups
where writable; every namespace unshared, a read-only root with one size-capped tmpfs; a seccomp
filter; rlimits set by the runner before the tool's module is imported; a wall-clock timeout that
kills the whole tree; an output cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import marshal
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from stalwart.errors import SandboxUnavailable
from stalwart.sandbox import _command, _host, _seccomp
from stalwart.sandbox._cgroups import CgroupHandle, CgroupManager
from stalwart.sandbox._classify import Observed, classify, tool_error
from stalwart.sandbox._proxy import Connector, EgressProxy, Resolver
from stalwart.sandbox._types import ToolInvocation, ToolOutcome
from stalwart.settings import SandboxSettings

__all__ = ["BwrapSandbox"]

_TAIL = 4096
_BWRAP_ENV = {"PATH": "/usr/bin:/bin"}
"""bwrap's own environment: the sandbox's pid 1 is bwrap, and its ``/proc/1/environ`` is readable
inside, so the worker's environment (API keys) must never reach bwrap, only ``--clearenv`` children."""


class _OutputExceeded(Exception):
    pass


class BwrapSandbox:
    """Runs each tool in its own bubblewrap sandbox; fails closed when isolation is unavailable.

    ``resolver`` and ``connector`` replace the egress proxy's DNS lookup and upstream connect
    (tests use them to simulate DNS rebinding without a network).
    """

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
        clock: Callable[[], float] = time.time,
        cgroups: bool = True,
    ) -> None:
        self.settings = settings or SandboxSettings.model_validate({})
        self._resolver = resolver
        self._connector = connector
        self._clock = clock
        self._want_cgroups = cgroups
        self._layout: _host.HostLayout | None = None
        self._cgroups: CgroupManager | None = None
        self._filters: dict[bool, bytes] = {}
        self._top_links = _command.host_top_links()
        self._ready_lock = asyncio.Lock()

    @property
    def cgroup_controllers(self) -> list[str]:
        """Cgroup controllers applied to each sandbox (empty until the first run)."""
        return self._cgroups.available if self._cgroups else []

    def preflight(self) -> _host.HostLayout:
        """Check the host once; raise :class:`SandboxUnavailable` naming what is missing."""
        if self._layout is None:
            layout, checks = _host.discover(self.settings.uid, self.settings.python)
            if layout is None:
                missing = "; ".join(
                    f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "")
                    for c in checks
                    if not c.ok and c.name != "site-packages in sandbox"
                )
                raise SandboxUnavailable(
                    f"cannot sandbox tools on this host: {missing}",
                    details={"missing": [c.name for c in checks if not c.ok]},
                )
            self._filters = {flag: _seccomp.build_filter(allow_inet=flag) for flag in (False, True)}
            if self._want_cgroups and os.geteuid() == 0:
                self._cgroups = CgroupManager()
            self._layout = layout
        return self._layout

    async def run(self, inv: ToolInvocation) -> ToolOutcome:
        """Run one invocation. Tool failures come back in the outcome; only a host that cannot
        sandbox at all raises (:class:`SandboxUnavailable`)."""
        async with self._ready_lock:
            if self._layout is None:
                await asyncio.to_thread(self.preflight)
        layout = self.preflight()
        started = time.perf_counter()
        egress_log: list[dict[str, Any]] = []
        proxy: EgressProxy | None = None
        proxy_dir: str | None = None
        cgroup: CgroupHandle | None = None
        try:
            if inv.egress:
                proxy_dir = tempfile.mkdtemp(prefix="stalwart-egress-")
                os.chmod(proxy_dir, 0o700)
                if layout.switch_user:
                    os.chown(proxy_dir, layout.uid, layout.gid)
                proxy = EgressProxy(
                    inv.egress,
                    egress_log,
                    resolver=self._resolver,
                    connector=self._connector,
                    clock=self._clock,
                )
                await proxy.start(os.path.join(proxy_dir, "egress.sock"))
            if self._cgroups is not None and self._cgroups.available:
                lim = inv.limits
                cgroup = self._cgroups.create(
                    uuid.uuid4().hex,
                    max_procs=lim.max_procs,
                    memory_bytes=(lim.memory_mb + lim.tmpfs_mb) * 1024 * 1024,
                )
            ok, result_json, error, tail = await self._execute(layout, inv, proxy_dir, cgroup)
        except ValueError as exc:
            ok, result_json, tail = False, None, ""
            error = tool_error(f"invalid invocation: {exc}", code="tool_invocation_invalid", retryable=False)
        except OSError as exc:
            ok, result_json, tail = False, None, ""
            error = tool_error(f"sandbox failed to start: {exc}", code="sandbox_start_failed", retryable=True)
        finally:
            if proxy is not None:
                await proxy.close()
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.close()
            if proxy_dir is not None:
                shutil.rmtree(proxy_dir, ignore_errors=True)
        return ToolOutcome(
            ok=ok,
            result_json=result_json,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            egress_log=egress_log,
            stderr_tail=tail,
        )

    @staticmethod
    def _request(
        layout: _host.HostLayout, inv: ToolInvocation, kwargs: dict[str, Any], egress: bool
    ) -> bytes:
        return marshal.dumps(
            {
                "module": inv.module,
                "qualname": inv.qualname,
                "kwargs": kwargs,
                "sys_path": _command.sandbox_sys_path(layout.site_packages),
                "limits": asdict(inv.limits),
                "credential": inv.credential,
                "verifier": inv.verifier,
                "proxy_socket": _command.PROXY_SOCKET if egress else None,
            }
        )

    async def _execute(
        self,
        layout: _host.HostLayout,
        inv: ToolInvocation,
        proxy_dir: str | None,
        cgroup: CgroupHandle | None,
    ) -> tuple[bool, str | None, dict[str, Any] | None, str]:
        code_root = os.path.realpath(inv.code_root)
        if not os.path.isdir(code_root):
            raise ValueError(f"code_root {inv.code_root!r} is not a directory")
        blocked = _host.readable_by(code_root, layout.uid, layout.gid)
        if blocked is not None:
            raise SandboxUnavailable(
                f"sandbox uid {layout.uid} cannot read the tool's code at {blocked}; "
                "install the code outside /root or chmod o+rx the path"
            )
        kwargs = json.loads(inv.kwargs_json)
        if not isinstance(kwargs, dict):
            raise ValueError("kwargs_json must be a JSON object")  # noqa: TRY004 - reported as invalid input
        request = self._request(layout, inv, kwargs, bool(inv.egress))
        egress = bool(inv.egress)
        r_fd, w_fd = os.pipe()
        try:
            os.write(w_fd, self._filters[egress])
        finally:
            os.close(w_fd)
        block_r, block_w = os.pipe() if cgroup else (None, None)
        argv = _command.build_argv(
            bwrap=layout.bwrap,
            python=layout.python,
            pkg_dir=str(_host.PKG_DIR),
            code_root=code_root,
            module=inv.module,
            site_packages=layout.site_packages,
            seccomp_fd=r_fd,
            tmpfs_bytes=inv.limits.tmpfs_mb * 1024 * 1024,
            proxy_dir=proxy_dir,
            top_links=self._top_links,
            block_fd=block_r,
        )
        kw: dict[str, Any] = {}
        if layout.switch_user:
            kw = {"user": layout.uid, "group": layout.gid, "extra_groups": []}
        pass_fds = (r_fd,) if block_r is None else (r_fd, block_r)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=pass_fds,
                env=_BWRAP_ENV,
                **kw,
            )
        finally:
            os.close(r_fd)
            if block_r is not None:
                os.close(block_r)
        if cgroup is not None and block_w is not None:
            try:
                cgroup.adopt_tree(proc.pid)
                os.write(block_w, b"1")
            except OSError:
                self._kill(proc, cgroup)
                await proc.wait()
                raise
            finally:
                os.close(block_w)
        return await self._supervise(proc, inv, request, cgroup)

    async def _supervise(
        self,
        proc: asyncio.subprocess.Process,
        inv: ToolInvocation,
        request: bytes,
        cgroup: CgroupHandle | None,
    ) -> tuple[bool, str | None, dict[str, Any] | None, str]:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        cap = inv.limits.max_output_bytes
        seen = 0
        reply = bytearray()
        tail = bytearray()

        async def feed() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                proc.stdin.write(request)
                await proc.stdin.drain()
                proc.stdin.close()

        async def drain(stream: asyncio.StreamReader, buf: bytearray, keep_tail: bool) -> None:
            nonlocal seen
            while chunk := await stream.read(65536):
                seen += len(chunk)
                if seen > cap:
                    raise _OutputExceeded
                buf += chunk
                if keep_tail and len(buf) > _TAIL:
                    del buf[:-_TAIL]

        tasks = [
            asyncio.create_task(feed()),
            asyncio.create_task(drain(proc.stdout, reply, False)),
            asyncio.create_task(drain(proc.stderr, tail, True)),
        ]
        timed_out = exceeded = False
        try:
            done, pending = await asyncio.wait(
                tasks, timeout=inv.timeout_s, return_when=asyncio.FIRST_EXCEPTION
            )
            exceeded = any(
                t.done() and not t.cancelled() and isinstance(t.exception(), _OutputExceeded) for t in done
            )
            timed_out = bool(pending) and not exceeded
            if pending or exceeded:
                # Kill before waiting: a tool blocked on a full pipe nobody reads would never exit.
                self._kill(proc, cgroup)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            try:
                returncode = await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                self._kill(proc, cgroup)
                returncode = await proc.wait()
        except BaseException:
            self._kill(proc, cgroup)
            for t in tasks:
                t.cancel()
            raise
        ok, result_json, error = classify(
            Observed(
                returncode=returncode,
                reply=bytes(reply),
                timed_out=timed_out,
                output_exceeded=exceeded,
                oom_killed=cgroup.oom_killed() if cgroup else False,
                timeout_s=inv.timeout_s,
                max_output_bytes=cap,
            )
        )
        return ok, result_json, error, tail.decode("utf-8", "replace")

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process, cgroup: CgroupHandle | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        if cgroup is not None:
            cgroup.kill_all()
