"""``ctx.llm``: one model call through the gateway, as a durable step that is never paid twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stalwart.engine._execution import RunExecution

__all__ = ["call_llm", "llm_step"]

_META_FIELDS = (
    "model", "provider", "model_id", "response_model", "tokens_in", "tokens_out", "cost_usd", "cached",
    "latency_ms", "routing", "template_hash", "finish_reason", "budget_alerts",
)


async def call_llm(
    ex: RunExecution,
    task: str,
    *,
    template: str | None,
    vars: dict[str, Any],
    messages: list[dict[str, Any]] | None,
    output: Any,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    cacheable: bool,
    tools: list[Any] | None,
    stream: bool = False,
) -> Any:
    from stalwart.gateway import LLMResult

    data = await llm_step(ex, task, template=template, vars=vars, messages=messages, output=output, model=model,
                          max_tokens=max_tokens, temperature=temperature, cacheable=cacheable, tools=tools,
                          stream=stream)
    result = LLMResult.from_json(data, output)
    return result if tools else result.value


async def llm_step(
    ex: RunExecution,
    task: str,
    *,
    template: str | None,
    vars: dict[str, Any],
    messages: list[dict[str, Any]] | None,
    output: Any,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    cacheable: bool,
    tools: list[Any] | None,
    seq: int | None = None,
    allowed: dict[str, Any] | None = None,
    note: dict[str, Any] | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """One journaled model call; returns the recorded ``LLMResult`` JSON.

    ``allowed`` narrows the tools the model may call to that mapping (an agent's own tools) and
    keeps the refused calls, with their reasons, under ``blocked_tool_calls``; ``note`` is added
    to the step's meta (an agent's turn).
    """
    from stalwart.errors import BudgetExceeded
    from stalwart.gateway import CallContext, LLMRequest

    if not isinstance(task, str) or not task:
        raise TypeError("ctx.llm needs a task name (the route to use) as its first argument")
    tool_specs = [_tool_spec(ex, t) for t in tools] if tools else None

    async def body(seq: int, attempt: int) -> tuple[Any, dict[str, Any]]:
        gateway = await ex.app.gateway()
        rg = ex.guard()
        meta: dict[str, Any] = dict(note or {})
        chosen_template, chosen_model = template, model
        if template is not None and "@" in template:
            tname = template.split("@", 1)[0]
            c, arm = await ex.app._canary_arm("template", tname, ex.run.org, ex.run.user, ex.run.id)
            if c is not None:
                chosen_template = f"{tname}@{c.candidate if arm == 'candidate' else c.baseline}"
                meta["canary"] = {"kind": "template", "name": tname, "arm": arm, "template": chosen_template}
                ex.canary_arms[f"template:{tname}"] = ("template", tname, str(arm))
        if model is None:
            c, arm = await ex.app._canary_arm("model", task, ex.run.org, ex.run.user, ex.run.id)
            if c is not None:
                chosen_model = c.candidate if arm == "candidate" else c.baseline
                meta["canary"] = {"kind": "model", "name": task, "arm": arm, "model": chosen_model}
                ex.canary_arms[f"model:{task}"] = ("model", task, str(arm))
        user_text = rg.user_strings(vars) + "\n" + rg.user_strings(
            [m.get("content") for m in messages or [] if m.get("role") == "user"])
        if user_text.strip():
            await rg.scan(user_text, "user", f"the input of model call {task!r}", meta)
        for m in messages or []:
            if m.get("role") == "tool":
                await rg.scan_json(m.get("content"), "tool", f"a tool message of model call {task!r}", meta)
        safe_vars = await rg.redact_value(vars)
        safe_messages = await rg.redact_value(messages) if messages is not None else None
        await rg.seal()
        req = LLMRequest(task=task, template=chosen_template, vars=safe_vars, messages=safe_messages,
                         output=output, model=chosen_model, max_tokens=max_tokens, temperature=temperature,
                         cacheable=cacheable, tools=tool_specs)
        call = CallContext(run_id=ex.run.id, org=ex.run.org, user=ex.run.user, workflow=ex.run.workflow,
                           version=ex.run.version, step_seq=seq, budget=ex.wdef.budget,
                           spent_tokens=ex.spent_tokens, spent_usd=ex.spent_usd)
        sink = None
        if stream:
            sink = await ex.stream.text(seq, attempt, task, redact=_stream_redactor(rg) if rg.pii_on else None)
        try:
            result = await gateway.complete(req, call, on_delta=None if sink is None else sink.feed)
        except BudgetExceeded as err:  # the call went through but overspent: keep what it cost
            spent = err.details.get("result")
            if spent is not None:
                spent = spent.to_json() if hasattr(spent, "to_json") else spent
                err._stalwart_meta = {k: spent[k] for k in _META_FIELDS if k in spent}  # type: ignore[attr-defined]
            if sink is not None:
                sink.abort()
            raise
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        data = result.to_json()
        try:  # the answer is scanned before its stream is closed: a blocked answer's unsent tail never goes out
            await rg.scan_json(result.text, "model", f"the answer of model call {task!r}", meta)
        except BaseException:
            if sink is not None:
                sink.abort(drop_pending=True)
            raise
        if sink is not None:
            await sink.finish(result.text)
        if rg.pii_on and result.text:
            redacted = await rg.redact_value(result.text)
            if redacted != result.text:  # PII the model produced does not leave unredacted
                data["text"] = redacted
                if output is not None:
                    try:
                        data["value"] = output.model_validate_json(redacted).model_dump(mode="json")
                    except Exception:
                        data["value"] = await rg.redact_value(data["value"])
                else:
                    data["value"] = redacted
                meta["output_redacted"] = True
                await rg.seal()
        trusted = _developer_text(gateway, chosen_template, safe_vars, messages)
        if trusted:  # identifiers the developer's own prompt gave the model (taint tracking trusts them)
            meta["trusted_tokens"] = trusted
        if rg.pii_counts:
            meta["pii"] = dict(rg.pii_counts)
        if not result.cached:
            await _watch_model_identity(ex, result, meta)
        if data.get("tool_calls"):
            data["tool_calls"], blocked = ex.app._filter_tool_calls(ex, data["tool_calls"], meta, allowed)
            if allowed is not None:
                data["blocked_tool_calls"] = blocked
        meta.update({k: data[k] for k in _META_FIELDS if k in data})
        meta["attempts"] = len(data.get("attempts") or [])
        meta["provider_attempts"] = data.get("attempts") or []
        return data, meta

    return await ex.durable("llm", task, body, seq=seq)  # type: ignore[no-any-return]


def _developer_text(gateway: Any, template: str | None, vars: dict[str, Any],
                    messages: list[dict[str, Any]] | None) -> list[str]:
    """The identifier-like tokens of the system and developer parts of a call: the template's own
    (caller values cannot fill those parts) and the workflow's system and developer messages."""
    from stalwart.engine._taint import trusted_tokens

    texts = [str(m.get("content") or "") for m in messages or [] if m.get("role") in ("system", "developer")]
    if template is not None:
        try:
            rendered = gateway.templates.get(template).render(vars)
        except Exception:  # the call itself rendered it; nothing to add if it cannot be read again
            rendered = []
        texts += [str(m.get("content") or "") for m in rendered if m.get("role") != "user"]
    return trusted_tokens(texts) if any(texts) else []


def _stream_redactor(rg: Any) -> Any:
    """Redact a streamed batch with the run's numbering; new placeholder values go to the vault."""

    async def redact(text: str) -> str:
        out = await rg.redact_value(text)
        if out != text:
            await rg.seal()
        return str(out)

    return redact


def _tool_spec(ex: RunExecution, tool: Any) -> dict[str, Any]:
    """A tool the model may call, as a JSON-schema function spec (only the workflow's own tools)."""
    from stalwart.engine._definitions import ToolDef
    from stalwart.errors import UnauthorizedToolCall

    tdef: ToolDef | None = ex.app.tool_for(tool)
    if tdef is None or not ex.wdef.allows(tdef):
        raise UnauthorizedToolCall(f"{tool!r} is not a tool of workflow {ex.wdef.key}", retryable=False)
    return {"name": tdef.name, "description": tdef.description, "parameters": tdef.json_schema()}


async def _watch_model_identity(ex: RunExecution, result: Any, meta: dict[str, Any]) -> None:
    """"It worked yesterday": a provider can change what answers under the same model name. The
    response model id is recorded on every call; a change from the last one seen is flagged on the
    step, audited and logged as an alert."""
    key = f"model_identity:{result.model}"
    seen = await ex.store.get_flag(key)
    current = {"response_model": result.response_model, "model_id": result.model_id}
    if seen is not None and seen.get("response_model") == current["response_model"]:
        return
    await ex.store.set_flag(key, current, ex.now())
    if seen is None:
        return
    change = {"entry": result.model, "was": seen.get("response_model"), "now": current["response_model"]}
    meta["model_changed"] = change
    gov = ex.app._governance
    if gov is not None:
        from stalwart.governance import AuditEvent

        await gov.audit.append([AuditEvent(event_type="model.changed", action="observe", actor="system",
                                           resource=result.model, org_id=ex.run.org, run_id=ex.run.id,
                                           details=change)])
    import logging

    logging.getLogger("stalwart.gateway").warning(
        "model %s now answers as %s (was %s)", result.model, change["now"], change["was"])
