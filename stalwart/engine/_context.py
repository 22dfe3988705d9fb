"""The ``Context`` a workflow receives: every effect goes through it, durably."""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
import uuid as _uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stalwart.engine._definitions import ToolDef
from stalwart.engine._retry import RetryPolicy
from stalwart.engine._serde import decode, encode
from stalwart.engine._stream import RESERVED_KINDS
from stalwart.engine._taint import child_untrusted_input
from stalwart.engine._tools import call_tool
from stalwart.errors import UnauthorizedToolCall
from stalwart.store import JournalEntry

if TYPE_CHECKING:
    from stalwart.engine._execution import RunExecution

__all__ = ["Context"]

_EMIT_LIMIT = 64 * 1024


class Context:
    """Durable operations available inside a workflow.

    Everything that touches the world (a computation with side effects, a tool, a model, time,
    randomness) goes through here, so that a resumed run replays recorded results instead of
    redoing the work.
    """

    def __init__(self, execution: RunExecution) -> None:
        self._ex = execution

    # -- identity ----------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self._ex.run.id

    @property
    def workflow(self) -> str:
        return self._ex.run.workflow

    @property
    def version(self) -> str:
        return self._ex.run.version

    @property
    def org(self) -> str:
        return self._ex.run.org

    @property
    def user(self) -> str:
        return self._ex.run.user

    @property
    def trace_id(self) -> str:
        return self._ex.run.trace_id

    # -- deterministic sources ---------------------------------------------------------------
    def now(self) -> datetime:
        """The time the run last made durable progress (its start, or its latest step).

        It is recorded data, so a replay sees exactly the same value.
        """
        return self._ex.deterministic_now()

    def random(self) -> float:
        """A float in [0, 1) from the run's own seeded generator (same sequence on replay)."""
        return self._ex.rng.random()

    def uuid(self) -> _uuid.UUID:
        """A version-4 UUID from the run's seeded generator (same sequence on replay)."""
        return _uuid.UUID(int=self._ex.rng.getrandbits(128), version=4)

    # -- durable operations -----------------------------------------------------------------
    async def step(
        self, name: str, fn: Callable[..., Any], *args: Any, retry: RetryPolicy | None = None, **kwargs: Any
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` as a durable step named ``name``.

        The body runs at least once; its recorded result is used exactly once. ``async``
        functions run on the worker's loop, plain functions in a thread. The value returned is
        the JSON-decoded result, typed by ``fn``'s return annotation, on first run and replay alike.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("ctx.step needs a non-empty step name as its first argument")
        is_async = inspect.iscoroutinefunction(fn)

        async def body(seq: int, attempt: int) -> tuple[Any, None]:
            if is_async:
                return await fn(*args, **kwargs), None
            return await asyncio.to_thread(fn, *args, **kwargs), None

        rtype = _return_type(fn)
        return await self._ex.durable("step", name, body, retry=retry, rtype=rtype)

    async def tool(self, tool: Any, /, **kwargs: Any) -> Any:
        """Call a registered tool through the allowlist, validation, breaker and sandbox.

        A tool with a keyword parameter ``idempotency_key`` receives ``"{run_id}:{step_seq}"``.
        """
        seqs = self._ex.reserve(4)  # before any await: replay-stable
        return await self._governed_tool(self._resolve_tool(tool), kwargs, seqs)

    async def _governed_tool(
        self, tdef: ToolDef, kwargs: dict[str, Any], seqs: list[int], note: dict[str, Any] | None = None
    ) -> Any:
        """The one governed path of a tool call (allowlist, arguments, policy, risk, review, then
        the tool step), at four sequence numbers the caller reserved."""
        from stalwart.engine._governed import authorize_tool_call, denial, request_review

        ex = self._ex
        policy_seq, review_seq, signal_seq, tool_seq = seqs
        args = None
        if ex.wdef.allows(tdef):  # an unlisted tool fails in call_tool, recorded and counted
            args = tdef.validate_args(kwargs)
            verdict = await authorize_tool_call(ex, tdef, args, seq=policy_seq, note=note)
            if verdict["action"] == "deny":
                err = denial(tdef, verdict)
                err._stalwart_step = policy_seq  # type: ignore[attr-defined]
                raise err
            if verdict["action"] == "review":
                await ex.app.guard_ready(pii=True)
                proposed: dict[str, Any] = {"tool": tdef.name, "args": ex.guard().redact_now(args)}
                reason, severity = f"{tdef.name} needs review", None
                if verdict.get("taint"):  # which arguments came from untrusted content, and from which step
                    proposed["taint"] = verdict["taint"]["args"]
                    reason = f"{tdef.name}: tainted {', '.join(verdict['taint']['args'])}"
                    severity = "high"  # never auto-approved as low risk: a human decides
                decision = await request_review(
                    ex, reason, proposed=proposed,
                    risk=verdict["risk"], policy=verdict, severity=severity, seqs=(review_seq, signal_seq),
                )
                if decision.get("args"):  # a reviewer modified them: validate the new ones in the step
                    kwargs, args = dict(decision["args"]), None
        return await call_tool(ex, tdef, kwargs, seq=tool_seq, validated=args, note=note)

    async def _llm_step(
        self, route: str, *, messages: list[dict[str, Any]], output: Any, model: str | None,
        temperature: float | None, tools: list[ToolDef], allowed: dict[str, ToolDef] | None,
        note: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """One journaled model call for an agent loop written with another SDK: the recorded
        ``LLMResult`` JSON, the calls refused by ``allowed`` kept under ``blocked_tool_calls``."""
        from stalwart.engine._llm import llm_step

        return await llm_step(self._ex, route, template=None, vars={}, messages=messages, output=output,
                              model=model, max_tokens=None, temperature=temperature, cacheable=False,
                              tools=tools or None, allowed=allowed or None, note=note)

    async def review(
        self, reason: str, *, risk: float | None = None, action: dict[str, Any] | None = None,
        severity: str | None = None,
    ) -> dict[str, Any]:
        """Wait durably for a human decision on ``reason``; return it (``approved``, ``reviewer``,
        ``args``, ``note``). A rejection raises ``ReviewRejected`` and the run fails, compensated.
        The run holds no worker while it waits; SLAs escalate it if nobody decides in time."""
        from stalwart.engine._governed import request_review

        seqs = self._ex.reserve(2)
        assessment = None if risk is None else {"score": float(risk), "factors": [], "action": "review"}
        return await request_review(self._ex, reason, proposed=action or {"reason": reason}, risk=assessment,
                                    severity=severity or (None if risk is not None else "medium"),
                                    seqs=(seqs[0], seqs[1]))

    def _resolve_tool(self, tool: Any) -> ToolDef:
        app = self._ex.app
        if isinstance(tool, ToolDef):
            return tool
        if isinstance(tool, str):
            found = self._ex.wdef.tools.get(tool) or app.tool_def(tool)
        else:
            found = app.tool_for(tool)
        if found is None:
            raise UnauthorizedToolCall(f"{tool!r} is not a registered tool", retryable=False)
        return found

    async def sleep(self, seconds: float) -> None:
        """Wait durably. The run holds no worker while it sleeps, and survives restarts."""
        ex = self._ex
        seq = ex.next_seq()
        prior = ex.replayed(seq, "sleep", "sleep")
        now = ex.now()
        if prior is not None:
            if prior.status == "completed":
                if prior.finished_at is not None:
                    ex.last_time = prior.finished_at
                return
            if prior.wake_at is not None and prior.wake_at > now:
                await ex.suspend(prior.wake_at)
            await ex.commit(_done(prior, now, None))
            return
        ex.boundary()
        wake = now + max(0.0, float(seconds))
        entry = JournalEntry(ex.run.id, seq, "sleep", "sleep", "waiting", started_at=now, wake_at=wake,
                             meta={"seconds": seconds})
        if wake <= now:
            await ex.commit(_done(entry, now, None))
            return
        await ex.commit(entry)
        await ex.suspend(wake)

    async def wait_signal(self, name: str, timeout: float | None = None) -> Any:
        """Wait durably for ``app.signal(run_id, name, payload)``; return its payload.

        With ``timeout`` (seconds) it returns ``None`` if no signal came in time.
        """
        return await self._wait_signal(name, timeout, None)

    async def _wait_signal(self, name: str, timeout: float | None, seq: int | None) -> Any:
        ex = self._ex
        seq = ex.next_seq() if seq is None else seq
        step_name = f"signal:{name}"
        prior = ex.replayed(seq, "signal", step_name)
        now = ex.now()
        if prior is not None and prior.status == "completed":
            if prior.finished_at is not None:
                ex.last_time = prior.finished_at
            return decode(prior.result_json)
        if prior is None:
            ex.boundary()
        sig = await ex.store.next_signal(ex.run.id, name)
        entry = prior or JournalEntry(
            ex.run.id, seq, "signal", step_name, "waiting", started_at=now,
            wake_at=None if timeout is None else now + timeout, meta={"signal": name},
        )
        if sig is not None:
            done = _done(entry, now, sig.payload_json)
            payload = decode(sig.payload_json)
            if name.startswith("child:") and isinstance(payload, dict):  # roll the child's cost up
                done.meta = {**(done.meta or {}), "child_cost_usd": payload.get("cost_usd", 0.0),
                             "child_tokens": payload.get("tokens", 0), "child_run_id": payload.get("run_id")}
            await ex.commit(done, consume_signal=sig.id)
            if done.meta and "child_cost_usd" in done.meta:
                ex._add_spend(done.meta)
            return payload
        if entry.wake_at is not None and entry.wake_at <= now:
            await ex.commit(_done(entry, now, None, timed_out=True))
            return None
        if prior is None:
            await ex.commit(entry)
        await ex.suspend(entry.wake_at, signal_name=name)

    async def parallel(self, *calls: Awaitable[Any]) -> list[Any]:
        """Run durable calls (``ctx.step``, ``ctx.tool``, ``ctx.llm``…) concurrently.

        Sequence numbers are taken in argument order, so a replay after a crash matches the
        journal whatever order the branches finished in. Results come back in argument order.
        If one branch fails, the others are cancelled and the error is raised; completed
        mutating branches are compensated (in reverse order of completion) if the run fails.
        At most ``max_parallel`` bodies of one run execute at once.
        """
        from stalwart.engine._control import Suspend

        ex = self._ex
        ex.parallel_depth += 1
        tasks = [asyncio.ensure_future(c) for c in calls]
        try:
            pending = set(tasks)
            while pending:
                _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                broken = [t for t in tasks if t.done() and not t.cancelled()
                          and t.exception() is not None and not isinstance(t.exception(), Suspend)]
                if broken:  # a failure (or drain, cancel, fencing) cancels the other branches
                    for t in pending:
                        t.cancel()
                    if pending:
                        await asyncio.wait(pending)
                    if ex.parallel_depth == 1:
                        ex.pending_waits.clear()
                    raise broken[0].exception()  # type: ignore[misc]
        except BaseException:
            for t in tasks:
                t.cancel()
            ex.parallel_depth -= 1
            raise
        ex.parallel_depth -= 1
        if any(isinstance(t.exception(), Suspend) for t in tasks):  # some branches wait: so does the run
            if ex.parallel_depth == 0:
                await ex.suspend_pending()
            raise Suspend()
        return [t.result() for t in tasks]

    async def child(
        self, workflow: str, input: Any = None, *, version: str | None = None, parent_close: str = "cancel"
    ) -> Any:
        """Run another workflow as a durable child and return its output.

        The child has its own run id (its ``parent_id`` links it to this run and its trace), the
        same org and user, and at most the budget this run has left; its cost is rolled up here.
        ``parent_close`` says what happens to it if this run ends first: ``cancel`` or ``abandon``.
        A child that does not complete raises ``WorkflowFailed``.
        """
        from stalwart.errors import WorkflowFailed

        if parent_close not in ("cancel", "abandon"):
            raise ValueError("parent_close must be 'cancel' or 'abandon'")
        ex = self._ex
        start_seq, wait_seq = ex.reserve(2)

        async def body(seq: int, attempt: int) -> tuple[str, dict[str, Any]]:
            cap: dict[str, Any] = {}
            budget = ex.wdef.budget
            if budget is not None and budget.max_tokens is not None:
                cap["max_tokens"] = max(1, budget.max_tokens - ex.spent_tokens)
            if budget is not None and budget.max_usd is not None:
                cap["max_usd"] = max(1e-9, budget.max_usd - ex.spent_usd)
            meta: dict[str, Any] = {"budget_cap": cap, "parent_close": parent_close}
            untrusted = child_untrusted_input(ex, input, seq)
            if untrusted:
                meta["untrusted_input"] = untrusted
            child_id = await ex.app.start(
                workflow, input, idempotency_key=f"{ex.run.id}:{seq}:child", org=ex.run.org, user=ex.run.user,
                version=version, parent_id=ex.run.id, _meta=meta,
            )
            return child_id, {"child_run_id": child_id, "workflow": workflow, "parent_close": parent_close}

        child_id = await ex.durable("child", workflow, body, seq=start_seq)
        outcome = await self._wait_signal(f"child:{child_id}", None, wait_seq)
        if outcome.get("status") != "COMPLETED":
            raise WorkflowFailed(
                f"child run {child_id} ({workflow}) ended {outcome.get('status')}: "
                f"{(outcome.get('error') or {}).get('message', '')}",
                run_id=child_id, status=str(outcome.get("status")), error=outcome.get("error"),
            )
        return outcome.get("output")

    async def emit(self, kind: str, data: Any = None) -> None:
        """Append an event of the workflow's own to the run's durable stream.

        Readers (``app.events``, ``GET /v1/runs/{id}/events``, ``stalwart run follow``) see it by
        the time the next step starts, and exactly once: an emit replayed after a crash is not
        written again (each emit takes a journal position; see :mod:`stalwart.engine._stream`).
        ``kind`` is a short name of your own (``llm.`` and ``run.`` are the runtime's); ``data``
        must be JSON-serialisable and at most 64 KiB once encoded.
        """
        if not isinstance(kind, str) or not kind or len(kind) > 100:
            raise TypeError("ctx.emit needs a kind: a non-empty string of at most 100 characters")
        if kind.startswith(RESERVED_KINDS):
            raise ValueError(f"event kinds starting with {' or '.join(RESERVED_KINDS)} are the runtime's own")
        await self._append_event(kind, data)

    async def _append_event(self, kind: str, data: Any) -> None:
        """Append one event at the next journal position (``emit``, and the runtime's own kinds)."""
        encoded = encode(data)
        if len(encoded) > _EMIT_LIMIT:
            raise ValueError(f"ctx.emit data is {len(encoded)} bytes encoded; the limit is {_EMIT_LIMIT} "
                             "(store large values with a step and emit a reference)")
        ex = self._ex
        seq = ex.next_seq()
        if seq < ex.replay_top:  # a later step is journaled: its commit wrote this event first
            return
        ex.stream.add(f"e{seq}", kind, decode(encoded))
        if ex.stream.pending >= ex.stream.limits.max_events:
            await ex.stream.flush()

    def partial(self, value: Any) -> None:
        """Report the best result so far; it becomes the output if a budget stops the run."""
        encode(value)  # fail now, not at the end, if it cannot be stored
        self._ex.partial_value = value

    async def llm(
        self,
        task: str,
        *,
        template: str | None = None,
        vars: dict[str, Any] | None = None,
        messages: list[dict[str, Any]] | None = None,
        output: Any = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        cacheable: bool = False,
        tools: list[Any] | None = None,
        stream: bool = False,
    ) -> Any:
        """Call a model through the gateway as a durable step.

        Returns the validated ``output`` model instance when ``output`` is given, else the
        text; with ``tools`` it returns the whole ``LLMResult`` whose ``tool_calls`` hold only
        calls the allowlist accepted. Prompt strings are redacted (PII to the vault) and untrusted
        text is scanned before and after the call. A journaled call is never paid for twice:
        replay returns the recorded answer.

        With ``stream=True`` the answer's text is also appended to the run's durable stream as the
        model produces it (``llm.delta`` events in batches, then ``llm.end``); the value returned
        is the same as without it.
        """
        from stalwart.engine._llm import call_llm

        return await call_llm(
            self._ex,
            task,
            template=template,
            vars=vars or {},
            messages=messages,
            output=output,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            cacheable=cacheable,
            tools=tools,
            stream=stream,
        )


    async def agent(
        self,
        *,
        template: str,
        input: Any,
        tools: list[Any],
        output: Any = None,
        max_turns: int = 8,
        route: str = "default",
        vars: dict[str, Any] | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        max_usd: float | None = None,
        max_wall_s: float | None = None,
        max_repeat: int = 3,
        max_tool_errors: int = 3,
        stream: bool = False,
    ) -> Any:
        """Let the model choose the tools, in a durable loop; return an ``AgentResult``.

        ``template`` (``"support-agent@1"``) is rendered with ``vars`` plus ``input`` (its ``input``
        slot); each turn is a journaled ``ctx.llm`` call on ``route`` offered ``tools`` (each one a
        tool of this workflow, its JSON schema taken from its signature), and each call the model
        asks for takes the governed path of ``ctx.tool`` as its own steps, concurrently with the
        others of its turn. A refused or failed call is answered to the model as a tool error.
        With ``output`` (a Pydantic model) the answer is validated into it.

        The loop stops at the answer or at the first bound: ``max_turns`` model calls,
        ``max_tokens``/``max_usd`` spent by its turns (or the workflow's budget), ``max_wall_s``
        seconds between its first and latest step, an identical call asked for more than
        ``max_repeat`` times (``loop``), or ``max_tool_errors`` refused or failed calls. A bound
        does not raise: ``AgentResult.stopped`` names it and the partial result is kept.

        With ``stream=True`` each turn's text streams to the run's durable event stream (``llm.``
        events), followed by an ``agent.turn`` event naming its tool calls and their outcomes, and
        one ``agent.end`` event with the reason the loop stopped.
        """
        from stalwart.engine._agent import run_agent

        return await run_agent(self, template=template, input=input, tools=tools, output=output,
                               max_turns=max_turns, route=route, vars=vars, model=model, temperature=temperature,
                               max_tokens=max_tokens, max_usd=max_usd, max_wall_s=max_wall_s,
                               max_repeat=max_repeat, max_tool_errors=max_tool_errors, stream=stream)


def _done(entry: JournalEntry, now: float, result_json: str | None, timed_out: bool = False) -> JournalEntry:
    meta = dict(entry.meta or {})
    if timed_out:
        meta["timed_out"] = True
    return JournalEntry(
        entry.run_id, entry.seq, entry.kind, entry.name, "completed", result_json,
        attempts=entry.attempts, started_at=entry.started_at, finished_at=now, wake_at=entry.wake_at, meta=meta,
    )


@functools.lru_cache(maxsize=4096)
def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(fn).get("return")
    except Exception:
        return None
