"""The API's one seam to ``stalwart.governance``: audit, reviews, the kill switch, compliance.

Governance works across the whole store; this adapter adds what HTTP needs on top: org scoping
(an org only sees and changes its own reviews, audit entries and subjects) and plain-JSON
results. A review's final decision signals its run as ``review:{id}`` with
``Review.signal_payload()``, which is what a workflow waiting on it receives.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from stalwart.api._config import DEFAULT_ORG
from stalwart.errors import InvalidInput, PolicyDenied, RunNotFound

__all__ = ["LISTED_EVENT_TYPES", "Governance", "ReviewError", "review_json", "run_org"]

LISTED_EVENT_TYPES = (
    "gateway.chat_completion",
    "run.cancel",
    "dlq.retry",
    "key.create",
    "key.revoke",
    "budget.set",
    "review.created",
    "review.decided",
    "review.escalated",
    "review.approval_recorded",
    "kill_switch.engaged",
    "kill_switch.release_requested",
    "kill_switch.released",
    "compliance.exported",
    "compliance.erased",
    "policy.changed",
    "policy.change_proposed",
    "policy.change_rejected",
)
"""Event types an org-wide listing (no run or user filter) shows: people's and the API's actions."""


class ReviewError(Exception):
    """A refused action; ``status`` is the HTTP status the API answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def run_org(org: str | None) -> str:
    """Runs started with no org belong to :data:`DEFAULT_ORG` as far as the API is concerned."""
    return org or DEFAULT_ORG


def review_json(r: Any) -> dict[str, Any]:
    d = r.to_json()
    d["org"] = run_org(d.get("org"))
    risk = d.get("risk") or {}
    d["risk_score"] = risk.get("score") if isinstance(risk, dict) else None
    d["risk_factors"] = (
        [f for f in (risk.get("factors") or []) if isinstance(f, dict)] if isinstance(risk, dict) else []
    )
    return d


class Governance:
    """Audit, reviews, kill switch and compliance for one app, scoped by org.

    Every service comes from the app's one governance (``await app.governance()``): the same audit
    log (signing key, anchors), review queue, kill switch (holding the credential broker) and
    compliance as the engine and the CLI. Nothing is constructed here.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    @property
    def store(self) -> Any:
        return self.app.store

    async def _gov(self) -> Any:
        return await self.app.governance()

    # -- audit -----------------------------------------------------------------------------
    async def audit(
        self,
        event_type: str,
        *,
        actor: str,
        org: str,
        action: str = "",
        resource: str = "",
        decision: str | None = None,
        run_id: str | None = None,
        user_id: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        await (await self._gov()).audit.record(
            event_type,
            actor=actor,
            org_id=org,
            action=action,
            resource=resource,
            decision=decision,
            run_id=run_id,
            user_id=user_id,
            details=details or {},
        )

    async def audit_events(
        self, *, org: str, run_id: str | None = None, user_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        audit_log = (await self._gov()).audit
        if run_id or user_id:
            events = await audit_log.events(run_ids=[run_id] if run_id else (), user_id=user_id)
        else:
            from stalwart.governance import AuditEvent

            rows = await audit_log.db.events_by_type(LISTED_EVENT_TYPES, limit=max(limit * 20, 2000))
            events = [AuditEvent.from_body(b) for _, b in rows]
        run_orgs: dict[str, str | None] = {}
        out = []
        for e in events:
            d = asdict(e)
            if not d.get("org_id") and d.get("run_id"):
                # Step and review entries carry the run, not always the org: the run's org decides.
                rid = d["run_id"]
                if rid not in run_orgs:
                    try:
                        run_orgs[rid] = run_org((await self.app.get_run(rid)).org)
                    except RunNotFound:
                        run_orgs[rid] = None
                if run_orgs[rid] != org:
                    continue
            elif run_org(d.get("org_id")) != org:
                continue
            out.append(d)
        return out[-limit:]

    async def verify(self, org: str) -> dict[str, Any]:
        """Check the whole chain; the first bad entry is named only when it belongs to ``org``."""
        audit_log = (await self._gov()).audit
        report = (await audit_log.verify()).to_json()
        first_bad = None
        if not report["ok"]:
            first_bad = {"seq": report.get("first_bad_seq"), "reason": report.get("reason")}
            eid = report.get("first_bad_event_id")
            if eid:
                mine = [
                    e for e in await audit_log.events() if e.event_id == eid and run_org(e.org_id) == org
                ]
                first_bad["event_id"] = eid if mine else "(another org)"
        return {
            "ok": report["ok"],
            "checked": report["checked"],
            "mode": "hash-chain+signed-checkpoints",
            "first_bad": first_bad,
        }

    # -- reviews ---------------------------------------------------------------------------
    async def get_review(self, review_id: str) -> dict[str, Any] | None:
        try:
            return review_json(await (await self._gov()).reviews.get(review_id))
        except InvalidInput:
            return None

    async def list_reviews(
        self, org: str | None, status: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Reviews of ``org`` (``None``: every org), newest first."""
        q = (await self._gov()).reviews
        found = await q.list(status, org=org, limit=limit)
        if org == DEFAULT_ORG:
            found += await q.list(status, org="", limit=limit)
        out = [review_json(r) for r in found]
        out.sort(key=lambda r: r["created_at"], reverse=True)
        return out[:limit]

    async def decide_review(
        self,
        review: dict[str, Any],
        *,
        decision: str,
        reviewer: str,
        note: str | None,
        args: dict[str, Any] | None,
    ) -> dict[str, Any]:
        q = (await self._gov()).reviews
        try:
            r = await q.decide(review["id"], reviewer, decision, args, note=note or "")
        except PolicyDenied as exc:
            raise ReviewError(
                403, "self_approval" if "own" in exc.message else "policy_denied", exc.message
            ) from None
        except InvalidInput as exc:
            status = 409 if "already" in exc.message or "concurrently" in exc.message else 422
            raise ReviewError(
                status, "review_conflict" if status == 409 else "invalid_decision", exc.message
            ) from None
        await q.flush() if hasattr(q, "flush") else None
        return review_json(r)

    # -- kill switch -----------------------------------------------------------------------
    async def _switch(self) -> Any:
        return (await self._gov()).kill_switch

    async def kill_status(self) -> dict[str, Any]:
        from stalwart.engine import KILL_SWITCH_FLAG

        flag = await self.store.get_flag(KILL_SWITCH_FLAG)
        pending = await self.store.get_flag("kill_switch_release") if flag is not None else None
        return {
            "engaged": flag is not None,
            "detail": flag,
            "release_approvals": [pending] if pending else [],
        }

    async def kill_engage(self, reason: str, operator: str) -> dict[str, Any]:
        await (await self._switch()).engage(reason, operator)
        return await self.kill_status()

    async def kill_release(self, operator: str) -> dict[str, Any]:
        """First admin's call records a pending release; a second, distinct admin's call releases."""
        try:
            outcome = await (await self._switch()).release(operator)
        except PolicyDenied as exc:
            raise ReviewError(403, "same_operator", exc.message) from None
        if outcome == "not_engaged":
            raise ReviewError(409, "not_engaged", "the kill switch is not engaged")
        status = await self.kill_status()
        return {**status, "released": outcome == "released", "needed": None if outcome == "released" else 2}

    # -- compliance ------------------------------------------------------------------------
    async def _compliance(self) -> Any:
        return await (await self._gov()).compliance()

    async def _subject_orgs(self, subject: str) -> set[str]:
        return {run_org(o) for o in await (await self._compliance()).subject_orgs(subject)}

    async def _known_in(self, subject: str, org: str) -> set[str]:
        """The orgs holding the subject's runs; 404 when ``org`` is not one of them.

        A subject of another org reads exactly like one nobody has heard of, so an org learns
        nothing about another org's customers by probing names."""
        orgs = await self._subject_orgs(subject)
        if org not in orgs:
            raise ReviewError(404, "subject_not_found", f"no data subject {subject!r} in org {org!r}")
        return orgs

    async def export_subject(self, subject: str, org: str, requester: str) -> dict[str, Any]:
        """What ``org`` holds about ``subject``: runs, memory, artifacts, vault values, audit entries."""
        try:
            await self._known_in(subject, org)
            data = await (await self._compliance()).export(subject, requester=requester, orgs=[org])
        except InvalidInput as exc:
            raise ReviewError(422, "invalid_subject", exc.message) from None
        ids = {r["id"] for r in data.get("runs", [])}
        return {
            **data,
            "org": org,
            "audit_entries": [
                e
                for e in data.get("audit_entries", [])
                if run_org(e.get("org_id")) == org or e.get("run_id") in ids
            ],
        }

    async def erase_subject(self, subject: str, org: str, operator: str) -> dict[str, Any]:
        orgs = await self._known_in(subject, org)
        if orgs - {org}:
            raise ReviewError(
                409,
                "subject_spans_orgs",
                "this subject has data in other orgs; erasure must be run by the platform operator",
            )
        return await (await self._compliance()).erase(subject, requester=operator, orgs=[org])
