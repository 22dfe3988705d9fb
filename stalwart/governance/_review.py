"""The human review queue.

The run waits durably; that is the engine's part: it calls :meth:`ReviewQueue.create`, and unless
the review came back already decided (low risk, auto-approved) it waits on
``ctx.wait_signal(f"review:{review.id}")``. :meth:`ReviewQueue.decide` records the decision and
calls ``on_decision(review)``, which the engine binds to ``app.signal(...)``.

Rules: the requester never approves their own request; a blocked-risk action (an emergency
override) needs two distinct approvers; modified arguments go through ``validate_args`` (the
engine's tool schema) before they count; every decision is audited with the reviewer's identity.
SLAs by severity (critical 15 min, high 1 h, medium 4 h): :meth:`escalate_overdue`, run
periodically, moves a breached review to the next tier and the next severity, and notifies.
Low risk is auto-approved, and a configurable sample (10 %) is marked for post-hoc review.
"""

from __future__ import annotations

import builtins
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stalwart.errors import InvalidInput, PolicyDenied, ReviewRejected
from stalwart.governance._db import gov_db
from stalwart.governance._events import AuditEvent, canonical_json
from stalwart.governance._webhook import Webhook

__all__ = ["SEVERITIES", "SLA_SECONDS", "Review", "ReviewQueue"]

SEVERITIES = ("low", "medium", "high", "critical")
SLA_SECONDS: Mapping[str, float | None] = {"critical": 15 * 60, "high": 3600, "medium": 4 * 3600, "low": None}
TIERS = ("reviewers", "leads", "on-call")
DECISIONS = ("approve", "reject", "modify", "escalate")
OPEN = "pending"
FINAL = {"approved", "rejected", "modified", "auto_approved"}


@dataclass(frozen=True, slots=True)
class Review:
    """One review request and its state.

    ``status``: ``pending`` | ``approved`` | ``modified`` (approved with ``args``) | ``rejected`` |
    ``auto_approved``. ``approved`` is true for the statuses that let the action go ahead;
    ``args`` are the arguments to use when ``modified``.
    """

    id: str
    run_id: str
    step_seq: int
    requester: str
    proposed_action: Mapping[str, Any]
    severity: str
    status: str
    created_at: float
    org: str = ""
    risk: Mapping[str, Any] | None = None
    policy: Mapping[str, Any] | None = None
    tier: int = 0
    due_at: float | None = None
    decided_at: float | None = None
    reviewer: str | None = None
    decision: str | None = None
    args: Mapping[str, Any] | None = None
    note: str | None = None
    sampled: bool = False
    approvals: tuple[str, ...] = ()
    required_approvals: int = 1

    @property
    def approved(self) -> bool:
        return self.status in ("approved", "modified", "auto_approved")

    @property
    def decided(self) -> bool:
        return self.status in FINAL

    @property
    def tier_name(self) -> str:
        return TIERS[min(self.tier, len(TIERS) - 1)]

    def signal_payload(self) -> dict[str, Any]:
        """What the engine passes to ``app.signal(run_id, f"review:{id}", ...)``."""
        return {
            "review_id": self.id,
            "status": self.status,
            "approved": self.approved,
            "reviewer": self.reviewer,
            "args": dict(self.args) if self.args is not None else None,
            "note": self.note,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "step_seq": self.step_seq,
            "org": self.org,
            "requester": self.requester,
            "proposed_action": dict(self.proposed_action),
            "risk": self.risk,
            "policy": self.policy,
            "severity": self.severity,
            "tier": self.tier_name,
            "status": self.status,
            "created_at": self.created_at,
            "due_at": self.due_at,
            "decided_at": self.decided_at,
            "reviewer": self.reviewer,
            "decision": self.decision,
            "args": self.args,
            "note": self.note,
            "sampled": self.sampled,
            "approvals": list(self.approvals),
            "required_approvals": self.required_approvals,
        }


def _loads(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) and raw else None


def _from_row(row: Mapping[str, Any]) -> Review:
    risk = _loads(row["risk"])
    approvals = tuple(_loads(row["approvals"]) or ())
    return Review(
        id=row["id"],
        run_id=row["run_id"],
        step_seq=int(row["step_seq"]),
        requester=row["requester"],
        proposed_action=_loads(row["proposed_action"]) or {},
        severity=row["severity"],
        status=row["status"],
        created_at=float(row["created_at"]),
        org=row["org"],
        risk=risk,
        policy=_loads(row["policy"]),
        tier=int(row["tier"]),
        due_at=row["due_at"],
        decided_at=row["decided_at"],
        reviewer=row["reviewer"],
        decision=row["decision"],
        args=_loads(row["args"]),
        note=row["note"],
        sampled=bool(row["sampled"]),
        approvals=approvals,
        required_approvals=2 if risk and risk.get("action") == "block" else 1,
    )


def severity_for(risk: Mapping[str, Any] | None) -> str:
    """critical for a blocked-risk override, high above 80, medium when review is required, else low."""
    if not risk:
        return "medium"
    if risk.get("action") == "block":
        return "critical"
    score = float(risk.get("score", 0))
    return "high" if score > 80 else "medium" if risk.get("action") == "review" else "low"


def _as_json(value: Any) -> Any:
    if value is None:
        return None
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else dict(value)


class ReviewQueue:
    """Review requests in the store, decided by people, routed by risk.

    ``on_decision(review)`` is awaited after a final decision (the engine signals the run).
    ``validate_args(review, args) -> args`` checks modified arguments (raise to refuse them).
    ``sample_rate`` of auto-approved requests are marked ``sampled`` for post-hoc review.
    """

    def __init__(
        self,
        store: Any,
        clock: Callable[[], float] = time.time,
        webhook_url: str | None = None,
        *,
        audit: Any = None,
        on_decision: Callable[[Review], Awaitable[None]] | None = None,
        validate_args: Callable[[Review, dict[str, Any]], dict[str, Any]] | None = None,
        sample_rate: float = 0.10,
        rng: random.Random | None = None,
        sla: Mapping[str, float | None] | None = None,
        webhook: Webhook | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.store = store
        self.db = gov_db(store)
        self.clock = clock
        self.audit = audit
        self.on_decision = on_decision
        self.validate_args = validate_args
        self.sample_rate = sample_rate
        self.rng = rng or random.Random()
        self.sla = {**SLA_SECONDS, **(sla or {})}
        self.webhook = webhook or Webhook(webhook_url)
        self.new_id = new_id

    async def _audit(self, review: Review, event_type: str, actor: str, **details: Any) -> None:
        if self.audit is None:
            return
        risk = review.risk or {}
        await self.audit.append(
            [
                AuditEvent(
                    event_type,
                    action=event_type.split(".", 1)[1],
                    actor=actor,
                    resource=f"review:{review.id}",
                    decision=review.status,
                    org_id=review.org,
                    run_id=review.run_id,
                    policy_version=(review.policy or {}).get("policy_version"),
                    risk_score=risk.get("score"),
                    details={
                        "step_seq": review.step_seq,
                        "tool": review.proposed_action.get("tool"),
                        **details,
                    },
                )
            ]
        )

    def _notify(self, title: str, review: Review) -> None:
        self.webhook.send_later(
            title,
            {
                "review": review.id,
                "run": review.run_id,
                "org": review.org,
                "tool": review.proposed_action.get("tool"),
                "severity": review.severity,
                "tier": review.tier_name,
                "risk": (review.risk or {}).get("score"),
                "status": review.status,
            },
        )

    # -- creating ------------------------------------------------------------------------------
    async def create(
        self,
        run_id: str,
        step_seq: int,
        requester: str,
        proposed_action: Mapping[str, Any],
        risk: Any = None,
        policy: Any = None,
        severity: str | None = None,
        *,
        org: str = "",
    ) -> Review:
        """Open a review for the action at ``(run_id, step_seq)``; idempotent on that pair.

        ``proposed_action`` is ``{"tool": name, "args": {...}}`` (redacted), ``risk`` a
        :class:`RiskAssessment` (or its JSON), ``policy`` a :class:`Decision`. Low risk that no
        policy sent to review comes back ``auto_approved`` at once: do not wait for a signal then.
        """
        existing = await self.db.select("reviews", {"run_id": run_id, "step_seq": step_seq})
        if existing:
            return _from_row(existing[0])
        risk_j, policy_j = _as_json(risk), _as_json(policy)
        sev = severity or severity_for(risk_j)
        if sev not in SEVERITIES:
            raise InvalidInput(f"severity must be one of {SEVERITIES}")
        now = self.clock()
        low = (risk_j is None or risk_j.get("action") == "auto") and not (policy_j or {}).get(
            "review_required"
        )
        forced = severity is not None and severity != "low"
        auto = low and not forced
        sla = self.sla.get(sev)
        row: dict[str, Any] = {
            "id": self.new_id(),
            "run_id": run_id,
            "step_seq": step_seq,
            "org": org,
            "requester": requester,
            "proposed_action": canonical_json(dict(proposed_action)),
            "risk": canonical_json(risk_j) if risk_j is not None else None,
            "policy": canonical_json(policy_j) if policy_j is not None else None,
            "severity": sev,
            "tier": 0,
            "status": "auto_approved" if auto else OPEN,
            "created_at": now,
            "due_at": None if auto or sla is None else now + sla,
            "decided_at": now if auto else None,
            "reviewer": "system" if auto else None,
            "decision": "approve" if auto else None,
            "sampled": bool(auto and self.rng.random() < self.sample_rate),
            "approvals": "[]",
        }
        if self.db.dialect == "sqlite":
            row["sampled"] = int(row["sampled"])
        await self.db.insert("reviews", row, ignore_conflict=True)
        review = _from_row((await self.db.select("reviews", {"run_id": run_id, "step_seq": step_seq}))[0])
        await self._audit(
            review,
            "review.created",
            f"user:{requester}",
            severity=review.severity,
            auto_approved=auto,
            sampled=review.sampled,
        )
        if not auto:
            self._notify(f"Review needed ({review.severity})", review)
        return review

    # -- reading -------------------------------------------------------------------------------
    async def get(self, review_id: str) -> Review:
        rows = await self.db.select("reviews", {"id": review_id})
        if not rows:
            raise InvalidInput(f"no review with id {review_id!r}")
        return _from_row(rows[0])

    async def list(
        self,
        status: str | None = OPEN,
        *,
        org: str | None = None,
        sampled: bool | None = None,
        limit: int = 200,
    ) -> list[Review]:
        """Reviews by status (``None``: all), oldest first; ``sampled=True`` for post-hoc review."""
        where: dict[str, Any] = {}
        if status is not None:
            where["status"] = status
        if org is not None:
            where["org"] = org
        if sampled is not None:
            where["sampled"] = int(sampled) if self.db.dialect == "sqlite" else sampled
        return [
            _from_row(r)
            for r in await self.db.select("reviews", where, order_by="created_at, id", limit=limit)
        ]

    # -- deciding ------------------------------------------------------------------------------
    async def decide(
        self,
        review_id: str,
        reviewer: str,
        decision: str,
        args: dict[str, Any] | None = None,
        *,
        note: str = "",
    ) -> Review:
        """Record ``approve`` | ``reject`` | ``modify`` (with ``args``) | ``escalate``.

        Raises :class:`PolicyDenied` when the reviewer is the requester (or approves twice), and
        :class:`InvalidInput` for a decided review or invalid modified arguments.
        """
        if decision not in DECISIONS:
            raise InvalidInput(f"decision must be one of {DECISIONS}")
        review = await self.get(review_id)
        post_hoc = review.status == "auto_approved" and review.sampled and decision in ("approve", "reject")
        if review.status != OPEN and not post_hoc:
            raise InvalidInput(f"review {review_id} is already {review.status}")
        if reviewer == review.requester:
            raise PolicyDenied("the requester cannot decide their own review", details={"review": review_id})
        now = self.clock()
        if post_hoc:
            return await self._finish(
                review,
                {
                    "status": "approved" if decision == "approve" else "rejected",
                    "sampled": 0 if self.db.dialect == "sqlite" else False,
                },
                reviewer,
                decision,
                now,
                note,
                signal=False,
            )
        if decision == "escalate":
            return await self._escalate(review, reviewer, now, note)
        if decision == "reject":
            return await self._finish(review, {"status": "rejected"}, reviewer, decision, now, note)
        new_args: dict[str, Any] | None = None
        if decision == "modify":
            if args is None:
                raise InvalidInput("modify needs the new arguments")
            if self.validate_args is not None:
                try:
                    new_args = self.validate_args(review, dict(args))
                except (ValueError, TypeError, InvalidInput) as exc:
                    raise InvalidInput(f"modified arguments are invalid: {exc}") from exc
            else:
                new_args = dict(args)
        if reviewer in review.approvals:
            raise PolicyDenied("an emergency override needs two different approvers")
        approvals = (*review.approvals, reviewer)
        if len(approvals) < review.required_approvals:
            changed = await self.db.update(
                "reviews",
                {"id": review.id, "status": OPEN, "approvals": canonical_json(list(review.approvals))},
                {"approvals": canonical_json(list(approvals)), "note": note or None},
            )
            if not changed:
                raise InvalidInput(f"review {review_id} changed concurrently; try again")
            updated = await self.get(review.id)
            await self._audit(
                updated,
                "review.approval_recorded",
                f"user:{reviewer}",
                approvals=list(approvals),
                required=review.required_approvals,
            )
            return updated
        values: dict[str, Any] = {
            "status": "modified" if new_args is not None else "approved",
            "approvals": canonical_json(list(approvals)),
        }
        if new_args is not None:
            values["args"] = canonical_json(new_args)
        return await self._finish(review, values, reviewer, decision, now, note)

    async def _finish(
        self,
        review: Review,
        values: dict[str, Any],
        reviewer: str,
        decision: str,
        now: float,
        note: str,
        *,
        signal: bool = True,
    ) -> Review:
        values |= {"reviewer": reviewer, "decision": decision, "decided_at": now, "note": note or None}
        changed = await self.db.update("reviews", {"id": review.id, "status": review.status}, values)
        if not changed:
            raise InvalidInput(f"review {review.id} was decided concurrently")
        done = await self.get(review.id)
        await self._audit(
            done,
            "review.decided",
            f"user:{reviewer}",
            decision=decision,
            post_hoc=not signal,
            approvals=list(done.approvals),
            modified_args=done.args is not None,
        )
        self._notify(f"Review {done.status}", done)
        if signal and self.on_decision is not None:
            await self.on_decision(done)
        return done

    async def _escalate(self, review: Review, actor: str, now: float, note: str) -> Review:
        idx = SEVERITIES.index(review.severity)
        severity = SEVERITIES[min(idx + 1, len(SEVERITIES) - 1)]
        sla = self.sla.get(severity)
        changed = await self.db.update(
            "reviews",
            {"id": review.id, "status": OPEN, "tier": review.tier},
            {
                "tier": review.tier + 1,
                "severity": severity,
                "due_at": None if sla is None else now + sla,
                "note": note or review.note,
            },
        )
        if not changed:
            return await self.get(review.id)
        up = await self.get(review.id)
        await self._audit(
            up,
            "review.escalated",
            actor if actor == "system" else f"user:{actor}",
            tier=up.tier_name,
            severity=severity,
            sla_breached=actor == "system",
        )
        self._notify(f"Review escalated to {up.tier_name} ({severity})", up)
        return up

    async def escalate_overdue(self) -> builtins.list[Review]:
        """Escalate every pending review past its SLA (call periodically); returns them."""
        now = self.clock()
        overdue = [
            _from_row(r) for r in await self.db.select("reviews", {"status": OPEN, "due_at": ("<=", now)})
        ]
        return [await self._escalate(r, "system", now, "SLA breached") for r in overdue]

    @staticmethod
    def raise_if_rejected(review: Review) -> None:
        """Raise :class:`ReviewRejected` for a rejected review (helper for the engine)."""
        if review.status == "rejected":
            raise ReviewRejected(
                f"review {review.id} was rejected by {review.reviewer}",
                details={"review": review.id, "note": review.note},
            )

    async def flush(self) -> None:
        await self.webhook.flush()
