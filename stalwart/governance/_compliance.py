"""Compliance: GDPR export (Art. 15) and erasure (Art. 17), audit evidence, the AI inventory.

A data subject is matched by the runs' ``user_id`` or their ``meta["subject"]``. Erasure
crypto-shreds the subject's vault keys (the guard's :class:`~stalwart.guard.Vault`), overwrites
stored payloads of their runs, and compacts the database so old bytes do not linger in free pages
or the WAL. The audit chain is untouched: it holds redacted data and references only, and the
erasure itself is audited.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from stalwart.governance._db import gov_db
from stalwart.governance._events import AuditEvent
from stalwart.governance._risk import RiskScorer

__all__ = ["Compliance"]

ERASED = '{"erased":true}'


def _maybe_json(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


class Compliance:
    """``vault``: the guard's PII vault (optional; without it export has no raw values and erase
    shreds nothing in the vault)."""

    def __init__(
        self, store: Any, audit: Any, vault: Any = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.audit = audit
        self.vault = vault
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

    async def export(self, subject: str, *, requester: str = "system") -> dict[str, Any]:
        """Everything held about ``subject`` as one JSON-able bundle: runs with their inputs,
        outputs and steps, audit entries, and vault values decrypted (the caller has authorised
        ``requester``; the export is audited)."""
        runs = await self.db.subject_runs(subject)
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
                }
            )
        vault_values: dict[str, dict[str, str]] = {}
        if self.vault is not None:
            for r in runs:
                mapping = await self.vault.mapping(r["org"] or "default", scope=r["id"])
                if mapping:
                    vault_values[r["id"]] = mapping
        events = [json.loads(b) for _, b in await self.db.bodies(run_ids=ids, user_id=subject)]
        await self._record(
            "compliance.exported", requester, subject, runs=len(runs), audit_entries=len(events)
        )
        return {
            "subject": subject,
            "generated_at": self.clock(),
            "runs": out_runs,
            "audit_entries": events,
            "vault": vault_values,
        }

    async def erase(
        self, subject: str, *, requester: str = "system", orgs: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Crypto-shred and scrub ``subject``; returns what was done (also audited)."""
        runs = await self.db.subject_runs(subject)
        ids = [r["id"] for r in runs]
        shredded = 0
        if self.vault is not None:
            for org in sorted({*(r["org"] or "default" for r in runs), *orgs}):
                shredded += await self.vault.erase_subject(org, subject)
                for rid in ids:
                    shredded += await self.vault.erase_scope(org, rid)
        scrubbed = await self.db.scrub_runs(ids, ERASED)
        await self.db.compact()
        summary = {"runs": len(ids), "rows_scrubbed": scrubbed, "vault_entries_shredded": shredded}
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
