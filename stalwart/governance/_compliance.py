"""Compliance: GDPR export (Art. 15) and erasure (Art. 17), audit evidence, the AI inventory.

A data subject is matched by the runs' ``user_id`` or their ``meta["subject"]``, by the
``user_id`` of memory items, by the subject's own data keys (artifacts and vault entries sealed
for them) and by the run ids of their runs. Export and erasure reach, wherever they sit:

- run inputs, outputs and errors, journal payloads (step results, errors, metadata: working
  memory is rebuilt from these), signals, outbox, dead letters and reviews of the subject's runs;
- episodic and semantic memory (the subject's items in every org, and episodes of their runs);
- the artifact store (objects under the subject's key, and those written by their runs);
- the guard's PII vault (entries under the subject's key, and the scopes of their runs);
- the persisted traces of their runs (spans carry ``user.id`` and, with content capture, messages).

Erasure deletes what can be deleted and crypto-shreds the rest: the subject's vault and artifact
data keys are destroyed, so a copy of their ciphertext left in a backup or a bucket version can
no longer be opened. Stored payloads are overwritten, then the database is compacted so old bytes
do not linger in free pages or the WAL. The audit chain is untouched (so it still verifies): it
holds redacted data and references only, and the erasure itself is audited.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from stalwart.errors import StalwartError
from stalwart.governance._db import gov_db
from stalwart.governance._events import AuditEvent
from stalwart.governance._risk import RiskScorer

__all__ = ["Compliance"]

ERASED = '{"erased":true}'
DEFAULT_ORG = "default"
"""Runs started without an org keep their vault entries and artifacts under this org."""


def _maybe_json(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _check_subject(subject: str) -> None:
    from stalwart.errors import InvalidInput

    if not isinstance(subject, str) or not subject.strip():
        raise InvalidInput("a data subject id is required (a user id, or the subject set on runs)")


class Compliance:
    """GDPR export and erasure over everything that can hold a subject's data.

    ``vault``: the guard's PII vault (:class:`stalwart.guard.Vault`). ``memory``: agent memory
    (:class:`stalwart.memory.Memory`). ``artifacts``: the artifact store
    (:class:`stalwart.store.ArtifactStore`). ``traces``: the runs' persisted spans, anything with
    ``async export_runs(run_ids) -> {run_id: [span, ...]}`` and ``async erase_runs(run_ids) -> int``.
    Each is optional; one that is absent is named in the erasure summary's ``not_reached`` so that
    nobody mistakes a partial erasure for a full one. ``unreachable``: parts known to hold data that
    cannot be reached (name -> why, e.g. vault entries but no master key): erasure then fails closed,
    before changing anything, and exports name them under ``not_reached``.
    """

    def __init__(
        self,
        store: Any,
        audit: Any,
        vault: Any = None,
        clock: Callable[[], float] = time.time,
        *,
        memory: Any = None,
        artifacts: Any = None,
        traces: Any = None,
        unreachable: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.vault = vault
        self.memory = memory
        self.artifacts = artifacts
        self.traces = traces
        self.unreachable = dict(unreachable or {})
        self.clock = clock
        self.db = gov_db(store)

    async def _record(self, event_type: str, requester: str, subject: str, **details: Any) -> None:
        await self.audit.append(
            [
                AuditEvent(
                    event_type,
                    action=event_type.split(".", 1)[1],
                    actor=f"user:{requester}",
                    resource=f"subject:{subject}",
                    decision="done",
                    details=details,
                )
            ]
        )

    async def subject_orgs(self, subject: str) -> set[str]:
        """Every org holding data of ``subject``: runs, memory, artifacts, vault entries."""
        runs = await self.db.subject_runs(subject)
        orgs = {r["org"] or DEFAULT_ORG for r in runs}
        if self.memory is not None:
            orgs |= set(await self.memory.subject_orgs(subject))
        if self.artifacts is not None:
            orgs |= set(await self.artifacts.subject_orgs(subject))
        if self.vault is not None:
            orgs |= set(await self.vault.subject_orgs(subject))
        return orgs

    async def export(
        self, subject: str, *, requester: str = "system", orgs: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Everything held about ``subject`` as one JSON-able bundle: runs with their inputs,
        outputs and steps, memory items, artifacts (decrypted), vault values (decrypted) and audit
        entries. ``orgs`` limits it to those orgs (``None``: all). The caller has authorised
        ``requester``; the export is audited."""
        _check_subject(subject)
        only = None if orgs is None else set(orgs)
        runs = [
            r for r in await self.db.subject_runs(subject) if only is None or (r["org"] or DEFAULT_ORG) in only
        ]
        ids = [r["id"] for r in runs]
        payloads = await self.db.run_payloads(ids)
        out_runs = []
        for r in runs:
            p = payloads.get(r["id"], {})
            inp, outp, err = p.get("run") or (None, None, None)
            out_runs.append(
                {
                    **r,
                    "input": _maybe_json(inp),
                    "output": _maybe_json(outp),
                    "error": _maybe_json(err),
                    "steps": [
                        {
                            "seq": s[0],
                            "kind": s[1],
                            "name": s[2],
                            "status": s[3],
                            "result": _maybe_json(s[4]),
                            "error": _maybe_json(s[5]),
                        }
                        for s in p.get("steps", [])
                    ],
                    "events": [  # the run's durable stream (ctx.emit, streamed model text)
                        {"offset": e[0], "kind": e[1], "data": _maybe_json(e[2]), "at": e[3]}
                        for e in p.get("events", [])
                    ],
                }
            )
        all_orgs = await self.subject_orgs(subject)
        scope_orgs = sorted(all_orgs if only is None else all_orgs & only)
        run_ids_by_org: dict[str, list[str]] = {}
        for r in runs:
            run_ids_by_org.setdefault(r["org"] or DEFAULT_ORG, []).append(r["id"])
        memory: list[dict[str, Any]] = []
        artifacts: list[dict[str, Any]] = []
        vault_values: dict[str, dict[str, str]] = {}
        for org in scope_orgs:
            run_ids = run_ids_by_org.get(org, [])
            if self.memory is not None:
                memory += [
                    {"org": org, "user": i.user, **i.to_json()}
                    for i in await self.memory.subject_items(org, subject, run_ids=run_ids)
                ]
            if self.artifacts is not None:
                for ref, run_id in await self.artifacts.subject_refs(org, subject, run_ids=run_ids):
                    artifacts.append(await self._artifact_json(ref, run_id))
            if self.vault is not None:
                for rid in run_ids:
                    mapping = await self.vault.mapping(org, scope=rid)
                    if mapping:
                        vault_values[rid] = mapping
                for scope, mapping in (await self.vault.subject_mapping(org, subject)).items():
                    vault_values.setdefault(scope, {}).update(mapping)
        traces = await self.traces.export_runs(ids) if self.traces is not None else {}
        events = [json.loads(b) for _, b in await self.db.bodies(run_ids=ids, user_id=subject)]
        await self._record(
            "compliance.exported",
            requester,
            subject,
            runs=len(runs),
            audit_entries=len(events),
            memory_items=len(memory),
            artifacts=len(artifacts),
        )
        return {
            "subject": subject,
            "generated_at": self.clock(),
            "runs": out_runs,
            "memory": memory,
            "artifacts": artifacts,
            "audit_entries": events,
            "vault": vault_values,
            "traces": traces,
            "not_reached": self.unreachable,
        }

    async def _artifact_json(self, ref: Any, run_id: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {**ref.to_json(), "org": ref.org, "run_id": run_id}
        try:
            data = await self.artifacts.get(ref)
        except StalwartError as exc:  # expired or lost: say so rather than fail the whole export
            out["content"] = None
            out["unavailable"] = str(exc)
            return out
        if ref.media_type == "application/json":
            out["content"] = _maybe_json(data.decode("utf-8", errors="replace"))
        else:
            out["content_base64"] = base64.b64encode(data).decode()
        return out

    async def erase(
        self, subject: str, *, requester: str = "system", orgs: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Delete, scrub and crypto-shred ``subject`` everywhere (in every org holding their data,
        plus ``orgs``); returns what was done (also audited)."""
        _check_subject(subject)
        if self.unreachable:
            from stalwart.errors import ConfigError

            held = " and ".join(sorted(self.unreachable))
            raise ConfigError(
                f"erasure refused, nothing was changed: the store holds {held} that cannot be erased here "
                f"({next(iter(self.unreachable.values()))})"
            )
        runs = await self.db.subject_runs(subject)
        ids = [r["id"] for r in runs]
        run_ids_by_org: dict[str, list[str]] = {}
        for r in runs:
            run_ids_by_org.setdefault(r["org"] or DEFAULT_ORG, []).append(r["id"])
        all_orgs = sorted(await self.subject_orgs(subject) | set(orgs))
        shredded = memory_deleted = artifacts_deleted = 0
        for org in all_orgs:
            run_ids = run_ids_by_org.get(org, [])
            if self.vault is not None:
                shredded += await self.vault.erase_subject(org, subject)
                for rid in run_ids:
                    shredded += await self.vault.erase_scope(org, rid)
            if self.memory is not None:
                memory_deleted += await self.memory.erase_subject(org, subject)
                memory_deleted += await self.memory.erase_runs(org, run_ids)
            if self.artifacts is not None:
                artifacts_deleted += await self.artifacts.erase_subject(org, subject)
                artifacts_deleted += await self.artifacts.erase_runs(org, run_ids)
        spans_deleted = await self.traces.erase_runs(ids) if self.traces is not None else 0
        scrubbed = await self.db.scrub_runs(ids, ERASED)
        await self.db.compact()
        reached = {"vault": self.vault, "memory": self.memory, "artifacts": self.artifacts, "traces": self.traces}
        not_reached = [name for name, part in reached.items() if part is None]
        summary: dict[str, Any] = {
            "runs": len(ids),
            "rows_scrubbed": scrubbed,
            "vault_entries_shredded": shredded,
            "memory_items_deleted": memory_deleted,
            "artifacts_deleted": artifacts_deleted,
            "trace_batches_deleted": spans_deleted,
            "orgs": all_orgs,
            "not_reached": not_reached,
        }
        await self._record("compliance.erased", requester, subject, **summary)
        return {"subject": subject, **summary}

    async def report(self, *, since: float | None = None) -> tuple[str, dict[str, Any]]:
        """SOC 2 style evidence as (Markdown, JSON): access summary, policy versions, kill-switch
        drills, incidents, review SLA adherence."""
        counts = await self.db.event_counts()
        versions = await self.db.select("policy_versions", {}, order_by="created_at")
        active = await self.store.get_flag("policy_active")
        ks = [
            json.loads(b)
            for _, b in await self.db.events_by_type(
                ["kill_switch.engaged", "kill_switch.release_requested", "kill_switch.released"]
            )
        ]
        reviews = await self.db.select("reviews", {} if since is None else {"created_at": (">=", since)})
        decided = [r for r in reviews if r["decided_at"] is not None and r["status"] != "auto_approved"]
        in_sla = [r for r in decided if r["due_at"] is None or r["decided_at"] <= r["due_at"]]
        escalations = counts.get("review.escalated", 0)
        dead = await self.store.list_dead_letters(limit=1000)
        data: dict[str, Any] = {
            "generated_at": self.clock(),
            "access": {"audit_entries_by_type": counts, "total": sum(counts.values())},
            "policies": {
                "active": active,
                "versions": [
                    {
                        "label": v["label"],
                        "content_hash": v["content_hash"],
                        "proposed_by": v["proposed_by"],
                        "approved_by": v["approved_by"],
                        "created_at": v["created_at"],
                    }
                    for v in versions
                ],
            },
            "kill_switch": [
                {
                    "type": e["event_type"],
                    "actor": e["actor"],
                    "at": e["timestamp"],
                    "reason": e["details"].get("reason"),
                }
                for e in ks
            ],
            "incidents": {
                "dead_letters_open": len(dead),
                "dead_letters": [{"run_id": d.run_id, "reason": d.reason} for d in dead[:50]],
            },
            "reviews": {
                "total": len(reviews),
                "decided": len(decided),
                "within_sla": len(in_sla),
                "sla_adherence": (len(in_sla) / len(decided)) if decided else None,
                "escalations": escalations,
                "auto_approved": sum(r["status"] == "auto_approved" for r in reviews),
            },
        }
        adherence = data["reviews"]["sla_adherence"]
        md = "\n".join(
            [
                "# Stalwart compliance report",
                "",
                "## Access log",
                *(f"- {k}: {v}" for k, v in sorted(counts.items())),
                "",
                "## Policy versions",
                f"- in force: {(active or {}).get('version', 'none recorded')}",
                *(
                    f"- {v['label']} `{v['content_hash'][:12]}` proposed by {v['proposed_by']}, approved by"
                    f" {v['approved_by']}"
                    for v in versions
                ),
                "",
                "## Kill-switch drills",
                *([f"- {e['type']} by {e['actor']}" for e in data["kill_switch"]] or ["- none"]),
                "",
                "## Incidents",
                f"- open dead letters: {len(dead)}",
                "",
                "## Review SLA adherence",
                f"- decided {len(decided)}, within SLA {len(in_sla)}"
                + (f" ({adherence:.0%})" if adherence is not None else ""),
                f"- escalations: {escalations}",
                "",
            ]
        )
        return md, data

    def inventory(
        self, app: Any, *, models: Iterable[dict[str, Any]] = (), scorer: RiskScorer | None = None
    ) -> dict[str, Any]:
        """The AI system inventory (ISO 42001): workflows and versions, tools with scopes and risk,
        models (given by the caller, from the gateway registry), and a risk assessment per workflow."""
        scorer = scorer or RiskScorer()
        tools: dict[str, Any] = {}
        workflows = []
        for wf in app.workflows():
            assessments = []
            for t in wf.tools.values():
                declared = t.risk or (60 if t.mutating else 20)
                sensitivity = "confidential" if any(s.startswith("write:") for s in t.scopes) else "internal"
                a = scorer.score(
                    tool_risk=declared, data_sensitivity=sensitivity, external_calls=len(t.egress)
                )
                assessments.append(a)
                tools[t.name] = {
                    "scopes": list(t.scopes),
                    "mutating": t.mutating,
                    "sandbox": t.sandbox,
                    "declared_risk": declared,
                    "egress": list(t.egress),
                    "risk": a.to_json(),
                    "compensated": t.compensate is not None,
                }
            worst = max(assessments, key=lambda a: a.score, default=None)
            workflows.append(
                {
                    "name": wf.name,
                    "version": wf.version,
                    "tools": sorted(wf.tools),
                    "budget": repr(wf.budget) if wf.budget else None,
                    "risk": worst.to_json() if worst else None,
                }
            )
        return {"generated_at": self.clock(), "workflows": workflows, "tools": tools, "models": list(models)}
