"""Governance in the run: audit entries in every step's transaction, a policy decision and a risk
score before every tool call, and durable human reviews.

Nothing here is optional per call: ``ctx.tool`` always goes through :func:`authorize_tool_call`,
and every commit carries its audit entry, so no step is recorded without one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stalwart.engine._definitions import ToolDef
from stalwart.engine._taint import tool_taint
from stalwart.errors import PolicyDenied, ReviewRejected, TaintedArgument
from stalwart.store import JournalEntry

if TYPE_CHECKING:
    from stalwart.engine._app import App
    from stalwart.engine._execution import RunExecution

__all__ = ["Governance", "authorize_tool_call", "request_review", "step_audit_event"]

_AMOUNT_KEYS = ("cents", "amount_cents", "amount")
TAINT_REASON = "tainted-arguments"
"""The built-in rule's reason on a decision it made (``[guard] taint``)."""


class Governance:
    """The app's governance services, built once when the app connects: the ONE construction site.

    The engine, the HTTP API and the CLI all use this object (``await app.governance()``), so they
    share one audit log (signing key, anchors), one policy engine, one review queue, one risk
    scorer, one kill switch and one compliance service. ``broker`` is the app's credential broker:
    engaging the kill switch from any entry point bumps its epoch, revoking every credential
    minted so far.
    """

    def __init__(self, app: App, broker: Any = None) -> None:
        from stalwart.governance import (
            AuditLog,
            KillSwitch,
            PolicyEngine,
            PromptChanges,
            ReviewQueue,
            RiskScorer,
            open_anchor,
        )

        s = app.settings.governance
        store = app.store
        self.app = app
        self.audit = AuditLog(
            store,
            signing_key=_read_key(s.signing_key_file),
            checkpoint_every=s.checkpoint_every,
            checkpoint_interval_s=s.checkpoint_interval_s,
            anchor=open_anchor(s.anchor_url, retention_days=s.anchor_retention_days, clock=app.clock.time,
                               s3_endpoint_url=s.anchor_s3_endpoint_url or app.settings.artifacts.s3_endpoint_url),
            clock=app.clock.time,
        )
        self.policy = PolicyEngine(policies_dir(app), store=store, audit=self.audit, clock=app.clock.time,
                                   refresh_s=s.refresh_s)
        self.prompts = PromptChanges(store, self.audit, validate=_template_hash, clock=app.clock.time)
        self.risk = RiskScorer(review_above=s.review_above, block_above=s.block_above)
        self.reviews = ReviewQueue(
            store,
            app.clock.time,
            app.settings.webhook_url,
            audit=self.audit,
            on_decision=self._on_decision,
            validate_args=self._validate_args,
            sample_rate=s.review_sample_rate,
        )
        self.kill_switch = KillSwitch(store, self.audit, broker=broker, clock=app.clock.time,
                                      webhook_url=app.settings.webhook_url)
        self._compliance: Any = None

    async def compliance(self) -> Any:
        """GDPR export and erasure, evidence and inventory (``stalwart.governance.Compliance``),
        reaching the runs, the vault, every memory tier, the artifact store and persisted traces.

        Built on first use: the vault and the artifact store need the master key. Without it both
        are absent; if the store still holds vault entries or artifacts, erasure is refused (fail
        closed) with the setting named, rather than reported as done.
        """
        if self._compliance is None:
            from stalwart.errors import ConfigError
            from stalwart.governance import Compliance
            from stalwart.guard import Vault, load_master_key
            from stalwart.memory import Memory
            from stalwart.store import ArtifactStore

            app = self.app
            unreachable: dict[str, str] = {}
            try:
                load_master_key(app.settings.guard)
            except ConfigError as exc:  # sealed data that cannot be opened or shredded: say so, fail closed
                artifacts = None
                why = f"no master key: {exc}"
                if await Vault(app.store, settings=app.settings.guard).holds_entries():
                    unreachable["vault entries"] = why
                if await ArtifactStore.held(app.store):
                    unreachable["artifacts"] = why
            else:  # a misconfigured artifact store is an error, not a silently skipped part
                artifacts = await app.artifacts()
            # Export and erasure only read and delete rows: a Memory that never embeds is enough,
            # and the app's own (with its embedder) is used when it is already loaded.
            memory = app._memory or Memory(app.store, app.guard(), clock=app.clock.time)
            self._compliance = Compliance(app.store, self.audit, await app.vault(required=False),
                                          app.clock.time, memory=memory, artifacts=artifacts,
                                          traces=_Traces(app.store), unreachable=unreachable)
        return self._compliance

    async def start(self) -> None:
        """Seed the store's policies (first connect of a store) or adopt its active version."""
        await self.policy.start()

    async def _on_decision(self, review: Any) -> None:
        await self.app.signal(review.run_id, f"review:{review.id}", review.signal_payload())

    def _validate_args(self, review: Any, args: dict[str, Any]) -> dict[str, Any]:
        tool = self.app.tool_def(str(review.proposed_action.get("tool", "")))
        if tool is None:
            return args
        return tool.validate_args(args)

    async def close(self) -> None:
        await self.audit.close()


class _Traces:
    """The runs' persisted spans, as compliance sees them (telemetry owns the layout)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def export_runs(self, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        from stalwart.telemetry import load_spans

        out = {}
        for rid in run_ids:
            spans = await load_spans(self.store, rid)
            if spans:
                out[rid] = [s.to_dict() for s in spans]
        return out

    async def erase_runs(self, run_ids: list[str]) -> int:
        from stalwart.telemetry import erase_spans

        return await erase_spans(self.store, run_ids)


def _read_key(path: str | None) -> bytes | None:
    """The audit signing key from ``governance.signing_key_file`` (base64 of 32 raw Ed25519 bytes);
    a missing or malformed file is a :class:`ConfigError` naming the setting (never a silent
    fallback to the store-kept key: checkpoints would then verify against the wrong key)."""
    if not path:
        return None
    import base64
    import binascii

    from stalwart.errors import ConfigError

    where = f"governance.signing_key_file ({path})"
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the audit signing key: {exc.strerror}") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the audit signing key is not valid base64") from None
    if len(key) != 32:
        raise ConfigError(f"{where}: the audit signing key must decode to 32 bytes (Ed25519), not {len(key)}")
    return key


def _template_hash(ref: str, source: str) -> str:
    """The gateway's check of a proposed template (a ``ConfigError`` if invalid); its hash."""
    from stalwart.gateway import parse_template, split_ref

    name, version = split_ref(ref)
    return parse_template(source.encode(), name, version).hash


def policies_dir(app: App) -> Path:
    """The bundle that seeds a store holding none: ``governance.policies_dir`` if set, else the
    app's ``App(policies=...)``, else Stalwart's bundled defaults. The working directory is never
    searched, so a process decides the same wherever it was started."""
    configured = app.settings.governance.policies_dir
    if configured:
        return Path(configured)
    if app.policies is not None:
        return app.policies
    from stalwart.governance import DEFAULT_POLICIES

    return DEFAULT_POLICIES


def step_audit_event(ex: RunExecution, entry: JournalEntry) -> Any:
    """The audit entry of one committed step (redacted data and references only)."""
    from stalwart.governance import AuditEvent

    meta = entry.meta or {}
    details: dict[str, Any] = {"seq": entry.seq, "kind": entry.kind, "name": entry.name, "status": entry.status,
                               "attempts": entry.attempts}
    if entry.started_at is not None and entry.finished_at is not None:
        details["latency_ms"] = round((entry.finished_at - entry.started_at) * 1000, 3)
    decision = None
    policy_version = None
    risk = None
    if entry.kind == "llm":
        for k in ("model", "model_id", "tokens_in", "tokens_out", "cost_usd", "cached", "pii"):
            if k in meta:
                details[k] = meta[k]
        routing = meta.get("routing") or {}
        details["routing"] = {"chosen": routing.get("chosen"), "reason": routing.get("reason"),
                              "skipped": [s.get("model") for s in routing.get("skipped", [])]}
        if entry.result_json:  # the journaled answer is already redacted by the guard
            details["response_sha256"] = _sha(entry.result_json)
    elif entry.kind in ("tool", "compensation"):
        for k in ("duration_ms", "credential_id", "sandbox", "mutating", "idempotency_key", "fallback"):
            if k in meta:
                details[k] = meta[k]
        if "args" in meta:
            details["args"] = ex.guard().redact_now(meta["args"])
        if entry.result_json:
            details["output_sha256"] = _sha(entry.result_json)
    elif entry.kind == "policy" and entry.result_json:
        result = json.loads(entry.result_json)
        decision = result.get("action")
        policy_version = result.get("policy_version")
        risk = result.get("risk", {}).get("score")
        details["reasons"] = result.get("reasons")
        details["risk_factors"] = result.get("risk", {}).get("factors")
        if result.get("taint"):  # argument names and the steps their values came from, never the values
            details["taint"] = result["taint"]
    if meta.get("guard"):
        details["guard"] = meta["guard"]
    if entry.error:
        details["error"] = {k: entry.error.get(k) for k in ("type", "code", "message", "retryable")}
    run = ex.run
    return AuditEvent(
        event_type=f"{entry.kind}.{entry.status}",
        action=entry.kind,
        actor=f"agent:{run.workflow}@{run.version}",
        resource=entry.name,
        decision=decision,
        org_id=run.org,
        user_id=run.user,
        run_id=run.id,
        trace_id=run.trace_id,
        workflow_version=f"{run.workflow}@{run.version}",
        policy_version=policy_version,
        risk_score=risk,
        details=details,
        event_id=f"{run.id}:{entry.seq}:{entry.status}:{entry.attempts}",
        timestamp=entry.finished_at or ex.now(),
    )


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _amount(args: dict[str, Any]) -> int:
    for k in _AMOUNT_KEYS:
        v = args.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return int(v)
    return 0


async def authorize_tool_call(
    ex: RunExecution, tool: ToolDef, args: dict[str, Any], *, seq: int | None = None,
    note: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate policy and risk for a tool call, as a durable step (the same answer on replay).
    ``note`` is added to the step's meta (an agent's turn)."""
    gov: Governance = await ex.app.governance()

    async def body(seq: int, attempt: int) -> tuple[dict[str, Any], dict[str, Any]]:
        await gov.policy.refresh()  # a version approved on any host is in force within refresh_s
        now = ex.now()
        amount = _amount(args)
        tool_risk, mutating = tool.risk, tool.mutating
        if tool.mcp is not None:  # the server's own annotations: hints that can only raise the risk
            from stalwart.engine._mcp import risk_hints

            tool_risk, mutating = await risk_hints(ex, tool)
        assessment = gov.risk.score(
            tool_risk=tool_risk, data_sensitivity=tool.sensitivity, amount=amount, cost=ex.spent_usd,
            external_calls=len(tool.egress), guard_flags=[str(f.get("action", "flag")) for f in ex.flags],
            pii=sum(ex.guard().pii_counts.values()),
        )
        target_org = str(args.get("org") or ex.run.org)
        tainted = await tool_taint(ex, tool, args, seq) if (mutating or tool.mcp is not None) else {}
        decision = gov.policy.authorize(
            {"workflow": ex.run.workflow, "version": ex.run.version, "org": ex.run.org, "role": ex.wdef.role},
            "call_tool",
            {"tool": tool.name, "sensitivity": tool.sensitivity, "org": ex.run.org, "mutating": mutating},
            {"time": int(now), "hour": datetime.fromtimestamp(now, tz=UTC).hour, "target_org": target_org,
             "amount": amount, "risk": int(assessment.score), "reviewed": False,
             "taint": bool(tainted), "tainted_args": sorted(tainted)},
        )
        if decision.allowed and assessment.action == "auto":
            action = "allow"
        elif (decision.allowed or decision.review_required) and not decision.errors:
            action = "review"
        else:
            action = "deny"
        reasons = list(decision.reasons)
        taint_mode = ex.app.settings.guard.taint
        if tainted and taint_mode == "deny":
            action = "deny"
            reasons.append(TAINT_REASON)
        elif tainted and taint_mode == "review" and action == "allow":
            action = "review"
            reasons.append(TAINT_REASON)
        result = {"action": action, "allowed": decision.allowed, "reasons": reasons,
                  "policy_version": decision.policy_version, "review_required": decision.review_required,
                  "errors": list(decision.errors), "risk": assessment.to_json(), "amount": amount}
        if tainted:
            result["taint"] = {"args": tainted, "mode": taint_mode}
        if ex.app.telemetry is not None:
            ex.app.telemetry.policy_decision(tool.name, action)
        return result, {"tool": tool.name, **(note or {})}

    return await ex.durable("policy", tool.name, body, seq=seq)  # type: ignore[no-any-return]


async def request_review(
    ex: RunExecution, reason: str, *, proposed: dict[str, Any], risk: Any = None, policy: Any = None,
    severity: str | None = None, seqs: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Open a review (durably, once) and wait for a human decision; raise if rejected."""
    gov: Governance = await ex.app.governance()

    async def body(seq: int, attempt: int) -> tuple[dict[str, Any], dict[str, Any]]:
        review = await gov.reviews.create(
            ex.run.id, seq, ex.run.user or f"agent:{ex.run.workflow}", proposed, risk, policy, severity,
            org=ex.run.org,
        )
        return {"review_id": review.id, "status": review.status, "reason": reason}, {"review_id": review.id}

    review_seq, signal_seq = seqs if seqs is not None else (None, None)
    opened = await ex.durable("review", reason[:80] or "review", body, seq=review_seq)
    if opened["status"] == "auto_approved":
        return {"approved": True, "status": "auto_approved", "args": None, "review_id": opened["review_id"]}
    decision = await ex.ctx_wait_signal(f"review:{opened['review_id']}", seq=signal_seq)
    if not decision or not decision.get("approved"):
        who = (decision or {}).get("reviewer") or "a reviewer"
        raise ReviewRejected(f"{who} rejected: {reason}", retryable=False,
                             details={"review_id": opened["review_id"], "note": (decision or {}).get("note")})
    return dict(decision)


def denial(tool: ToolDef, result: dict[str, Any]) -> PolicyDenied:
    taint = result.get("taint")
    if taint and taint.get("mode") == "deny":
        parts = [f"{arg!r} derives from the {src.get('kind')} step {src.get('name')!r} (journal position "
                 f"{src.get('seq')})" for arg, src in taint["args"].items()]
        return TaintedArgument(
            f"tool {tool.name!r} refused: {'; '.join(parts)}, not from the run's trusted input "
            "(content from tools and models cannot choose a guarded argument)",
            retryable=False, details={"tool": tool.name, "tainted_args": taint["args"],
                                      "policy_version": result.get("policy_version")})
    why = ", ".join(result.get("reasons") or []) or "no policy permits it"
    if result.get("errors"):
        why += f" ({'; '.join(result['errors'])})"
    return PolicyDenied(f"policy {result.get('policy_version')} denies calling {tool.name!r}: {why}",
                        retryable=False, details={"tool": tool.name, "reasons": result.get("reasons")})
