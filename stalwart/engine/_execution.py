"""Executing one claimed run: journal replay, durable calls, and what happens at the end.

The workflow function is re-run from the top on every claim. Each durable call takes the next
sequence number; if the journal holds a completed entry there, its recorded result is returned
instead of running the body again. Anything else the workflow asks for at a journaled position
is a divergence and raises :class:`NonDeterminismError`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stalwart.engine._control import Cancelled, Drain, Fenced, Suspend
from stalwart.engine._retry import RetryPolicy, next_delay
from stalwart.engine._serde import decode, encode
from stalwart.engine._states import RunStatus, check_transition
from stalwart.engine._stream import RunStream
from stalwart.errors import (
    BudgetExceeded,
    LeaseLost,
    NonDeterminismError,
    PolicyDenied,
    ReviewRejected,
    StalwartError,
    StepError,
    ToolTimeout,
    error_from_dict,
)
from stalwart.store import Claim, DeadLetter, JournalEntry, OutboxEvent, RunEvent

if TYPE_CHECKING:
    from stalwart.engine._app import App

__all__ = ["RunExecution", "as_stalwart_error"]

_log = logging.getLogger("stalwart.engine")
_TRACE_LIMIT = 8000


def as_stalwart_error(exc: BaseException) -> StalwartError:
    """Classify any exception raised by a step body (retryable unless it says otherwise)."""
    if isinstance(exc, StalwartError):
        return exc
    if isinstance(exc, TimeoutError):
        return ToolTimeout(f"timed out: {exc}" if str(exc) else "timed out")
    err = StepError(f"{type(exc).__name__}: {exc}", details={"exception": type(exc).__qualname__})
    err.__cause__ = exc
    return err


def _error_record(err: StalwartError, seq: int | None = None, name: str | None = None) -> dict[str, Any]:
    data = err.to_dict()
    if seq is not None:
        data["step_seq"] = seq
        data["step"] = name
    tb_source = err.__cause__ or err
    tb = "".join(traceback.format_exception(type(tb_source), tb_source, tb_source.__traceback__))
    if tb.strip():
        data["traceback"] = tb[-_TRACE_LIMIT:]
    return data


class RunExecution:
    """The state of one run while one worker holds its lease."""

    def __init__(self, app: App, claim: Claim, *, lease_s: float, worker_id: str) -> None:
        self.app = app
        self.store = app.store
        self.run = claim.run
        self.epoch = claim.run.epoch
        self.lease_s = lease_s
        self.worker_id = worker_id
        self.wdef = app.workflow_def(claim.run.workflow, claim.run.version)
        self.journal: dict[int, JournalEntry] = {e.seq: e for e in claim.journal}
        self.seq = claim.run.seq_base
        self.rng = random.Random(f"{claim.run.id}:{claim.run.generation}")
        finished = [e.finished_at for e in claim.journal if e.finished_at is not None and e.seq >= self.seq]
        self.last_time = max(finished, default=claim.run.created_at)
        self.cancel_requested = claim.run.cancel_requested
        self.kill_engaged = False
        self.drain_reason: str | None = None
        self.partial_value: Any = None
        self.spent_tokens = 0
        self.spent_usd = 0.0
        cap = claim.run.meta.get("budget_cap")  # a child inherits what its parent had left
        if cap:
            from stalwart.gateway import Budget

            own = self.wdef.budget
            self.wdef = _with_budget(self.wdef, Budget(
                max_tokens=_min(cap.get("max_tokens"), own.max_tokens if own else None),
                max_usd=_min(cap.get("max_usd"), own.max_usd if own else None)))
        self.flags: list[dict[str, Any]] = []
        self.slots = asyncio.Semaphore(app.max_parallel)
        self.canary_arms: dict[str, tuple[str, str, str]] = {
            f"{v[0]}:{v[1]}": (v[0], v[1], v[2]) for v in (claim.run.meta.get("canary") or {}).values()}
        for e in claim.journal:  # arms chosen before a crash or a wait still count
            arm = (e.meta or {}).get("canary") if e.kind == "llm" else None
            if arm:
                self.canary_arms[f"{arm['kind']}:{arm['name']}"] = (arm["kind"], arm["name"], arm["arm"])
        self.parallel_depth = 0
        self.pending_waits: list[tuple[float | None, str | None]] = []
        self._guard: Any = None
        self.stream = RunStream(self._write_events, self._read_events, now=self.now, limits=app.stream_limits)
        """The run's event stream: ``ctx.emit`` and streamed model calls, flushed in batches."""
        self.replay_top = max(self.journal, default=-1)
        """The last journal position at claim time: events placed before it are durable already."""
        for e in claim.journal:
            if e.seq >= self.seq and e.kind in ("llm", "signal") and e.status == "completed" and e.meta:
                self._add_spend(e.meta)

    def guard(self) -> Any:
        """This run's guard state (placeholder numbering, verdicts)."""
        if self._guard is None:
            from stalwart.engine._guarded import RunGuard

            self._guard = RunGuard(self)
        return self._guard

    async def ctx_wait_signal(self, name: str, timeout: float | None = None, *, seq: int | None = None) -> Any:
        from stalwart.engine._context import Context

        return await Context(self)._wait_signal(name, timeout, seq)

    def flag(self, record: dict[str, Any]) -> None:
        """Mark the run for human review (a guard flag, an unauthorized tool call…)."""
        self.flags.append(record)

    # -- clock / determinism -----------------------------------------------------------------
    def now(self) -> float:
        return self.app.clock.time()

    def deterministic_now(self) -> datetime:
        return datetime.fromtimestamp(self.last_time, tz=UTC)

    def _add_spend(self, meta: dict[str, Any]) -> None:
        self.spent_tokens += int(meta.get("tokens_in", 0)) + int(meta.get("tokens_out", 0))
        self.spent_tokens += int(meta.get("child_tokens", 0))
        self.spent_usd += float(meta.get("cost_usd", 0.0)) + float(meta.get("child_cost_usd", 0.0))

    # -- writes ------------------------------------------------------------------------------
    async def _write_events(self, events: list[RunEvent]) -> None:
        try:
            await self.store.append_events(self.run.id, self.epoch, events)
        except LeaseLost as exc:
            raise Fenced(str(exc)) from None

    async def _read_events(self, key_prefix: str) -> list[RunEvent]:
        return await self.store.read_events(self.run.id, 0, 1_000_000, key_prefix=key_prefix)

    async def commit(self, entry: JournalEntry, *, consume_signal: int | None = None) -> None:
        await self.stream.flush()  # an event is durable before the step that follows it
        event = OutboxEvent(
            event_id=f"{entry.run_id}:{entry.seq}:{entry.status}:{entry.attempts}",
            type=f"step.{entry.status}",
            run_id=entry.run_id,
            payload={"seq": entry.seq, "kind": entry.kind, "name": entry.name, "attempts": entry.attempts},
            created_at=entry.finished_at or self.now(),
        )
        from stalwart.engine._governed import step_audit_event

        gov = self.app._governance
        audit = gov.audit.prepare([step_audit_event(self, entry)])
        try:
            cancel, kill = await self.store.commit_step(
                self.run.id,
                self.epoch,
                entry,
                self.now(),
                self.lease_s,
                consume_signal=consume_signal,
                events=[event],
                audit_bodies=audit.bodies,
            )
        except LeaseLost as exc:
            raise Fenced(str(exc)) from None
        await gov.audit.after_commit(len(audit.bodies))
        self.journal[entry.seq] = entry
        self.cancel_requested = self.cancel_requested or cancel
        self.kill_engaged = kill
        tel = self.app.telemetry
        if tel is not None:
            tel.step_committed(self.run, entry)
            tel.set_kill_switch(kill)
        if entry.finished_at is not None:
            self.last_time = entry.finished_at

    async def set_state(self, status: RunStatus, **kw: Any) -> None:
        check_transition(RunStatus.RUNNING, status)
        await self.stream.flush()
        events = kw.pop("events", None) or []
        events.append(
            OutboxEvent(
                event_id=f"{self.run.id}:{self.epoch}:{status.value}:{len(self.journal)}",
                type=f"run.{status.value.lower()}",
                run_id=self.run.id,
                payload={"status": status.value, "workflow": self.run.workflow, "version": self.run.version},
                created_at=self.now(),
            )
        )
        audit_bodies: tuple[str, ...] = ()
        gov = self.app._governance
        if status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DEAD_LETTER):
            from stalwart.governance import AuditEvent

            error = kw.get("error") or {}
            audit_bodies = gov.audit.prepare([AuditEvent(
                event_type=f"run.{status.value.lower()}", action="end_run", actor=f"agent:{self.wdef.key}",
                resource=self.wdef.key, decision=status.value, org_id=self.run.org, user_id=self.run.user,
                run_id=self.run.id, trace_id=self.run.trace_id, workflow_version=self.wdef.key,
                details={"cost_usd": round(self.spent_usd, 10), "tokens": self.spent_tokens,
                         "error": {k: error.get(k) for k in ("type", "code", "message")} if error else None},
                event_id=f"{self.run.id}:end:{self.run.generation}", timestamp=self.now(),
            )]).bodies
        try:
            await self.store.set_run_state(self.run.id, self.epoch, status.value, self.now(), events=events,
                                           audit_bodies=audit_bodies, **kw)
        except LeaseLost as exc:
            raise Fenced(str(exc)) from None
        if audit_bodies:
            await gov.audit.after_commit(len(audit_bodies))

    async def suspend(self, wake_at: float | None, *, signal_name: str | None = None) -> None:
        if self.parallel_depth > 0:  # inside ctx.parallel: the block suspends once, for all its branches
            self.pending_waits.append((wake_at, signal_name))
            raise Suspend()
        await self.set_state(RunStatus.WAITING, wake_at=wake_at, release=True, signal_name=signal_name)
        self.app._note_wake(wake_at)
        raise Suspend()

    async def suspend_pending(self) -> None:
        """Suspend for every wait the branches of a parallel block recorded: wake at the earliest
        timer, or on any of their signals."""
        waits, self.pending_waits = self.pending_waits, []
        timers = [w for w, _ in waits if w is not None]
        signals = sorted({s for _, s in waits if s is not None})
        wake = min(timers) if timers else None
        await self.set_state(RunStatus.WAITING, wake_at=wake, release=True, signal_name=signals or None)
        self.app._note_wake(wake)
        raise Suspend()

    def boundary(self) -> None:
        """Checked before every new step: drain, kill switch, cancellation."""
        if self.drain_reason is not None:
            raise Drain(self.drain_reason)
        if self.kill_engaged:
            raise Drain("kill switch engaged")
        if self.cancel_requested:
            raise Cancelled()

    # -- the durable call --------------------------------------------------------------------
    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def reserve(self, n: int) -> list[int]:
        """Take ``n`` sequence numbers at once, before any await, for an operation made of several
        durable calls: parallel branches then keep the same numbers on replay whatever order their
        inner calls finish in. Unused numbers stay gaps in the journal."""
        first = self.seq
        self.seq += n
        return list(range(first, first + n))

    def replayed(self, seq: int, kind: str, name: str) -> JournalEntry | None:
        prior = self.journal.get(seq)
        if prior is None:
            return None
        if prior.kind != kind or prior.name != name:
            raise NonDeterminismError(
                f"run {self.run.id}: journal position {seq} holds {prior.kind} {prior.name!r}, but the "
                f"workflow now asks for {kind} {name!r}; the code changed under a running version"
            )
        return prior

    async def durable(
        self,
        kind: str,
        name: str,
        body: Callable[[int, int], Awaitable[tuple[Any, dict[str, Any] | None]]],
        *,
        retry: RetryPolicy | None = None,
        rtype: Any = None,
        seq: int | None = None,
    ) -> Any:
        """Run ``body(seq, attempt)`` at most until it succeeds once, and journal the result.

        ``body`` returns ``(value, meta)``; ``meta`` is stored beside the result (tokens, cost,
        routing, tool arguments…).
        """
        seq = self.next_seq() if seq is None else seq
        prior = self.replayed(seq, kind, name)
        attempts = 0
        if prior is not None:
            if prior.status == "completed":
                if prior.finished_at is not None:
                    self.last_time = prior.finished_at
                return decode(prior.result_json, rtype)
            if prior.status == "failed" and prior.error is not None:
                err = error_from_dict(prior.error)
                err.details.setdefault("step_seq", seq)
                err._stalwart_step = seq  # type: ignore[attr-defined]
                raise err
            attempts = prior.attempts
            if prior.status == "retrying" and prior.wake_at is not None and prior.wake_at > self.now():
                self.boundary()
                await self.suspend(prior.wake_at)
        self.boundary()
        await self.stream.flush()  # what the workflow emitted is visible before a long step starts
        async with self.slots:
            return await self._attempts(seq, kind, name, body, attempts, retry, rtype)

    async def _attempts(
        self, seq: int, kind: str, name: str, body: Any, attempts: int, retry: RetryPolicy | None, rtype: Any
    ) -> Any:
        policy = retry or self.app.default_retry
        while True:
            attempts += 1
            started = self.now()
            try:
                value, meta = await body(seq, attempts)
                result_json = encode(value)
            except (Suspend, Cancelled, Drain, Fenced):
                raise
            except Exception as exc:
                err = as_stalwart_error(exc)
                if isinstance(exc, TypeError | ValueError) and "serial" in str(exc).lower():
                    err = StepError(f"step {name!r} returned a value that is not JSON-serialisable: {exc}",
                                    retryable=False)
                delay = next_delay(policy, attempts, err, self.app.jitter)
                finished = self.now()
                entry = JournalEntry(
                    run_id=self.run.id,
                    seq=seq,
                    kind=kind,
                    name=name,
                    status="failed" if delay is None else "retrying",
                    error=_error_record(err, seq, name),
                    attempts=attempts,
                    started_at=started,
                    finished_at=finished if delay is None else None,
                    wake_at=None if delay is None else finished + delay,
                    meta=getattr(err, "_stalwart_meta", None),
                )
                await self.commit(entry)
                if delay is None:
                    err._stalwart_step = seq  # type: ignore[attr-defined]
                    raise err from None
                _log.info("step %s of run %s failed (attempt %d), retrying in %.3fs: %s",
                          name, self.run.id, attempts, delay, err)
                if delay <= self.app.inline_retry_max_s and err.retry_after is None:
                    # short backoffs wait in place; a server's Retry-After waits durably, holding no slot
                    await asyncio.sleep(delay)
                    self.boundary()
                    continue
                await self.suspend(finished + delay)
            else:
                entry = JournalEntry(
                    run_id=self.run.id,
                    seq=seq,
                    kind=kind,
                    name=name,
                    status="completed",
                    result_json=result_json,
                    attempts=attempts,
                    started_at=started,
                    finished_at=self.now(),
                    meta=meta,
                )
                await self.commit(entry)
                if kind == "llm" and meta:
                    self._add_spend(meta)
                return decode(result_json, rtype)

    # -- the whole run -----------------------------------------------------------------------
    async def execute(self) -> None:
        """Run (or resume) the workflow and settle the run's state. Never raises for run failures."""
        if self.app.telemetry is not None:
            from stalwart.telemetry import bind_run_context

            bind_run_context(self.run)
        try:
            await self._execute()
        except Fenced as exc:
            _log.warning("run %s: %s; stopping without further writes", self.run.id, exc)
        finally:
            self.stream.close()

    async def _execute(self) -> None:
        from stalwart.engine._context import Context

        try:
            if self.run.phase == "compensate":
                await self._compensate_and_finish()
                return
            if self.cancel_requested:
                raise Cancelled()
            kwargs = self.wdef.validate_input(decode(self.run.input_json))
            result = await self.wdef.fn(Context(self), **kwargs)
            try:
                output = encode(result)
            except Exception as exc:
                raise StepError(f"the workflow's return value is not JSON-serialisable: {exc}",
                                retryable=False) from None
            await self.finish(RunStatus.COMPLETED, output_json=output,
                              meta_patch={"cost_usd": round(self.spent_usd, 10), "tokens": self.spent_tokens})
        except Suspend:
            pass
        except Drain as exc:
            await self._release(exc.reason)
        except Cancelled:
            await self._fail(RunStatus.CANCELLED, {"type": "Cancelled", "code": "cancelled",
                                                   "message": "the run was cancelled", "retryable": False})
        except NonDeterminismError as exc:
            await self.finish(
                RunStatus.DEAD_LETTER,
                error=_error_record(exc),
                dead_letter_reason=f"non_determinism: {exc}",
            )
        except BudgetExceeded as exc:
            await self.finish(
                RunStatus.COMPLETED,
                output_json=encode({"partial": True, "budget_exceeded": True, "result": self.partial_value}),
                meta_patch={"partial": True, "budget_exceeded": True, "budget_error": str(exc),
                            "cost_usd": round(self.spent_usd, 10), "tokens": self.spent_tokens},
            )
        except (PolicyDenied, ReviewRejected) as exc:  # a decision, not a fault: the run fails, compensated
            seq = getattr(exc, "_stalwart_step", None)
            await self._fail(RunStatus.FAILED, _error_record(exc, seq, self.journal[seq].name if seq in self.journal
                                                             else None))
        except StalwartError as exc:
            seq = getattr(exc, "_stalwart_step", None)
            target = RunStatus.DEAD_LETTER if seq is not None else RunStatus.FAILED
            record = _error_record(exc, seq, self.journal[seq].name if seq in self.journal else None)
            await self._fail(target, record)
        except Exception as exc:
            await self._fail(RunStatus.FAILED, _error_record(as_stalwart_error(exc)))

    async def _release(self, reason: str) -> None:
        try:
            await self.set_state(RunStatus.PENDING, release=True, meta_patch={"released": reason})
        except Fenced:
            pass

    async def finish(
        self,
        status: RunStatus,
        *,
        output_json: str | None = None,
        error: dict[str, Any] | None = None,
        dead_letter_reason: str | None = None,
        meta_patch: dict[str, Any] | None = None,
    ) -> None:
        if self.flags:
            meta_patch = {**(meta_patch or {}), "flags": self.flags[-20:], "review_required": True}
        dl = None
        if status is RunStatus.DEAD_LETTER:
            dl = DeadLetter(
                run_id=self.run.id,
                workflow=self.run.workflow,
                version=self.run.version,
                reason=dead_letter_reason or (error or {}).get("message", "failed"),
                error=error,
                created_at=self.now(),
                retries=0,
            )
        await self._close_children()
        notify = None
        if self.run.parent_id:
            notify = (self.run.parent_id, f"child:{self.run.id}", encode({
                "run_id": self.run.id, "status": status.value, "output": decode(output_json), "error": error,
                "cost_usd": round(self.spent_usd, 10), "tokens": self.spent_tokens}))
        try:
            await self.set_state(
                status, output_json=output_json, error=error, dead_letter=dl, meta_patch=meta_patch, notify=notify
            )
        except Fenced as exc:
            _log.warning("run %s: could not record %s: %s", self.run.id, status, exc)
            return
        if self.canary_arms:
            from stalwart.engine._canary import record_outcome

            try:
                await record_outcome(self.app, self.canary_arms, status is RunStatus.COMPLETED, self.spent_usd,
                                     max(0.0, self.now() - self.run.created_at))
            except StalwartError as exc:  # bookkeeping must not undo a finished run
                _log.warning("run %s: canary bookkeeping failed: %s", self.run.id, exc)
        if self.app.telemetry is not None:
            budget = self.wdef.budget
            self.app.telemetry.run_finished(
                self.run, status.value, duration_s=max(0.0, self.now() - self.run.created_at),
                cost_usd=self.spent_usd, tokens=self.spent_tokens,
                budget_usd=getattr(budget, "max_usd", None), error=error,
                budget_exceeded=bool(meta_patch and meta_patch.get("budget_exceeded")))
        self.app._run_finished(self.run.id)

    async def _close_children(self) -> None:
        """Apply each unfinished child's parent-close policy as this run ends."""
        waited = {e.name for e in self.journal.values() if e.kind == "signal" and e.status == "completed"}
        for e in self.journal.values():
            if e.kind != "child" or e.status != "completed" or not e.result_json:
                continue
            child_id = decode(e.result_json)
            if f"signal:child:{child_id}" in waited or (e.meta or {}).get("parent_close") == "abandon":
                continue
            try:
                await self.store.request_cancel(child_id, self.now())
            except StalwartError as exc:
                _log.warning("run %s: could not cancel child %s: %s", self.run.id, child_id, exc)

    async def _fail(self, target: RunStatus, error: dict[str, Any]) -> None:
        from stalwart.engine._saga import compensable_steps

        if not compensable_steps(self):
            reason = f"{error.get('code', 'error')}: {error.get('message', '')}"
            await self.finish(target, error=error, dead_letter_reason=reason)
            return
        await self.set_state(
            RunStatus.RUNNING, phase="compensate", error=error, meta_patch={"final_status": target.value}
        )
        self.run.phase = "compensate"
        self.run.error = error
        self.run.meta = {**self.run.meta, "final_status": target.value}
        await self._compensate_and_finish()

    async def _compensate_and_finish(self) -> None:
        from stalwart.engine._saga import run_compensations

        outcome = await run_compensations(self)
        target = RunStatus(self.run.meta.get("final_status", RunStatus.FAILED.value))
        error = dict(self.run.error or {})
        error["compensation"] = outcome
        if any(o["status"] != "completed" for o in outcome):
            target = RunStatus.DEAD_LETTER
        reason = f"{error.get('code', 'error')}: {error.get('message', '')}"
        await self.finish(target, error=error, dead_letter_reason=reason, meta_patch={"compensated": True})



def _min(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _with_budget(wdef: Any, budget: Any) -> Any:
    import copy

    clone = copy.copy(wdef)
    clone.budget = budget
    return clone
