"""Taint tracking in a run: the provenance index, rebuilt from the journal, and the check of a tool
call's guarded arguments.

Nothing extra is stored to make this work after a crash: the run's input is trusted, every
journaled result of a kind that brings content from outside is untrusted, and the text the
developer wrote into a model call's system and developer parts travels in that step's meta (digests
of its identifier-like tokens only). A worker that takes a run over after ``kill -9`` reads the same
journal, so it builds the same index and decides the same way; a decision already made is replayed
from its ``policy`` step in any case.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from stalwart.governance import ProvenanceIndex, TaintSource, prompt_digests

if TYPE_CHECKING:
    from stalwart.engine._definitions import ToolDef
    from stalwart.engine._execution import RunExecution
    from stalwart.store import JournalEntry

__all__ = ["UNTRUSTED_KINDS", "child_untrusted_input", "observe", "provenance", "tool_taint", "trusted_tokens"]

UNTRUSTED_KINDS = frozenset({"tool", "llm", "step", "signal"})
"""Journal kinds whose results come from outside the trusted input: tool and MCP results (memory
recall included), model outputs, ``ctx.step`` bodies (side effects: anything they read), signals
(a child's output, an external event). A human review's decision is not: it is the trust."""
_LLM_FIELDS = ("text", "value", "tool_calls")
"""What a model produced (its routing and usage numbers are the runtime's own)."""


class _State:
    __slots__ = ("index", "seen")

    def __init__(self, index: ProvenanceIndex) -> None:
        self.index = index
        self.seen: set[int] = set()


def _state(ex: RunExecution) -> _State:
    state: _State | None = getattr(ex, "_provenance", None)
    if state is None:
        index = ProvenanceIndex()
        # A child run's input is trusted only where its parent's was: the values the parent took from
        # untrusted content travel in the child's meta (fixed when it started) and stay untrusted.
        inherited = ex.run.meta.get("untrusted_input") or []
        try:
            value = json.loads(ex.run.input_json) if ex.run.input_json else None
        except ValueError:
            value = None
        index.trust(value, except_=[str(u.get("value")) for u in inherited])
        parent = f"parent:{ex.run.parent_id or ''}"
        for u in inherited:
            index.observe(str(u.get("value")), TaintSource(0, "input", f"{parent} {u.get('name', '')}".strip()))
        state = _State(index)
        ex._provenance = state  # type: ignore[attr-defined]
    return state


def _record(index: ProvenanceIndex, e: JournalEntry) -> None:
    meta = e.meta or {}
    trusted = meta.get("trusted_tokens")
    if trusted:
        index.trust_digests(trusted)
    if e.kind not in UNTRUSTED_KINDS:
        return
    if e.kind == "signal" and e.name.startswith("review:"):
        return
    source = TaintSource(e.seq, e.kind, e.name)
    if e.status == "failed":
        if e.error and e.error.get("message"):  # a tool's error text reaches the model too
            index.observe(str(e.error["message"]), source)
        return
    if not e.result_json:
        return
    try:
        value = json.loads(e.result_json)
    except ValueError:
        index.observe(e.result_json, source)
        return
    if e.kind == "llm" and isinstance(value, dict):
        value = {k: value.get(k) for k in _LLM_FIELDS}
    index.observe(value, source)


def provenance(ex: RunExecution, before: int) -> ProvenanceIndex:
    """The run's index from its input and every final journal entry before position ``before``."""
    state = _state(ex)
    for seq in sorted(ex.journal):
        if seq >= before or seq in state.seen:
            continue
        e = ex.journal[seq]
        if e.status not in ("completed", "failed"):
            continue
        state.seen.add(seq)
        _record(state.index, e)
    return state.index


def observe(ex: RunExecution, seq: int, kind: str, name: str, value: Any) -> None:
    """Index a value the journal holds only by reference (a tool result kept as an artifact)."""
    _state(ex).index.observe(value, TaintSource(seq, kind, name))


def trusted_tokens(texts: list[str]) -> list[str]:
    """The digests of the identifier-like tokens of developer-written prompt text, for a model call's
    meta: what the developer told the model is trusted (see :func:`stalwart.governance.prompt_digests`)."""
    return prompt_digests(texts)


async def tool_taint(ex: RunExecution, tool: ToolDef, args: dict[str, Any], seq: int) -> dict[str, Any]:
    """The guarded arguments of this call that are tainted: ``{arg: {seq, kind, name}}`` of the
    step each value first came from (empty when none is, or the tool guards none)."""
    if not tool.guarded_args:
        return {}
    index = provenance(ex, seq)
    resolve = None
    if any("{{" in json.dumps(args.get(a), default=str) for a in tool.guarded_args):
        rg = ex.guard()
        if rg.pii_on:
            placeholders = await rg.placeholders()
            resolve = placeholders.value
    found = index.tainted(args, tool.guarded_args, allowed=tool.trusted_values, resolve=resolve)
    return {name: src.to_json() for name, src in sorted(found.items())}


def child_untrusted_input(ex: RunExecution, value: Any, before: int) -> list[dict[str, Any]]:
    """What of a child run's ``value`` (its input) derives from untrusted content in this run, as of
    position ``before``: kept in the child's meta so the child does not trust it (a parent must not
    launder a tool's output into a child's trusted input)."""
    found = provenance(ex, before).untrusted_scalars(value)
    return [{"value": norm, "name": f"{src.kind} {src.name} (seq {src.seq})"} for norm, src in sorted(found.items())]
