"""``App``: the registry of workflows and tools, and the client API to start and observe runs."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stalwart.engine._breaker import BreakerPolicy
from stalwart.engine._definitions import ToolDef, WorkflowDef
from stalwart.engine._ids import Clock, SystemClock, new_id, new_trace_id
from stalwart.engine._retry import RetryPolicy
from stalwart.engine._serde import decode
from stalwart.engine._states import TERMINAL, RunStatus
from stalwart.engine._stream import StreamLimits
from stalwart.errors import (
    ConfigError,
    InvalidInput,
    KillSwitchEngaged,
    NeedsConfirmation,
    RunNotFound,
    UnknownWorkflow,
    WorkflowFailed,
)
from stalwart.gateway import Budget
from stalwart.settings import Settings, load_settings
from stalwart.store import DeadLetter, JournalEntry, NewRun, RunEvent, RunRecord, Store, open_store

if TYPE_CHECKING:
    from stalwart.engine._execution import RunExecution
    from stalwart.engine._worker import Worker

__all__ = ["KILL_SWITCH_FLAG", "App", "RunInfo"]

KILL_SWITCH_FLAG = "kill_switch"


@dataclass(frozen=True)
class RunInfo:
    """What is known about a run. ``status`` is one of :class:`RunStatus`."""

    id: str
    workflow: str
    version: str
    status: RunStatus
    input: Any
    output: Any
    error: dict[str, Any] | None
    org: str
    user: str
    idempotency_key: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    trace_id: str
    generation: int
    meta: dict[str, Any]

    @classmethod
    def from_record(cls, r: RunRecord) -> RunInfo:
        return cls(
            id=r.id,
            workflow=r.workflow,
            version=r.version,
            status=RunStatus(r.status),
            input=decode(r.input_json),
            output=decode(r.output_json),
            error=r.error,
            org=r.org,
            user=r.user,
            idempotency_key=r.idempotency_key,
            created_at=r.created_at,
            updated_at=r.updated_at,
            finished_at=r.finished_at,
            trace_id=r.trace_id,
            generation=r.generation,
            meta=r.meta,
        )

    @property
    def partial(self) -> bool:
        return bool(self.meta.get("partial"))

    @property
    def budget_exceeded(self) -> bool:
        return bool(self.meta.get("budget_exceeded"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflow": self.workflow,
            "version": self.version,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "org": self.org,
            "user": self.user,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "trace_id": self.trace_id,
            "generation": self.generation,
            "partial": self.partial,
            "budget_exceeded": self.budget_exceeded,
            "meta": self.meta,
        }


class App:
    """A Stalwart application: workflows, tools, and a connection to the store.

    ``db`` resolves as argument > ``STALWART_DB`` > ``stalwart.toml`` > ``sqlite:///.stalwart/stalwart.db``.
    ``policies`` is the app's Cedar bundle (a directory, relative to the module that creates the
    app): it seeds a store that holds no policy version yet; after that the store's active version
    rules, changed with ``stalwart policy propose|approve``. ``local_rules`` script the offline
    ``local`` provider (``stalwart.gateway.LocalRule``: deterministic answers and tool calls for tests
    and demos; it stays labelled as not a real LLM). Nothing connects until the first async call.
    """

    def __init__(
        self,
        name: str,
        db: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        jitter: random.Random | None = None,
        policies: str | Path | None = None,
        local_rules: list[Any] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings if settings is not None else load_settings(db=db)
        if settings is not None and db is not None:
            self.settings = self.settings.model_copy(update={"db": db})
        self.clock: Clock = clock or SystemClock()
        self.jitter = jitter or random.Random()
        w = self.settings.worker
        self.default_retry = RetryPolicy(w.max_attempts, w.backoff_initial_s, 2.0, w.backoff_max_s)
        self.breaker_policy = BreakerPolicy(w.breaker_failure_threshold, w.breaker_reset_s)
        self.inline_retry_max_s = 5.0
        self.artifact_inline_limit: int | None = 64 * 1024
        """Tool results whose JSON is larger go to the encrypted artifact store; the journal keeps a hash."""
        self.max_parallel = 16
        self.stream_limits = StreamLimits()
        """When a run's event stream is flushed: batch size and delay of streamed text."""
        """Bodies of one run that may execute at once under ``ctx.parallel``/``asyncio.gather``."""
        self._workflows: dict[str, dict[str, WorkflowDef]] = {}
        self._tools: dict[str, ToolDef] = {}
        self._store: Store | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._waiters: dict[str, asyncio.Event] = {}
        self._workers: list[Worker] = []
        self._local_wakes: list[float] = []
        self._sandbox: Any = None
        self._broker: Any = None
        self._gateway: Any = None
        self._guard: Any = None
        self._guard_loaded: set[str] = set()
        self._guard_lock: asyncio.Lock | None = None
        self._vault: Any = None
        caller = sys._getframe(1).f_globals.get("__file__")
        self.home = Path(caller).resolve().parent if caller else Path.cwd()
        """Directory of the module that created the app (its ``prompts/`` live there)."""
        self.policies: Path | None = None if policies is None else self.home / policies
        """The app's seed policy bundle (``governance.policies_dir`` overrides it; none: Stalwart's defaults)."""
        self._kill_cache: tuple[float, bool] = (0.0, False)
        self.schedules: dict[str, Any] = {}
        self.webhooks: dict[str, Any] = {}
        self.telemetry: Any = None
        self._governance: Any = None
        self._canary_cache: dict[str, tuple[float, Any]] = {}
        self._memory: Any = None
        self._artifacts: Any = None
        self.local_rules: list[Any] = list(local_rules or [])
        """Scripted rules (``stalwart.gateway.LocalRule``) the offline ``local`` provider consults
        before its built-in ones: deterministic tool calls for tests and demos."""
        """``stalwart.telemetry.Telemetry`` once connected: spans, metrics, alerts (never raises)."""
        self.mcp_servers: dict[str, Any] = {}
        """MCP servers declared with :meth:`mcp`, by name."""

    # -- registration ------------------------------------------------------------------------
    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        scopes: list[str] | tuple[str, ...] = (),
        timeout_s: float = 30.0,
        mutating: bool = False,
        compensate: Callable[..., Any] | None = None,
        sandbox: str = "process",
        retry: RetryPolicy | None = None,
        max_attempts: int | None = None,
        egress: list[str] | tuple[str, ...] = (),
        risk: int = 0,
        sensitivity: str | None = None,
        pii_fields: list[str] | tuple[str, ...] = (),
        max_staleness_s: float | None = None,
        fallback: Any = None,
        retry_on_timeout: bool | None = None,
        guarded_args: list[str] | tuple[str, ...] | dict[str, list[Any]] = (),
    ) -> Any:
        """Register a tool. ``sandbox="process"`` (bubblewrap) is the default; ``"none"`` runs it
        in process and is an explicit, recorded opt-in for trusted code. ``pii_fields`` names the
        arguments that receive real values from the vault instead of ``{{EMAIL_1}}`` placeholders.
        ``retry_on_timeout``: ``None`` retries a timeout unless the tool was CPU-bound for its whole
        timeout (recorded as ``details.cpu_bound``); ``True`` always, ``False`` never.
        ``guarded_args`` names the security-relevant arguments of a mutating tool (``["to"]``), or
        maps each to constants declared trusted (``{"account": ["ACME-OPS-1"]}``): a value that
        derives from untrusted content (tool, MCP or model output) and not from the run's input is
        denied or sent to review (``[guard] taint``)."""
        if isinstance(guarded_args, str):
            raise TypeError(f"guarded_args must be a list of argument names, not the string {guarded_args!r}")
        trusted_values = ({k: tuple(v or ()) for k, v in guarded_args.items()}
                          if isinstance(guarded_args, dict) else {})
        guarded = tuple(guarded_args)

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            policy = retry
            if max_attempts is not None:
                base = retry or self.default_retry
                policy = RetryPolicy(max_attempts, base.initial_s, base.multiplier, base.max_s)
            tdef = ToolDef(
                name=name or f.__name__,
                fn=f,
                scopes=tuple(scopes),
                timeout_s=timeout_s,
                mutating=mutating,
                compensate=compensate,
                sandbox=sandbox,
                retry=policy,
                egress=tuple(egress),
                risk=risk,
                sensitivity=sensitivity or ("medium" if mutating else "low"),
                pii_fields=tuple(pii_fields),
                max_staleness_s=max_staleness_s,
                fallback=_tool_of(fallback, self),
                retry_on_timeout=retry_on_timeout,
                guarded_args=guarded,
                trusted_values={k: v for k, v in trusted_values.items() if v},
            )
            if tdef.name in self._tools and self._tools[tdef.name].fn is not f:
                raise ConfigError(f"tool {tdef.name!r} is registered twice")
            self._tools[tdef.name] = tdef
            per_app = f.__dict__.get("__stalwart_tools__")
            if per_app is None:
                per_app = f.__stalwart_tools__ = weakref.WeakKeyDictionary()  # type: ignore[attr-defined]
            per_app[self] = tdef  # one function may be a tool of several apps, each with its own options
            f.__stalwart_tool__ = tdef  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    def tool_for(self, obj: Any) -> ToolDef | None:
        """This app's definition of ``obj`` (a ``ToolDef``, or a function registered with
        ``@app.tool``), or ``None``. A function registered on several apps resolves to each app's
        own registration, never to whichever app registered it last."""
        if isinstance(obj, ToolDef):
            return obj
        per_app = getattr(obj, "__stalwart_tools__", None)
        if per_app is not None:
            mine = per_app.get(self)
            if mine is not None:
                return mine  # type: ignore[no-any-return]
        found = getattr(obj, "__stalwart_tool__", None)
        return found if isinstance(found, ToolDef) else None

    def http_tool(
        self,
        name: str,
        *,
        url: str,
        input: Any = None,
        method: str = "POST",
        scopes: list[str] | tuple[str, ...] = (),
        timeout_s: float = 10.0,
        mutating: bool = False,
        retry: RetryPolicy | None = None,
        risk: int = 0,
        sensitivity: str | None = None,
        idempotent: bool = True,
    ) -> ToolDef:
        """Register a tool that is an HTTP service (returns its ``ToolDef``, usable in ``tools=[...]``).

        Arguments, validated against the pydantic model ``input`` (any JSON object if omitted),
        go as the JSON body; a credential scoped to ``scopes`` and the run's org as a bearer token;
        the call's idempotency key as an ``Idempotency-Key`` header. 429 and 5xx are retried,
        waiting durably for ``Retry-After`` without holding a worker; other 4xx fail at once.
        """
        from pydantic import BaseModel, ConfigDict

        from stalwart.engine._http_tools import HttpEndpoint

        model = input
        if model is None:
            model = type(f"{name}_args", (BaseModel,), {"model_config": ConfigDict(extra="allow")})

        async def _http_call(**kwargs: Any) -> Any:  # the engine calls the endpoint, never this body
            raise RuntimeError("HTTP tools are invoked by the engine")

        if idempotent:
            async def _http_idem(*, idempotency_key: str, **kwargs: Any) -> Any:
                raise RuntimeError("HTTP tools are invoked by the engine")

            fn = _http_idem
        else:
            fn = _http_call
        fn.__name__ = name
        tdef = ToolDef(name=name, fn=fn, scopes=tuple(scopes), timeout_s=timeout_s, mutating=mutating,
                       sandbox="none", retry=retry, risk=risk, sensitivity=sensitivity or ("medium" if mutating else
                                                                                           "low"),
                       http=HttpEndpoint(url, method.upper()), input_model=model)
        if name in self._tools:
            raise ConfigError(f"tool {name!r} is registered twice")
        self._tools[name] = tdef
        return tdef

    def mcp(
        self,
        name: str,
        *,
        command: list[str] | tuple[str, ...] | None = None,
        url: str | None = None,
        scopes: list[str] | tuple[str, ...] = (),
        code: str | Path | None = None,
        sandbox: str = "process",
        timeout_s: float = 30.0,
        max_result_bytes: int = 4 * 1024 * 1024,
        risk: int = 0,
        sensitivity: str = "medium",
        allow_private: bool = False,
        guarded_args: dict[str, list[str]] | None = None,
    ) -> Any:
        """Declare an MCP server: ``command=[...]`` (stdio, run inside the bubblewrap sandbox unless
        ``sandbox="none"``) or ``url=...`` (streamable HTTP, with a per-call credential scoped to
        ``scopes`` as the bearer token, and a short-lived one on the handshake and tool listing). An
        HTTP server is reached under the egress rules of sandboxed tools: only its URL's own
        ``host:port``, and a name resolving to a loopback or private address is refused unless
        ``allow_private=True`` (link-local addresses always are). ``code`` is the directory the stdio server's code is in
        (bound read-only, first on its ``sys.path``; default: the app's directory). Returns the
        server (``McpServer``): ``server.tool("x")`` is a tool, ``tools=[server]`` allowlists all of
        them. A tool is callable only once its definition is approved (``stalwart mcp approve``).
        A result larger than ``max_result_bytes`` (JSON) fails the call; one over 64 KiB goes to the
        artifact store. ``guarded_args`` maps a tool name to its security-relevant arguments
        (``{"send_message": ["to"]}``): their values must not derive from untrusted content, as with
        ``@app.tool(guarded_args=...)`` (the server's own read-only hints do not lift this)."""
        from stalwart.engine._mcp import McpServer
        from stalwart.mcp import ServerSpec

        if name in self.mcp_servers:
            raise ConfigError(f"MCP server {name!r} is declared twice")
        code_dir = None
        if command:
            code_dir = str(self.home / code) if code is not None else str(self.home)
        spec = ServerSpec(name=name, command=tuple(command or ()), url=url, scopes=tuple(scopes),
                          code_dir=code_dir, sandbox=sandbox, timeout_s=timeout_s,
                          max_result_bytes=max_result_bytes, allow_private=allow_private)
        server = McpServer(self, spec, risk=risk, sensitivity=sensitivity, guarded_args=guarded_args)
        self.mcp_servers[name] = server
        return server

    async def canary(
        self,
        kind: str,
        name: str,
        *,
        baseline: str,
        candidate: str,
        percent: float,
        key: str = "org",
        min_runs: int = 20,
        alpha: float = 0.05,
        max_error_increase: float = 0.02,
        operator: str = "system",
    ) -> Any:
        """Send ``percent`` % of new runs (keyed by ``org``, ``user`` or ``run``) to ``candidate``:
        a workflow version (``kind="workflow"``), a prompt template version (``"template"``, by
        template name) or a model registry entry (``"model"``, by route). It rolls back on its own
        when the candidate's error rate is significantly worse; :meth:`promote_canary` ends it."""
        from stalwart.engine._canary import Canary, set_canary

        if key not in ("org", "user", "run"):
            raise InvalidInput("canary key must be org, user or run")
        await self.connect()
        c = Canary(kind, name, baseline, candidate, percent, key, "active", min_runs, alpha, max_error_increase)
        self._canary_cache.pop(c.flag(), None)
        return await set_canary(self, c, operator=operator, action="started")

    async def promote_canary(self, kind: str, name: str, *, operator: str) -> Any:
        """Send all traffic to the candidate (an operator's decision, audited)."""
        return await self._canary_status(kind, name, "promoted", operator)

    async def rollback_canary(self, kind: str, name: str, *, operator: str) -> Any:
        """Send all traffic back to the baseline (audited)."""
        return await self._canary_status(kind, name, "rolled_back", operator)

    async def canary_stats(self, kind: str, name: str) -> dict[str, Any]:
        """Per-arm runs, error rate, cost per run and latency, with the canary's state."""
        from stalwart.engine._canary import load, require, stats

        await self.connect()
        c = require(await load(self, kind, name), kind, name)
        return {"canary": c.to_dict(), "arms": await stats(self, c)}

    async def _canary_status(self, kind: str, name: str, status: str, operator: str) -> Any:
        from dataclasses import replace

        from stalwart.engine._canary import load, require, set_canary

        await self.connect()
        c = require(await load(self, kind, name), kind, name)
        self._canary_cache.pop(c.flag(), None)
        return await set_canary(self, replace(c, status=status), operator=operator, action=status)

    async def _canary_arm(self, kind: str, name: str, org: str, user: str, run_id: str) -> tuple[Any, str | None]:
        """The canary on ``kind:name`` (cached for a second) and the arm this caller falls in."""
        from stalwart.engine._canary import choose_arm, load

        flag = f"canary:{kind}:{name}"
        cached = self._canary_cache.get(flag)
        if cached is None or time.monotonic() - cached[0] > 1.0:
            cached = (time.monotonic(), await load(self, kind, name))
            self._canary_cache[flag] = cached
        c = cached[1]
        if c is None:
            return None, None
        key_value = {"org": org, "user": user, "run": run_id}[c.key]
        return c, choose_arm(c, key_value)

    def _http_client(self) -> Any:
        if getattr(self, "_httpx", None) is None:
            import httpx

            self._httpx = httpx.AsyncClient()
        return self._httpx

    def workflow(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        version: str = "1",
        tools: list[Any] | tuple[Any, ...] = (),
        budget: Budget | None = None,
        retry: RetryPolicy | None = None,
        role: str = "agent",
    ) -> Any:
        """Register an ``async def`` workflow at ``version``. Old and new versions may coexist.
        ``role`` is what policies see as the agent's role."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            tdefs: dict[str, ToolDef] = {}
            servers: set[str] = set()
            for t in tools:
                if t in self.mcp_servers.values():
                    servers.add(t.name)
                    continue
                tdef = self.tool_for(t)
                if tdef is None:
                    raise ConfigError(f"workflow {name or f.__name__!r}: {t!r} is not a registered tool")
                tdefs[tdef.name] = tdef
            wdef = WorkflowDef(name=name or f.__name__, version=str(version), fn=f, tools=tdefs,
                               budget=budget, retry=retry, role=role, mcp_servers=frozenset(servers))
            versions = self._workflows.setdefault(wdef.name, {})
            if wdef.version in versions:
                raise ConfigError(f"workflow {wdef.key} is registered twice")
            versions[wdef.version] = wdef
            f.__stalwart_workflow__ = wdef  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    def schedule(
        self,
        cron: str,
        *,
        workflow: str,
        input: Any = None,
        name: str | None = None,
        catch_up: str = "latest",
        org: str = "",
    ) -> Any:
        """Start ``workflow`` on every tick of ``cron`` (UTC), exactly once per tick across workers.

        Returns the schedule; used as a decorator on ``fn(tick: datetime) -> input`` it builds each
        run's input. ``catch_up`` after downtime: ``latest``, ``all`` or ``skip``.
        """
        from stalwart.engine._schedules import Schedule

        sched = Schedule(name=name or f"{workflow}:{cron}", cron=cron, workflow=workflow, input=input,
                         catch_up=catch_up, org=org)
        if sched.name in self.schedules:
            raise ConfigError(f"schedule {sched.name!r} is registered twice")
        self.schedules[sched.name] = sched
        return sched

    def webhook(self, name: str, *, workflow: str, secret_env: str, org: str = "",
                replay_window_s: float = 300.0) -> Any:
        """Let signed HTTP requests (``POST /v1/triggers/{name}``) start ``workflow`` with their JSON body.

        The HMAC secret is read from the environment variable ``secret_env``; see
        :mod:`stalwart.engine._webhooks` for the signature format. The kill switch refuses them too.
        """
        from stalwart.engine._webhooks import WebhookTrigger

        if name in self.webhooks:
            raise ConfigError(f"webhook trigger {name!r} is registered twice")
        self.workflow_def(workflow)
        trig = WebhookTrigger(name, workflow, secret_env, org, replay_window_s)
        self.webhooks[name] = trig
        return trig

    async def trigger_webhook(self, name: str, body: bytes, signature: str | None, delivery: str | None) -> str:
        """Verify a webhook delivery and start (once per delivery) its workflow; return the run id."""
        import hashlib
        import json

        from stalwart.engine._webhooks import verify_signature

        trig = self.webhooks.get(name)
        if trig is None:
            raise RunNotFound(f"no webhook trigger named {name!r}")
        verify_signature(signature, trig.secret(), body, self.clock.time(), trig.replay_window_s)
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise InvalidInput("webhook body is not JSON") from None
        key = delivery or hashlib.sha256((signature or "").encode()).hexdigest()
        return await self.start(trig.workflow, payload, idempotency_key=f"webhook:{name}:{key}", org=trig.org,
                                user=f"webhook:{name}")

    async def pause_schedule(self, name: str, paused: bool = True) -> None:
        """Pause (or resume) a schedule for every worker."""
        from stalwart.engine._schedules import set_paused

        await self.connect()
        await set_paused(self, name, paused)

    def workflow_def(self, name: str, version: str | None = None) -> WorkflowDef:
        versions = self._workflows.get(name)
        if not versions:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise UnknownWorkflow(f"unknown workflow {name!r} (this app has: {known})")
        if version is None:
            return versions[max(versions, key=_version_key)]
        if version not in versions:
            raise UnknownWorkflow(
                f"workflow {name!r} has no version {version!r} here (versions: {', '.join(sorted(versions))})"
            )
        return versions[version]

    def workflow_keys(self) -> list[str]:
        return [w.key for versions in self._workflows.values() for w in versions.values()]

    def workflows(self) -> list[WorkflowDef]:
        return [w for versions in self._workflows.values() for w in versions.values()]

    def tool_def(self, name: str) -> ToolDef | None:
        return self._tools.get(name)

    def tools(self) -> list[ToolDef]:
        return list(self._tools.values())

    # -- connection --------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the app is not connected yet: await app.connect() first")
        return self._store

    async def connect(self) -> Store:
        """Open the store (applying migrations) once; later calls return it."""
        if self._store is not None:
            return self._store
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._store is None:
                store = await open_store(self.settings.db, migrate=True)
                from stalwart.telemetry import Telemetry

                self.telemetry = Telemetry(self.settings, clock=self.clock.time)
                self.telemetry.attach_store(store)
                self._store = store
                from stalwart.engine._governed import Governance

                # The kill switch holds the broker, so engaging it from anywhere revokes credentials.
                gov = Governance(self, broker=await self.credential_broker())
                try:
                    await gov.start()  # seeds or adopts the store's policies before any decision
                except BaseException:
                    await gov.close()
                    await self.telemetry.close()
                    self.telemetry, self._store = None, None
                    await store.close()
                    raise
                self._governance = gov
        return self._store

    async def close(self) -> None:
        for w in list(self._workers):
            await w.stop()
        for server in self.mcp_servers.values():
            await server.aclose()
        if self._sandbox is not None and hasattr(self._sandbox, "aclose"):
            await self._sandbox.aclose()  # the warm pool's sandboxes
            self._sandbox = None
        if self._governance is not None:
            await self._governance.close()
            self._governance = None
        if self.telemetry is not None:
            await self.telemetry.close()
            self.telemetry = None
        if self._gateway is not None:
            await self._gateway.aclose()
            self._gateway = None
        if getattr(self, "_httpx", None) is not None:
            await self._httpx.aclose()
            self._httpx = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        self._vault = None
        self._broker = None
        self._memory = None
        self._artifacts = None
        self._canary_cache.clear()

    def worker(self, concurrency: int | None = None, **kwargs: Any) -> Worker:
        """An in-process worker; use ``async with app.worker(concurrency=64): ...``."""
        from stalwart.engine._worker import Worker

        return Worker(self, concurrency=concurrency or self.settings.worker.concurrency, **kwargs)

    # -- runs --------------------------------------------------------------------------------
    async def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        org: str = "",
        user: str = "",
        version: str | None = None,
        parent_id: str | None = None,
        confirm_over_usd: float | None = None,
        _meta: dict[str, Any] | None = None,
    ) -> str:
        """Start a run and return its id. A reused ``idempotency_key`` returns the existing run.

        With ``confirm_over_usd=X`` the start is refused with :class:`NeedsConfirmation` when the
        p95 cost estimate exceeds ``X`` USD.
        """
        canary_meta = None
        if version is None and self._store is not None:
            c, arm = await self._canary_arm("workflow", workflow, org, user, idempotency_key or "")
            if c is not None:
                version = c.candidate if arm == "candidate" else c.baseline
                canary_meta = {"workflow": [c.kind, c.name, arm]}
        wdef = self.workflow_def(workflow, version)
        input_json = wdef.input_json(input)
        if confirm_over_usd is not None:
            est = await self.estimate_cost(workflow, input, version=wdef.version)
            if est.usd_p95 > confirm_over_usd:
                raise NeedsConfirmation(
                    f"run of {wdef.key} is estimated at p95 ${est.usd_p95:.4f}, over the confirmed "
                    f"${confirm_over_usd:.4f}; confirm a higher amount to start it",
                    details={"estimate": est.to_json()},
                )
        if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key):
            raise InvalidInput("idempotency_key must be a non-empty string")
        store = await self.connect()
        now = self.clock.time()
        new_run_id = new_id(now)
        from stalwart.governance import AuditEvent

        audit = self._governance.audit.prepare([AuditEvent(
            event_type="run.started", action="start_run", actor=f"user:{user}" if user else "system",
            resource=wdef.key, decision="accepted", org_id=org, user_id=user, run_id=new_run_id,
            workflow_version=wdef.key, details={"idempotency_key": idempotency_key, "parent_id": parent_id},
            event_id=f"{new_run_id}:start", timestamp=now,
        )])
        run_id, _created = await store.create_run(
            NewRun(
                id=new_run_id,
                workflow=wdef.name,
                version=wdef.version,
                input_json=input_json,
                trace_id=new_trace_id(),
                created_at=now,
                org=org,
                user=user,
                idempotency_key=idempotency_key,
                parent_id=parent_id,
                meta={**(_meta or {}), **({"canary": canary_meta} if canary_meta else {})},
            ),
            refuse_if_flag=KILL_SWITCH_FLAG,
            audit_bodies=audit.bodies,
        )
        if run_id is None:
            raise KillSwitchEngaged("the kill switch is engaged: no new runs start until it is released")
        for w in self._workers:
            w.poke()
        return run_id

    async def estimate_cost(self, workflow: str, input: Any = None, *, version: str | None = None) -> Any:
        """Estimate one run's cost (``CostEstimate``: USD and tokens p50/p95/max) without calling a
        model: from the workflow's first rendered prompt, its version's completed runs and its cap."""
        from stalwart.engine._estimate import estimate_cost

        return await estimate_cost(self, workflow, input, version)

    async def get_run(self, run_id: str) -> RunInfo:
        store = await self.connect()
        rec = await store.get_run(run_id)
        if rec is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return RunInfo.from_record(rec)

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, org: str | None = None, limit: int = 100
    ) -> list[RunInfo]:
        store = await self.connect()
        if status is not None and status not in RunStatus.__members__:
            raise InvalidInput(f"unknown status {status!r}; use one of {', '.join(RunStatus.__members__)}")
        return [RunInfo.from_record(r) for r in await store.list_runs(status=status, workflow=workflow, org=org,
                                                                         limit=limit)]

    async def journal(self, run_id: str) -> list[JournalEntry]:
        store = await self.connect()
        return await store.journal(run_id)

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait for the run to end; return its output, or raise :class:`WorkflowFailed`.

        With a worker in this process the wait is woken by the run's own completion, so a
        thousand waiters cost a thousand reads, not a thousand polling loops; otherwise it polls
        with backoff.
        """
        await self.connect()
        deadline = None if timeout is None else time.monotonic() + timeout
        event = self._waiters.setdefault(run_id, asyncio.Event())
        delay = 0.005
        try:
            while True:
                info = await self.get_run(run_id)
                if info.status in TERMINAL:
                    if info.status is RunStatus.COMPLETED:
                        return info.output
                    message = (info.error or {}).get("message") or info.status.value
                    raise WorkflowFailed(
                        f"run {run_id} ended {info.status.value}: {message}",
                        run_id=run_id,
                        status=info.status.value,
                        error=info.error,
                    )
                wait = 1.0 if self._workers else delay
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"run {run_id} did not finish within {timeout}s (status {info.status})")
                    wait = min(wait, left)
                try:
                    await asyncio.wait_for(event.wait(), wait)
                except TimeoutError:
                    delay = min(delay * 2, 0.25)
                event.clear()
        finally:
            self._waiters.pop(run_id, None)

    async def events(
        self, run_id: str, after: int = 0, *, follow: bool = True, poll_s: float = 0.25
    ) -> AsyncIterator[RunEvent]:
        """The run's durable event stream (``ctx.emit``, streamed model calls) after offset ``after``.

        An async iterator of :class:`~stalwart.store.RunEvent` in offset order (1, 2, 3…, no gaps,
        never twice). With ``follow`` it waits for new events and ends once the run has ended and
        every event is read; without, it ends at the last event written so far. Raises
        :class:`~stalwart.errors.RunNotFound` for an unknown run. Resume a broken read by passing
        the last offset seen as ``after``.
        """
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidInput(f"after must be an offset (an integer >= 0), not {after!r}")
        await self.connect()
        delay = min(0.02, poll_s)
        while True:
            # The status is read before the events: a run seen ended has written all of them.
            ended = (await self.get_run(run_id)).status in TERMINAL
            batch = await self.store.read_events(run_id, after, 500)
            for ev in batch:
                after = ev.offset
                yield ev
            if len(batch) == 500:
                continue
            if ended or not follow:
                return
            if batch:
                delay = min(0.02, poll_s)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, poll_s)

    async def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        """Deliver a signal to a run (``ctx.wait_signal(name)`` returns ``payload``)."""
        from stalwart.engine._serde import encode

        store = await self.connect()
        await store.send_signal(run_id, name, encode(payload), self.clock.time())
        for w in self._workers:
            w.poke()

    async def cancel(self, run_id: str) -> RunInfo:
        """Request cancellation; it takes effect at the run's next step boundary."""
        store = await self.connect()
        rec = await store.request_cancel(run_id, self.clock.time())
        for w in self._workers:
            w.poke()
        if rec.status in TERMINAL:
            self._run_finished(run_id)
        return RunInfo.from_record(rec)

    async def replay(self, run_id: str) -> Any:
        """Re-execute a recorded run's workflow code against its journal (no provider or tool is
        called) and return a ``ReplayReport`` saying whether it diverged."""
        from stalwart.engine._replay import replay_run

        return await replay_run(self, run_id)

    async def fork(self, run_id: str, from_step: int, *, idempotency_key: str | None = None) -> str:
        """Start a new run with the same input that reuses the journal before position ``from_step``."""
        store = await self.connect()
        src = await store.get_run(run_id)
        if src is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        self.workflow_def(src.workflow, src.version)
        if from_step < 0:
            raise InvalidInput("--from-step must be 0 or more")
        now = self.clock.time()
        new = NewRun(id=new_id(now), workflow=src.workflow, version=src.version, input_json=src.input_json,
                     trace_id=new_trace_id(), created_at=now, org=src.org, user=src.user,
                     idempotency_key=idempotency_key, meta={"forked_from": run_id, "from_step": from_step})
        new_id_ = await store.fork_run(new, run_id, src.seq_base, src.seq_base + from_step)
        for w in self._workers:
            w.poke()
        return new_id_

    # -- dead-letter queue -------------------------------------------------------------------
    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        store = await self.connect()
        return await store.list_dead_letters(limit)

    async def retry_dead_letter(self, run_id: str) -> RunInfo:
        """Put a dead-lettered run back in the queue.

        If compensations already undid its effects, it starts over as a new generation (its
        journal is kept for the record; sequence numbers, and so idempotency keys, continue).
        Otherwise it resumes where it failed, replaying its completed steps.
        """
        store = await self.connect()
        journal = await store.journal(run_id)
        compensated = any(e.kind == "compensation" for e in journal)
        rec = await store.retry_dead_letter(run_id, self.clock.time(), new_generation=compensated)
        for w in self._workers:
            w.poke()
        return RunInfo.from_record(rec)

    # -- kill switch (the flag; governance builds the full switch on it) ----------------------
    async def kill_switch_engaged(self) -> bool:
        """Whether the kill switch is engaged (read at most every 250 ms per process on PostgreSQL;
        every start and every step commit also checks it in its own statement)."""
        store = await self.connect()
        now = time.monotonic()
        if store.kind == "postgres" and now - self._kill_cache[0] < 0.25:
            return self._kill_cache[1]
        engaged = (await store.get_flag(KILL_SWITCH_FLAG)) is not None
        self._kill_cache = (now, engaged)
        return engaged

    # -- hooks used by workers and executions -----------------------------------------------
    def _attach_worker(self, w: Worker) -> None:
        self._workers.append(w)

    def _detach_worker(self, w: Worker) -> None:
        if w in self._workers:
            self._workers.remove(w)

    def _note_wake(self, wake_at: float | None) -> None:
        if wake_at is not None:
            self._local_wakes.append(wake_at)

    def _next_local_wake(self) -> float | None:
        now = self.clock.time()
        self._local_wakes = [w for w in self._local_wakes if w > now - 1.0]
        return min(self._local_wakes, default=None)

    def _run_finished(self, run_id: str) -> None:
        """The run reached a terminal state: wake whoever waits for its result here."""
        ev = self._waiters.get(run_id)
        if ev is not None:
            ev.set()

    def _count_unauthorized(self, tool: str) -> None:
        if self.telemetry is not None:
            self.telemetry.unauthorized_tool_call(tool)

    async def gateway(self) -> Any:
        """The model gateway (``stalwart.gateway.Gateway``) bound to this app's store and settings."""
        if self._gateway is None:
            from stalwart.gateway import Gateway

            self._gateway = Gateway(self.settings, await self.connect(), clock=self.clock.time,
                                    prompts_dir=self.home / "prompts", local_rules=self.local_rules or None)
        return self._gateway

    async def governance(self) -> Any:
        """Audit log, policy engine, risk scorer, review queue, kill switch (holding the credential
        broker) and compliance of this app: built once, shared by the engine, the API and the CLI."""
        await self.connect()
        return self._governance

    async def memory(self) -> Any:
        """Agent memory (``stalwart.memory.Memory``): episodic and semantic, org-isolated, redacted, TTL'd.

        Uses the offline MiniLM embedder when the ``memory`` extra is installed, else the labelled
        lexical fallback (hashed words, not semantic)."""
        if self._memory is None:
            from stalwart.memory import Memory, load_embedder

            embedder = await asyncio.to_thread(load_embedder, fallback=True)  # torch loads off the loop
            self._memory = Memory(await self.connect(), self.guard(), clock=self.clock.time, embedder=embedder)
        return self._memory

    async def artifacts(self) -> Any:
        """The artifact store (encrypted at rest, content-addressed) at ``settings.artifacts.url``
        (a directory or an S3-compatible bucket shared by every host)."""
        if self._artifacts is None:
            from stalwart.guard import load_master_key
            from stalwart.store import ArtifactStore, open_blobs

            a = self.settings.artifacts
            blobs = open_blobs(a.url, endpoint_url=a.s3_endpoint_url, setting="artifacts.url")
            self._artifacts = ArtifactStore(await self.connect(), blobs,
                                            master_key=load_master_key(self.settings.guard), clock=self.clock.time)
        return self._artifacts

    def guard(self) -> Any:
        """The guard (``stalwart.guard.Guard``) configured from ``settings.guard``."""
        if self._guard is None:
            from stalwart.guard import Guard

            self._guard = Guard(self.settings.guard)
            self._guard_loaded = set()
        return self._guard

    async def guard_ready(self, *, pii: bool = False) -> Any:
        """The guard with its models loaded, loading them in a thread the first time: loading takes
        about a second and must never block the event loop (heartbeats would stall)."""
        guard = self.guard()
        part = "redactor" if pii else "detector"
        if part in self._guard_loaded:
            return guard
        if self._guard_lock is None:
            self._guard_lock = asyncio.Lock()
        async with self._guard_lock:
            if part not in self._guard_loaded:
                enabled = guard.settings.pii if pii else guard.settings.injection
                if enabled:
                    await asyncio.to_thread(getattr(guard, part).load)
                self._guard_loaded.add(part)
        return guard

    async def vault(self, required: bool = True) -> Any:
        """The encrypted PII vault. Without a master key it is ``None``, or, when ``required``,
        a :class:`ConfigError` naming the setting (fail closed: PII is never stored unencrypted)."""
        if self._vault is None:
            from stalwart.guard import Vault, load_master_key

            try:
                key = load_master_key(self.settings.guard)
            except ConfigError:
                if required:
                    raise
                return None
            self._vault = Vault(await self.connect(), settings=self.settings.guard, master_key=key)
        return self._vault

    def _guard_verdict(self, source: str, action: str, score: float, pii_types: list[str] | None = None) -> None:
        if self.telemetry is not None:
            self.telemetry.guard_verdict(source, action, score, pii_types or [])

    def _filter_tool_calls(
        self, ex: RunExecution, calls: list[dict[str, Any]], meta: dict[str, Any],
        tools: dict[str, ToolDef] | None = None,
    ) -> tuple[list[Any], list[Any]]:
        """Split the model's tool calls into those allowed (a tool of ``tools``, by default the
        workflow's, with valid arguments) and those blocked, which are recorded and flagged. Each
        blocked call comes back with the ``reason`` and ``code`` of its refusal."""
        from stalwart.guard import ToolCallPolicy

        allowed = ex.wdef.tools if tools is None else tools
        policy = ToolCallPolicy({name: t.json_schema() for name, t in allowed.items()})
        kept, blocked = [], []
        for call in calls:
            decision = policy.check(str(call.get("name")), call.get("arguments") or call.get("args") or {})
            if decision.allowed:
                kept.append(call)
                continue
            self._count_unauthorized(str(call.get("name")))
            record = {"where": "model tool call", "action": "block", "tool": call.get("name"),
                      "reason": decision.reason, "code": decision.code}
            meta.setdefault("blocked_tool_calls", []).append(record)
            ex.flag(record)
            blocked.append({**call, "reason": decision.reason, "code": decision.code})
        return kept, blocked

    async def credential_broker(self) -> Any:
        """The per-invocation credential broker (``stalwart.sandbox.CredentialBroker``), shared by
        every tool call of this app."""
        if self._broker is None:
            from stalwart.sandbox import CredentialBroker

            self._broker = CredentialBroker(await self.connect(), clock=self.clock.time)
        return self._broker

    async def _run_sandboxed(
        self, ex: RunExecution, tool: ToolDef, args: dict[str, Any], meta: dict[str, Any]
    ) -> Any:
        from stalwart.engine._sandboxed import run_sandboxed

        return await run_sandboxed(self, ex, tool, args, meta)


def _tool_of(fn: Any, app: App) -> ToolDef | None:
    if fn is None or isinstance(fn, ToolDef):
        return fn
    tdef = app.tool_for(fn)
    if tdef is None:
        raise ConfigError(f"fallback {fn!r} is not a registered tool (register it with @app.tool first)")
    return tdef  # type: ignore[no-any-return]


def _version_key(v: str) -> tuple[Any, ...]:
    parts: list[Any] = []
    for p in v.replace("-", ".").split("."):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    return tuple(parts)
