"""``BwrapSandbox``: one fresh bubblewrap sandbox per tool invocation, started cold or taken from
the single-use warm pool (see ``_pool``).

Layers, outermost first: a dedicated unprivileged uid (root-run bwrap would ignore
``RLIMIT_NPROC`` and map the sandbox to host uid 0); per-invocation ``pids`` and ``memory`` cgroups
where writable; every namespace unshared, a read-only root with one size-capped tmpfs; a seccomp
filter; rlimits set by the runner before the tool's module is imported; a wall-clock timeout that
kills the whole tree; an output cap. A pooled sandbox has all of these from its start; it only
waits, module imported, for the one call it will serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from stalwart.errors import SandboxUnavailable
from stalwart.sandbox import _command, _host, _seccomp
from stalwart.sandbox._bytecode import framework_snapshot
from stalwart.sandbox._cgroups import CgroupHandle, CgroupManager
from stalwart.sandbox._classify import tool_error
from stalwart.sandbox._codehash import code_hash
from stalwart.sandbox._live import LiveSandbox, Profile
from stalwart.sandbox._pool import PoolLimits, WarmPool, prewarm_sizes
from stalwart.sandbox._process import SandboxProcess, start_process
from stalwart.sandbox._proxy import Connector, EgressProxy, Resolver
from stalwart.sandbox._runner import frame
from stalwart.sandbox._types import ToolInvocation, ToolOutcome
from stalwart.settings import SandboxSettings

__all__ = ["BwrapSandbox"]

_BWRAP_ENV = {"PATH": "/usr/bin:/bin"}
"""bwrap's own environment: the sandbox's pid 1 is bwrap, and its ``/proc/1/environ`` is readable
inside, so the worker's environment (API keys) must never reach bwrap, only ``--clearenv`` children."""


class BwrapSandbox:
    """Runs each tool in its own bubblewrap sandbox; fails closed when isolation is unavailable.

    ``resolver`` and ``connector`` replace the egress proxy's DNS lookup and upstream connect
    (tests use them to simulate DNS rebinding without a network). ``pool=False`` turns the warm
    pool off (every call cold), as does ``sandbox.pool_max_processes = 0``.
    """

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
        clock: Callable[[], float] = time.time,
        cgroups: bool = True,
        pool: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
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
        self._lib_dir: str | None = None
        self._setpriv = _host.find_setpriv()
        self._monotonic = monotonic
        st = self.settings
        self.pool = WarmPool(
            self._spawn,
            PoolLimits(
                max_processes=st.pool_max_processes if pool else 0,
                max_memory_mb=st.pool_max_memory_mb,
                per_profile_max=st.pool_per_profile_max,
                idle_s=st.pool_idle_s,
                max_age_s=st.pool_max_age_s,
                max_warming=max(2, min(8, os.cpu_count() or 2)),
            ),
            clock=monotonic,
        )

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
            try:
                snapshot: str | None = framework_snapshot(_host.PKG_DIR)
            except OSError:
                snapshot = None
            if snapshot is not None and _host.readable_by(snapshot, layout.uid, layout.gid) is not None:
                snapshot = None  # e.g. TMPDIR under /root: the sandbox uid could not read it
            # without a snapshot the package itself is bound, and each sandbox compiles what it imports
            self._lib_dir = snapshot or str(_host.PKG_DIR)
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
        live: LiveSandbox | None = None
        profile: Profile | None = None
        digest = ""
        pooled = False
        self.pool.call_started()
        try:
            profile, digest, request = self._prepare(layout, inv)
            live = self.pool.take(profile, digest)
            pooled = live is not None
            if live is None:
                live = await self._spawn(profile, digest)
            baseline = (live.baseline or live.usage()) if pooled else None
            if inv.egress:
                assert live.proxy_dir is not None
                proxy = EgressProxy(
                    inv.egress, egress_log, resolver=self._resolver, connector=self._connector, clock=self._clock
                )
                await proxy.start(os.path.join(live.proxy_dir, "egress.sock"))
            ok, result_json, error, tail = await live.call(
                frame(request), timeout_s=inv.timeout_s, baseline=baseline
            )
        except ValueError as exc:
            ok, result_json, tail = False, None, ""
            error = tool_error(f"invalid invocation: {exc}", code="tool_invocation_invalid", retryable=False)
        except OSError as exc:
            ok, result_json, tail = False, None, ""
            error = tool_error(f"sandbox failed to start: {exc}", code="sandbox_start_failed", retryable=True)
        finally:
            self.pool.call_ended()
            if live is not None:
                self.pool.retire(live)  # killed now; reaped off the call's path
            if proxy is not None:
                await proxy.close()
        if profile is not None:
            self.pool.after_call(profile, digest)
        return ToolOutcome(
            ok=ok,
            result_json=result_json,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            egress_log=egress_log,
            stderr_tail=tail,
            pooled=pooled,
        )

    async def prewarm(self, invocations: Sequence[ToolInvocation], concurrency: int) -> dict[str, int]:
        """Start sandboxes for these tools ahead of their first call (a worker does this when it starts).

        Tools sharing a profile (module, limits, egress on/off) share its entries; a profile of
        ``k`` tools wants ``concurrency * k`` of them (every run in flight may call each of them at
        once), and ``pool_max_processes`` is shared fairly among profiles (:func:`prewarm_sizes`);
        memory is bounded as for every refill. Returns immediately with the number of entries
        asked for per module; :meth:`WarmPool.wait_warm` waits for them. Raises
        :class:`SandboxUnavailable` when the host cannot sandbox; ``ValueError`` for a tool whose
        code cannot be bound.
        """
        if not self.pool.enabled or not invocations:
            return {}
        async with self._ready_lock:
            if self._layout is None:
                await asyncio.to_thread(self.preflight)
        layout = self.preflight()
        tools: dict[Profile, tuple[str, int]] = {}
        for inv in invocations:
            profile, digest = self._profile(layout, inv)
            tools[profile] = (digest, tools.get(profile, (digest, 0))[1] + 1)
        sizes = prewarm_sizes(
            {p: max(1, concurrency) * n for p, (_d, n) in tools.items()}, self.pool.limits.max_processes
        )
        self.pool.prewarm({p: (tools[p][0], sizes[p]) for p in tools})
        asked: dict[str, int] = {}
        for p, n in sizes.items():
            asked[p.module] = asked.get(p.module, 0) + n
        return asked

    async def aclose(self) -> None:
        """Destroy the warm pool's sandboxes (a worker or app calls this when it stops)."""
        await self.pool.aclose()

    def _prepare(self, layout: _host.HostLayout, inv: ToolInvocation) -> tuple[Profile, str, dict[str, Any]]:
        """Validate the invocation; its profile, code hash and the call message."""
        profile, digest = self._profile(layout, inv)
        kwargs = json.loads(inv.kwargs_json)
        if not isinstance(kwargs, dict):
            raise ValueError("kwargs_json must be a JSON object")  # noqa: TRY004 - reported as invalid input
        request = {
            "qualname": inv.qualname,
            "kwargs": kwargs,
            "credential": inv.credential,
            "verifier": inv.verifier,
            "proxy_socket": _command.PROXY_SOCKET if inv.egress else None,
        }
        return profile, digest, request

    def _profile(self, layout: _host.HostLayout, inv: ToolInvocation) -> tuple[Profile, str]:
        """The pool profile of an invocation's tool and the code hash of its module."""
        code_root = os.path.realpath(inv.code_root)
        if not os.path.isdir(code_root):
            raise ValueError(f"code_root {inv.code_root!r} is not a directory")
        blocked = _host.readable_by(code_root, layout.uid, layout.gid)
        if blocked is not None:
            raise SandboxUnavailable(
                f"sandbox uid {layout.uid} cannot read the tool's code at {blocked}; "
                "install the code outside /root or chmod o+rx the path"
            )
        _command.code_binding(code_root, inv.module)
        profile = Profile(module=inv.module, code_root=code_root, limits=inv.limits, egress=bool(inv.egress))
        return profile, code_hash(code_root, inv.module)

    async def _spawn(self, profile: Profile, digest: str) -> LiveSandbox:
        """Start a sandbox for ``profile`` and send its warm-up (module import); no call yet."""
        layout = self.preflight()
        proxy_dir: str | None = None
        cgroup: CgroupHandle | None = None
        try:
            if profile.egress:
                proxy_dir = tempfile.mkdtemp(prefix="stalwart-egress-")
                os.chmod(proxy_dir, 0o700)
                if layout.switch_user:
                    os.chown(proxy_dir, layout.uid, layout.gid)
            if self._cgroups is not None and self._cgroups.available:
                lim = profile.limits
                cgroup = self._cgroups.create(
                    uuid.uuid4().hex,
                    max_procs=lim.max_procs,
                    memory_bytes=(lim.memory_mb + lim.tmpfs_mb) * 1024 * 1024,
                )
            proc = await self._start_process(layout, profile, proxy_dir, cgroup)
        except BaseException:
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.close()
            if proxy_dir is not None:
                shutil.rmtree(proxy_dir, ignore_errors=True)
            raise
        live = LiveSandbox(
            proc=proc,
            profile=profile,
            code_hash=digest,
            started=self._monotonic(),
            cgroup=cgroup,
            proxy_dir=proxy_dir,
            cap=profile.limits.max_output_bytes,
        )
        live.start_readers()
        warm = {
            "module": profile.module,
            "sys_path": _command.sandbox_sys_path(layout.site_packages),
            "limits": asdict(profile.limits),
        }
        live.send(frame(warm), close=False)
        return live

    async def _start_process(
        self,
        layout: _host.HostLayout,
        profile: Profile,
        proxy_dir: str | None,
        cgroup: CgroupHandle | None,
    ) -> SandboxProcess:
        r_fd, w_fd = os.pipe()
        try:
            os.write(w_fd, self._filters[profile.egress])
        finally:
            os.close(w_fd)
        block_r, block_w = os.pipe() if cgroup else (None, None)
        argv = _command.build_argv(
            bwrap=layout.bwrap,
            python=layout.python,
            pkg_dir=self._lib_dir or str(_host.PKG_DIR),
            code_root=profile.code_root,
            module=profile.module,
            site_packages=layout.site_packages,
            seccomp_fd=r_fd,
            tmpfs_bytes=profile.limits.tmpfs_mb * 1024 * 1024,
            proxy_dir=proxy_dir,
            top_links=self._top_links,
            block_fd=block_r,
        )
        kw: dict[str, Any] = {}
        if layout.switch_user:
            if self._setpriv is not None:
                # same effect as Popen(user=, group=, extra_groups=[]), but started with vfork
                argv = [self._setpriv, f"--reuid={layout.uid}", f"--regid={layout.gid}", "--clear-groups", "--", *argv]
            else:
                kw = {"user": layout.uid, "group": layout.gid, "extra_groups": []}
        pass_fds = (r_fd,) if block_r is None else (r_fd, block_r)
        try:
            proc = await start_process(argv, pass_fds=pass_fds, env=_BWRAP_ENV, **kw)
        finally:
            os.close(r_fd)
            if block_r is not None:
                os.close(block_r)
        if cgroup is not None and block_w is not None:
            try:
                # in a thread: moving a process between v1 cgroups takes milliseconds, and the
                # event loop serves other calls meanwhile (bwrap waits on block_fd until it is done)
                await asyncio.to_thread(cgroup.adopt_tree, proc.pid)
                os.write(block_w, b"1")
            except BaseException:
                proc.kill()
                cgroup.kill_all()
                with contextlib.suppress(BaseException):
                    await asyncio.shield(proc.wait())
                proc.close()
                raise
            finally:
                os.close(block_w)
        return proc
