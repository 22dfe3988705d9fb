"""The gateway: one call in, one validated, costed and routed ``LLMResult`` out.

For each call: render the prompt, count its tokens, work out what every budget scope has left,
plan the route (breakers, PII, context, latency, budget), then walk the plan as a fallback chain:
cache lookup, limits, provider call with retries (``Retry-After`` honoured), structured-output
validation with up to two correction prompts (an answer still invalid after them passes the call
to the next candidate). Every provider call first reserves its worst-case
cost in the ledger (atomically, against every cap that applies), then settles to its actual
cost; a stream whose output outgrows its reservation is cut. Threshold crossings are computed
from the ledger's atomic before/after totals, so each fires once per period.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stalwart.errors import BudgetExceeded, OutputValidationError, PolicyDenied, ProviderError
from stalwart.gateway._alerts import AlertSink
from stalwart.gateway._breaker import Breakers
from stalwart.gateway._budget import Budget, Hold, Spend, affordable_out, crossings, reservation
from stalwart.gateway._cache import ResponseCache, cache_key
from stalwart.gateway._cost import CostEstimate, estimate_cost
from stalwart.gateway._limits import Limiter
from stalwart.gateway._providers._base import Provider
from stalwart.gateway._providers.local import LocalRule
from stalwart.gateway._registry import Model, Registry
from stalwart.gateway._router import Needs, plan_route
from stalwart.gateway._state import MemoryState, SharedState
from stalwart.gateway._structured import (
    MAX_CORRECTIONS,
    correction_message,
    schema_instruction,
    strict_schema,
    validate_output,
)
from stalwart.gateway._templates import BUNDLED_PROMPTS, TemplateStore
from stalwart.gateway._tokens import count_messages, count_text
from stalwart.gateway._types import CallContext, LLMRequest, LLMResult, ProviderRequest, ProviderResponse
from stalwart.settings import Settings

__all__ = ["DEFAULT_MAX_TOKENS", "Gateway"]

log = logging.getLogger("stalwart.gateway")

DEFAULT_MAX_TOKENS = 1024
"""``max_tokens`` of a call that does not set one."""
_FALLBACK_KINDS = {
    "rate_limited",
    "server",
    "timeout",
    "connection",
    "stream_cut",
    "malformed",
    "context_overflow",
    "content_filter",
    "breaker_open",
}
_BREAKER_KINDS = {"server", "timeout", "connection", "stream_cut", "malformed"}
_SPEND_NS = "gateway.spend"
_LEASE_MARGIN_S = 30.0
Delta = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class _Tally:
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    over: list[str] = field(default_factory=list)
    streamed: bool = False
    cost_known: bool = True
    stream_tokens: int = 0
    """Output tokens the current attempt has streamed so far (charged if it is cut)."""

    def add(self, model: Model, resp: ProviderResponse) -> None:
        self.tokens_in += resp.tokens_in
        self.tokens_out += resp.tokens_out
        self.usd += model.cost(resp.tokens_in, resp.tokens_out)
        self.cost_known = self.cost_known and model.price_known


class Gateway:
    """Routes, budgets, caches, calls and validates model calls.

    ``store`` (any ``stalwart.store.Store``) shares breakers, caps, spend counters, limits and the
    cache across workers; with ``None`` they hold for this process only. ``settings.redis_url``
    moves the cache and rate-limit counters to Redis. ``clock`` is the business clock (budget
    months, cache TTLs, breaker timing); ``sleep`` and ``rng`` drive retry waits.
    ``user_caps``/``org_monthly_caps`` give caps by user/org; :meth:`set_cap` stores more.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: SharedState | None = None,
        *,
        clock: Callable[[], float] = time.time,
        prompts_dir: Path | str | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        local_rules: list[LocalRule] | None = None,
        cache_ttl_s: float = 3600.0,
        attempts_per_model: int = 2,
        max_retry_wait_s: float = 30.0,
        backoff_s: float = 0.1,
        user_caps: dict[str, Budget] | None = None,
        org_monthly_caps: dict[str, Budget] | None = None,
        on_alert: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.registry = Registry(self.settings, local_rules=local_rules)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._state: SharedState = store if store is not None else MemoryState()
        fast: SharedState = self._state
        if self.settings.redis_url:
            from stalwart.gateway._redis import RedisState

            fast = RedisState(self.settings.redis_url, self._state, clock)
        self._fast = fast
        self.cache = ResponseCache(fast, ttl_s=cache_ttl_s)
        self.limiter = Limiter(fast)
        w = self.settings.worker
        self.breakers = Breakers(
            self._state, threshold=w.breaker_failure_threshold, reset_s=w.breaker_reset_s
        )
        dirs = [Path(p) for p in (prompts_dir, self.settings.prompts_dir) if p]
        self.templates = TemplateStore(  # never the working directory: every host must render alike
            [*dirs, BUNDLED_PROMPTS], store if store is not None else None,
            refresh_s=self.settings.governance.refresh_s,
        )
        self._attempts_per_model = max(1, attempts_per_model)
        self._max_retry_wait_s = max_retry_wait_s
        self._backoff_s = backoff_s
        self._caps: dict[tuple[str, str], Budget | None] = {
            **{("user", k): v for k, v in (user_caps or {}).items()},
            **{("org", k): v for k, v in (org_monthly_caps or {}).items()},
        }
        self._fixed_caps = set(self._caps)
        self._cap_seen: dict[tuple[str, str], float] = {}
        self.alerts = AlertSink(on_alert, self.settings.webhook_url)
        self._warned: set[str] = set()

    # -- public --------------------------------------------------------------------------------
    async def complete(
        self, req: LLMRequest, call: CallContext, *, on_delta: Delta | None = None
    ) -> LLMResult:
        """Make one model call under ``call``'s budgets; see the module docstring for the steps.

        ``on_delta`` receives the answer's text as the provider produces it (the call streams).
        Once a piece was handed on, a failure is raised as is: no retry, no fallback (what the
        caller already has cannot be taken back). Whatever ``on_delta`` raises ends the call.

        Raises ``BudgetExceeded`` (no cap has room, or actual usage went past one: the result is
        then in ``details["result"]``), ``OutputValidationError`` (non-retryable: the route's
        last candidate still answered invalid output after the corrections), ``PolicyDenied``
        (a PII call with no model allowed to take it), ``ProviderError`` (every candidate failed;
        ``details`` holds routing and attempts) or ``ConfigError`` (naming the setting).
        """
        started = time.perf_counter()
        now = self._clock()
        if req.template is not None:
            await self.templates.refresh(req.template)
        messages, template_hash = self._prompt(req)
        candidates = self.registry.route(req.task, req.model)
        schema = strict_schema(req.output) if req.output is not None else None
        max_tokens = req.max_tokens or DEFAULT_MAX_TOKENS
        prompt_tokens = count_messages(messages, candidates[0].entry.model, req.tools)
        spends = await self._spends(call, now)
        if any(not m.price_known for m in candidates):
            self._warn_unpriced([m for m in candidates if not m.price_known])
        allowance = {
            m.name: affordable_out(
                spends, prompt_tokens, max_tokens, m.entry.price_in_per_mtok, m.entry.price_out_per_mtok
            )
            for m in candidates
        }
        breaker_open = {}
        for m in candidates:
            st = await self.breakers.get(m.name, now)
            breaker_open[m.name] = not st.allows(now, self.breakers.reset_s)
        plan = plan_route(
            candidates,
            Needs(prompt_tokens, max_tokens, req.pii, req.latency_budget_ms),
            breaker_open=breaker_open,
            allowance=allowance,
        )
        route_name = (
            "override" if req.model else (req.task if req.task in self.registry.routes else "default")
        )
        routing: dict[str, Any] = {
            "route": route_name,
            "candidates": [m.name for m in candidates],
            "skipped": list(plan.skipped),
        }
        if not plan.order:
            self._no_route(plan.skipped, routing, req.task)
        tally = _Tally()
        last: ProviderError | None = None
        last_budget: BudgetExceeded | None = None
        last_invalid: OutputValidationError | None = None
        for n, (model, out_allow) in enumerate(plan.order, 1):
            provider = self.registry.provider(model)
            msgs = list(messages)
            if schema is not None and not provider.supports_json_schema:
                msgs.insert(1 if msgs and msgs[0]["role"] == "system" else 0, schema_instruction(schema))
            preq = ProviderRequest(
                model_id=model.entry.model,
                messages=msgs,
                max_tokens=out_allow,
                temperature=req.temperature,
                tools=req.tools,
                json_schema=schema if provider.supports_json_schema else None,
                schema_name=req.output.__name__ if req.output else "output",
                stream=req.stream or on_delta is not None,
                timeout_s=model.entry.timeout_s,
                task=req.task,
                vars=req.vars,
                on_delta=on_delta,
            )
            key = None
            if req.cacheable or req.temperature == 0:
                params = {
                    "max_tokens": max_tokens,
                    "temperature": req.temperature,
                    "tools": req.tools,
                    "schema": schema,
                }
                key = cache_key(model.provider, model.entry.model, msgs, params, template_hash)
                doc = await self.cache.get(key, now)
                if doc is not None:
                    routing.update(chosen=model.name, reason="cache hit")
                    return self._from_cache(doc, req.output, routing, started)
            try:
                resp = await self._call_model(model, provider, preq, tally, call, spends)
                value: Any = resp.text
                if req.output is not None and not resp.tool_calls:
                    value, resp = await self._validated(
                        model, provider, preq, resp, req.output, tally, call, spends
                    )
            except OutputValidationError as err:
                # Still wrong after the correction prompts: the next candidate gets the call (the
                # answers already paid for stay in the tally); with none left, the error stands.
                if n == len(plan.order) or tally.streamed:
                    err.details.update(routing=routing)
                    raise
                routing["skipped"].append({"model": model.name, "why": f"failed: invalid_output: {err.message}"})
                log.info("gateway: %s answered invalid output, falling back", model.name)
                last_invalid = err
                continue
            except BudgetExceeded as err:
                if err.details.get("stage") != "reserve" or tally.streamed:
                    raise
                routing["skipped"].append({"model": model.name, "why": f"budget: {err.message}"})
                last_budget = err
                continue
            except ProviderError as err:
                kind = err.details.get("kind")
                if kind not in _FALLBACK_KINDS or tally.streamed:
                    err.details.update(routing=routing, attempts=tally.attempts)
                    raise
                routing["skipped"].append({"model": model.name, "why": f"failed: {kind}: {err.message}"})
                log.info("gateway: %s failed (%s), falling back", model.name, kind)
                last = err
                continue
            fell_back = len(routing["skipped"]) > len(plan.skipped)
            routing.update(chosen=model.name, reason=self._reason(model, plan.order, fell_back))
            result = LLMResult(
                value=value,
                text=resp.text,
                model=model.name,
                provider=model.provider,
                model_id=model.entry.model,
                response_model=resp.response_model,
                tokens_in=tally.tokens_in,
                tokens_out=tally.tokens_out,
                cost_usd=round(tally.usd, 10),
                cached=False,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                routing=routing,
                template_hash=template_hash,
                attempts=tally.attempts,
                finish_reason=resp.finish_reason,
                tool_calls=resp.tool_calls,
                cost_known=tally.cost_known,
            )
            await self._settle(result, call, tally)
            if key is not None:
                await self.cache.put(key, result.to_json(), now)
            return result
        if last is None and last_invalid is not None:
            last_invalid.details.update(routing=routing, attempts=tally.attempts)
            raise last_invalid
        if last is None:
            assert last_budget is not None
            last_budget.details.update(routing=routing, attempts=tally.attempts)
            raise last_budget
        raise ProviderError(
            f"every model for task {req.task!r} failed; last: {last.message}",
            status=last.status,
            retryable=True,
            retry_after=last.retry_after,
            details={"kind": last.details.get("kind"), "routing": routing, "attempts": tally.attempts},
        )

    def estimate(
        self,
        req: LLMRequest,
        *,
        history: list[tuple[int, float]] | None = None,
        budget: Budget | None = None,
    ) -> CostEstimate:
        """Cost estimate of a run from its rendered first prompt, its version's history of completed
        runs (``(tokens, usd)`` each) and its budget cap. Pure: no provider is called."""
        messages, _ = self._prompt(req)
        model = self.registry.route(req.task, req.model)[0]
        self.registry.check(model)
        e = model.entry
        return estimate_cost(
            prompt_tokens=count_messages(messages, e.model, req.tools),
            max_tokens=req.max_tokens or DEFAULT_MAX_TOKENS,
            price_in=e.price_in_per_mtok,
            price_out=e.price_out_per_mtok,
            model=model.name,
            history=history,
            budget=budget,
        )

    async def set_cap(self, scope: str, name: str, cap: Budget | None) -> None:
        """Store a per-user per-run cap (``scope="user"``) or per-org monthly cap (``"org"``)."""
        if scope not in ("user", "org"):
            raise ValueError("scope must be 'user' or 'org'")
        value = None if cap is None else {"max_tokens": cap.max_tokens, "max_usd": cap.max_usd}
        await self._state.set_flag(f"gateway.cap.{scope}.{name}", value, self._clock())
        self._caps[(scope, name)] = cap
        self._cap_seen[(scope, name)] = self._clock()

    async def org_spend(self, org: str, now: float | None = None) -> tuple[float, float]:
        """``(tokens, usd)`` spent by ``org`` in the calendar month (UTC) of ``now``.

        Counted whether or not the org has a cap (the ledger of the budget store: the database,
        or Redis when ``redis_url`` is set)."""
        month = time.strftime("%Y-%m", time.gmtime(self._clock() if now is None else now))
        tokens = await self._fast.counter_get(_SPEND_NS, f"org:{org}:{month}:tokens")
        usd = await self._fast.counter_get(_SPEND_NS, f"org:{org}:{month}:usd")
        return tokens, usd

    async def warm(self) -> list[str]:
        """Load every in-process model of the registry now (in a thread, off the event loop), so
        that no call pays for it; a worker does this before it claims work. Returns their names.

        Raises ``ConfigError`` naming the missing package when one cannot load (fail closed)."""
        warmed = []
        for model in self.registry.models.values():
            if model.provider != "embedded":
                continue
            provider = self.registry.provider(model)
            await provider.warm()  # type: ignore[attr-defined]
            warmed.append(model.name)
        return warmed

    def provider(self, name: str) -> Provider:
        """The adapter of registry entry ``name`` (checked: prices, key)."""
        return self.registry.provider(self.registry.get(name))

    async def aclose(self) -> None:
        """Close provider clients and wait for pending alert webhooks."""
        await self.alerts.drain()
        await self.registry.aclose()
        aclose = getattr(self._fast, "aclose", None)
        if aclose is not None and self._fast is not self._state:
            await aclose()

    # -- steps -----------------------------------------------------------------------------------
    def _prompt(self, req: LLMRequest) -> tuple[list[dict[str, Any]], str | None]:
        if req.template is not None:
            tpl = self.templates.get(req.template)
            msgs = tpl.render(req.vars)
            if req.messages:
                msgs.extend(req.messages)
            return msgs, tpl.hash
        if not req.messages:
            raise ValueError("LLMRequest needs a template or messages")
        return list(req.messages), None

    async def _cap(self, scope: str, name: str, now: float) -> Budget | None:
        if not name:
            return None
        k = (scope, name)
        if k in self._fixed_caps or (k in self._caps and now - self._cap_seen.get(k, -1e18) < 5.0):
            return self._caps[k]
        raw = await self._state.get_flag(f"gateway.cap.{scope}.{name}")
        cap = Budget(raw.get("max_tokens"), raw.get("max_usd")) if raw else None
        self._caps[k], self._cap_seen[k] = cap, now
        return cap

    async def _spends(self, call: CallContext, now: float) -> list[Spend]:
        out = []
        run_key = f"run:{call.run_id}"
        if call.budget is not None:
            out.append(Spend("run", call.budget, call.spent_tokens, call.spent_usd, run_key))
        ucap = await self._cap("user", call.user, now)
        if ucap is not None:
            out.append(Spend("user", ucap, call.spent_tokens, call.spent_usd, run_key))
        ocap = await self._cap("org", call.org, now)
        if ocap is not None:
            month = time.strftime("%Y-%m", time.gmtime(now))
            key = f"org:{call.org}:{month}"
            tokens = await self._fast.counter_get(_SPEND_NS, f"{key}:tokens")
            usd = await self._fast.counter_get(_SPEND_NS, f"{key}:usd")
            out.append(Spend("org_month", ocap, tokens, usd, key, ledger_spent=True))
        return out

    def _no_route(self, skipped: list[dict[str, Any]], routing: dict[str, Any], task: str) -> None:
        whys = "; ".join(f"{s['model']}: {s['why']}" for s in skipped)
        details = {"routing": routing}
        if any(s["why"].startswith("budget") for s in skipped):
            raise BudgetExceeded(f"budget exhausted for task {task!r}: {whys}", details=details)
        if all(s["why"].startswith("pii") for s in skipped):
            raise PolicyDenied(
                f"no model of the route for task {task!r} may receive PII: {whys}", details=details
            )
        raise ProviderError(
            f"no model available for task {task!r}: {whys}",
            retryable=True,
            details={"kind": "breaker_open", **details},
        )

    async def _call_model(
        self,
        model: Model,
        provider: Provider,
        preq: ProviderRequest,
        tally: _Tally,
        call: CallContext,
        spends: list[Spend],
    ) -> ProviderResponse:
        """One model, with retries on retryable errors; raises the last ``ProviderError``.

        Each attempt reserves its worst case first (``BudgetExceeded`` with
        ``details["stage"] == "reserve"`` when it does not fit) and settles after, failed or not."""
        for attempt in range(1, self._attempts_per_model + 1):
            now = self._clock()
            t0 = time.perf_counter()
            hold_id, hold = await self._reserve(model, preq, tally, spends, now)
            sent = ProviderRequest(
                **{
                    **{f: getattr(preq, f) for f in preq.__slots__},  # type: ignore[attr-defined]
                    "max_tokens": hold.out_tokens,
                    "on_delta": self._metered(preq.on_delta, hold, tally, model),
                }
            )
            resp = None
            try:
                async with self.limiter.slot(model, sent.max_tokens, now):
                    resp = await provider.complete(sent)
            except ProviderError as err:
                kind = err.details.get("kind")
                tally.attempts.append(
                    {
                        "model": model.name,
                        "attempt": attempt,
                        "outcome": "error",
                        "kind": kind,
                        "status": err.status,
                        "error": err.message,
                        "ms": round((time.perf_counter() - t0) * 1000, 3),
                    }
                )
                if kind in _BREAKER_KINDS:
                    await self.breakers.record(model.name, False, now)
                if not err.retryable or attempt == self._attempts_per_model or tally.streamed:
                    raise
                delay = err.retry_after
                if delay is None:
                    delay = self._rng.uniform(0, self._backoff_s * 2 ** (attempt - 1))
                if delay > self._max_retry_wait_s:
                    raise
                tally.attempts[-1]["waited_s"] = round(delay, 3)
            finally:
                await self._settle_hold(hold_id, spends, tally, model, resp, call, hold)
            if resp is None:  # a retryable failure: wait (holding no budget), then try again
                await self._sleep(tally.attempts[-1]["waited_s"])
                continue
            tally.add(model, resp)
            tally.attempts.append(
                {
                    "model": model.name,
                    "attempt": attempt,
                    "outcome": "ok",
                    "tokens_in": resp.tokens_in,
                    "tokens_out": resp.tokens_out,
                    "ms": round((time.perf_counter() - t0) * 1000, 3),
                }
            )
            await self.breakers.record(model.name, True, now)
            return resp
        raise AssertionError("unreachable")

    async def _validated(
        self,
        model: Model,
        provider: Provider,
        preq: ProviderRequest,
        resp: ProviderResponse,
        output: type[BaseModel],
        tally: _Tally,
        call: CallContext,
        spends: list[Spend],
    ) -> tuple[BaseModel, ProviderResponse]:
        for fix in range(MAX_CORRECTIONS + 1):
            value, errors = validate_output(resp.text, output)
            if value is not None:
                return value, resp
            tally.attempts[-1]["outcome"] = "invalid_output"
            tally.attempts[-1]["validation"] = errors
            if fix == MAX_CORRECTIONS:
                break
            messages = [
                *preq.messages,
                {"role": "assistant", "content": resp.text},
                correction_message(errors or ""),
            ]
            prompt = count_messages(messages, preq.model_id, preq.tools)
            bumped = [
                Spend(s.scope, s.cap, s.tokens + tally.tokens_in + tally.tokens_out, s.usd + tally.usd)
                for s in spends
            ]
            out, over = affordable_out(
                bumped, prompt, preq.max_tokens, model.entry.price_in_per_mtok, model.entry.price_out_per_mtok
            )
            if over:
                raise BudgetExceeded(
                    f"budget exhausted during output correction: {over}", details={"attempts": tally.attempts}
                )
            preq = ProviderRequest(
                **{
                    **{f: getattr(preq, f) for f in preq.__slots__},  # type: ignore[attr-defined]
                    "messages": messages,
                    "max_tokens": out,
                }
            )
            resp = await self._call_model(model, provider, preq, tally, call, spends)
        raise OutputValidationError(
            f"model {model.name!r} answered {MAX_CORRECTIONS + 1} times without matching "
            f"{output.__name__}: {errors}",
            retryable=False,
            details={
                "attempts": tally.attempts,
                "tokens_in": tally.tokens_in,
                "tokens_out": tally.tokens_out,
                "cost_usd": tally.usd,
            },
        )

    @staticmethod
    def _reason(model: Model, order: list[tuple[Model, int]], fell_back: bool) -> str:
        if fell_back:
            return "fallback: earlier candidates failed"
        return "first eligible candidate of the route"

    async def _reserve(
        self, model: Model, preq: ProviderRequest, tally: _Tally, spends: list[Spend], now: float
    ) -> tuple[str, Hold]:
        """Hold this attempt's worst-case cost against every cap, atomically in the ledger."""
        hold_id = secrets.token_hex(12)
        prompt = count_messages(preq.messages, preq.model_id, preq.tools)
        if not spends:
            return hold_id, Hold(preq.max_tokens, {}, prompt)
        # Run and user caps count what this call already spent (the journal has not seen it yet).
        live = [
            s
            if s.ledger_spent
            else Spend(
                s.scope, s.cap, s.tokens + tally.tokens_in + tally.tokens_out, s.usd + tally.usd, s.key
            )
            for s in spends
        ]
        e = model.entry
        made: list[Hold] = []

        def decide(rows: dict[str, Any]) -> dict[str, tuple[float, float]] | str:
            got = reservation(
                live,
                rows,
                prompt,
                preq.max_tokens,
                e.price_in_per_mtok,
                e.price_out_per_mtok,
                price_known=model.price_known,
                model=model.name,
            )
            if isinstance(got, str):
                return got
            made[:] = [got]
            return got.holds

        lease = now + 2 * preq.timeout_s + _LEASE_MARGIN_S
        keys = sorted({s.key for s in spends if s.key})
        answer = await self._fast.ledger_reserve(hold_id, keys, decide, lease, now)
        if isinstance(answer, str):
            raise BudgetExceeded(
                f"budget exhausted for model {model.name!r}: {answer}",
                details={"stage": "reserve", "attempts": tally.attempts},
            )
        return hold_id, made[0]

    def _metered(self, on_delta: Delta | None, hold: Hold, tally: _Tally, model: Model) -> Delta | None:
        """``on_delta`` that counts the stream's output and cuts it when it outgrows its hold."""
        if on_delta is None:
            return None
        text: list[str] = []
        estimate = 0

        async def metered(piece: str) -> None:
            nonlocal estimate
            text.append(piece)
            # Per-piece counts over-estimate (pieces split words); recount exactly only near the limit.
            estimate += count_text(piece, model.entry.model) if piece else 0
            if estimate > hold.out_tokens:
                estimate = count_text("".join(text), model.entry.model)
                if estimate > hold.out_tokens:
                    tally.stream_tokens = estimate
                    raise BudgetExceeded(
                        f"stream of model {model.name!r} cut: its output reached the {hold.out_tokens} "
                        "tokens its budget reservation covers",
                        details={"stage": "stream", "attempts": tally.attempts},
                    )
            tally.stream_tokens = estimate
            tally.streamed = True
            await on_delta(piece)

        return metered

    async def _settle_hold(
        self,
        hold_id: str,
        spends: list[Spend],
        tally: _Tally,
        model: Model,
        resp: ProviderResponse | None,
        call: CallContext,
        hold: Hold,
    ) -> None:
        """Release the hold and charge the actual cost; record threshold crossings and overruns."""
        if not spends:
            return
        if resp is not None:
            tokens, usd = resp.tokens_in + resp.tokens_out, model.cost(resp.tokens_in, resp.tokens_out)
        elif tally.stream_tokens:
            # Cut mid-stream: the provider charges what it produced (our estimate of it).
            n = min(tally.stream_tokens, hold.out_tokens)
            tokens, usd = hold.prompt_tokens + n, model.cost(hold.prompt_tokens, n)
        else:
            tokens, usd = 0, 0.0
        tally.stream_tokens = 0
        ledger = {s.key: (float(tokens), usd) for s in spends if s.ledger_spent}
        now = self._clock()
        # Shielded: a cancelled call (client gone, stream cut) must still release its hold.
        totals = await asyncio.shield(self._fast.ledger_settle(hold_id, ledger, now))
        if resp is None:
            return
        for s in spends:
            if s.ledger_spent:
                bt, bu, at, au = totals[s.key]
            else:
                bt = s.tokens + tally.tokens_in + tally.tokens_out
                bu = s.usd + tally.usd
                at, au = bt + tokens, bu + usd
            found = crossings([Spend(s.scope, s.cap, bt, bu)], int(at - bt), au - bu)
            for a in found:
                a.update(
                    run_id=call.run_id,
                    org=call.org,
                    user=call.user,
                    workflow=call.workflow,
                    version=call.version,
                    step_seq=call.step_seq,
                )
            tally.alerts.extend(found)
            if (s.cap.max_tokens is not None and at > s.cap.max_tokens) or (
                s.cap.max_usd is not None and au > s.cap.max_usd + 1e-12
            ):
                tally.over.append(s.scope)

    def _warn_unpriced(self, models: list[Model]) -> None:
        for m in models:
            if m.name in self._warned:
                continue
            self._warned.add(m.name)
            log.warning(
                "gateway: model %r has no prices: its cost is UNKNOWN and reported as 0 with "
                "cost_known=false; token caps still apply, USD caps refuse it (set "
                "models.%s.price_in_per_mtok and price_out_per_mtok)",
                m.name,
                m.name,
            )

    async def _settle(self, result: LLMResult, call: CallContext, tally: _Tally) -> None:
        """Report the call's threshold crossings; raise if actual usage went past a cap."""
        result.budget_alerts = list(tally.alerts)
        if tally.alerts:
            await self.alerts.emit(tally.alerts)
        if tally.over:
            raise BudgetExceeded(
                f"{tally.over[0]} budget exceeded by actual usage of this call",
                details={"result": result.to_json()},
            )

    def _from_cache(
        self, doc: dict[str, Any], output: type[BaseModel] | None, routing: dict[str, Any], started: float
    ) -> LLMResult:
        res = LLMResult.from_json(doc, output)
        res.cached = True
        res.tokens_in = res.tokens_out = 0
        res.cost_usd = 0.0
        res.routing = routing
        res.attempts = [{"model": res.model, "outcome": "cache_hit"}]
        res.budget_alerts = []
        res.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return res
