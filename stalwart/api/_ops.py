"""What each endpoint does, for one principal, independent of HTTP (the console reuses it).

Org scoping lives here: a run, review, dead letter or subject of another org reads as not found,
so an id from another org reveals nothing, not even that it exists.

A platform admin (an ``admin`` of the platform org, :data:`stalwart.governance.PLATFORM_ORG`; the
bootstrap key is one) may look at another org, or at every org (:data:`ALL_ORGS`), by passing
``view``; everyone else always sees exactly their own org, whatever ``view`` says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from stalwart.api._auth import Principal
from stalwart.api._config import DEFAULT_ORG, ApiSettings
from stalwart.api._errors import ApiError
from stalwart.api._governance import Governance, ReviewError, run_org
from stalwart.errors import RunNotFound, StalwartError

__all__ = ["ALL_ORGS", "ApiContext", "Ops", "public_run", "scrub"]

ALL_ORGS = "*"
"""The ``view`` of a platform admin looking at every org at once."""

_PRIVATE_KEYS = frozenset({"traceback", "stack", "stacktrace"})


def scrub(value: Any) -> Any:
    """Drop stack traces (kept in the store for operators' logs) from anything leaving over HTTP."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in _PRIVATE_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def public_run(info: Any) -> dict[str, Any]:
    d = info.to_dict()
    d["error"] = scrub(d["error"])
    d["meta"] = scrub(d["meta"])
    return d


@dataclass
class ApiContext:
    """Handles the routes need (connections and configuration; no request state)."""

    app: Any
    settings: ApiSettings
    keys: Any
    jwt: Any
    sessions: Any
    limiter: Any
    gov: Governance
    platform_org: str = DEFAULT_ORG


def _review_error(err: ReviewError) -> ApiError:
    return ApiError(err.status, err.code, err.message)


def is_platform_admin(ctx: ApiContext, p: Principal) -> bool:
    """An admin of the platform org: administers every org's keys, budgets and the kill switch."""
    return p.has("admin") and p.org == ctx.platform_org


class Ops:
    """The endpoints' logic for principal ``p``, looking at org ``view`` (platform admins only)."""

    def __init__(self, ctx: ApiContext, p: Principal, view: str | None = None) -> None:
        self.ctx = ctx
        self.app = ctx.app
        self.p = p
        self.platform = is_platform_admin(ctx, p)
        self.view = (view or p.org) if self.platform else p.org

    def sees(self, org: str | None) -> bool:
        """Whether a resource of ``org`` is visible in this view."""
        return self.view == ALL_ORGS or run_org(org) == self.view

    def org_for(self, org: str | None) -> str:
        """The org an org-level action (keys, budget) targets: ``org`` if given and allowed, else the caller's.

        An org admin naming another org is refused (403): the org's name is the caller's own input,
        so refusing it reveals nothing; a resource id of another org reads as not found instead."""
        if org is None or org == self.p.org:
            return self.p.org
        if not self.platform:
            raise ApiError(
                403, "forbidden", "an org admin manages only its own org; only a platform admin may name another org"
            )
        from stalwart.governance import check_org

        try:
            return check_org(org)
        except StalwartError as exc:
            raise ApiError(422, "invalid_org", exc.message) from None

    async def orgs(self) -> list[str]:
        """Every org known to the platform (it has runs or keys), for a platform admin's selector."""
        if not self.platform:
            return [self.p.org]
        found = {run_org(o) for o in await (await self.app.connect()).run_orgs()}
        found.update(await self.ctx.keys.orgs())
        return sorted(found)

    # -- runs ------------------------------------------------------------------------------
    async def run(self, run_id: str) -> Any:
        try:
            info = await self.app.get_run(run_id)
        except RunNotFound:
            info = None
        if info is None or not self.sees(info.org):
            raise RunNotFound(f"no run with id {run_id!r}")
        return info

    async def start(self, body: Any) -> Any:
        run_id = await self.app.start(
            body.workflow,
            body.input,
            idempotency_key=body.idempotency_key,
            org=self.p.org,
            user=self.p.subject,
            version=body.version,
            confirm_over_usd=body.confirm_over_usd,
        )
        return await self.app.get_run(run_id)

    async def runs(
        self, status: str | None = None, workflow: str | None = None, limit: int = 100
    ) -> list[Any]:
        if self.view == ALL_ORGS:
            return await self.app.list_runs(status=status, workflow=workflow, limit=limit)
        runs = await self.app.list_runs(status=status, workflow=workflow, org=self.view, limit=limit)
        if self.view == DEFAULT_ORG:
            runs += await self.app.list_runs(status=status, workflow=workflow, org="", limit=limit)
            runs.sort(key=lambda r: r.created_at, reverse=True)
        return runs[:limit]

    async def cancel(self, run_id: str) -> Any:
        run = await self.run(run_id)
        info = await self.app.cancel(run_id)
        await self.ctx.gov.audit(
            "run.cancel",
            actor=self.p.actor,
            org=run_org(run.org),
            action="cancel",
            resource=f"run:{run_id}",
            run_id=run_id,
            user_id=self.p.subject,
        )
        return info

    async def trace(self, run_id: str) -> dict[str, Any]:
        info = await self.run(run_id)
        journal = await self.app.journal(run_id)
        from stalwart.telemetry import explain, load_spans, trace_from_journal

        spans = await load_spans(self.app.store, run_id)
        source = "store"
        if not spans:
            spans = trace_from_journal(info, journal)
            source = "journal"
        try:
            why = explain(info, journal).to_dict()
        except Exception:  # noqa: BLE001 - explain is advisory; a trace without it is still a trace
            why = None
        return scrub(
            {
                "run_id": run_id,
                "trace_id": info.trace_id,
                "source": source,
                "spans": [s.to_dict() for s in spans],
                "explain": why,
            }
        )

    async def dead_letters(self) -> list[Any]:
        out = []
        for d in await self.app.dead_letters(limit=1000):
            try:
                await self.run(d.run_id)
            except RunNotFound:
                continue
            out.append(d)
        return out

    async def retry_dead_letter(self, run_id: str) -> Any:
        run = await self.run(run_id)
        info = await self.app.retry_dead_letter(run_id)
        await self.ctx.gov.audit(
            "dlq.retry",
            actor=self.p.actor,
            org=run_org(run.org),
            action="retry",
            resource=f"run:{run_id}",
            run_id=run_id,
            user_id=self.p.subject,
        )
        return info

    # -- reviews ---------------------------------------------------------------------------
    async def review(self, review_id: str) -> dict[str, Any]:
        r = await self.ctx.gov.get_review(review_id) if len(review_id) <= 200 else None
        if r is None or not self.sees(r["org"]):
            raise ApiError(404, "review_not_found", f"no review with id {review_id!r}")
        return r

    async def reviews(self, status: str | None = None) -> list[dict[str, Any]]:
        return await self.ctx.gov.list_reviews(None if self.view == ALL_ORGS else self.view, status)

    async def decide(
        self, review_id: str, decision: str, note: str | None, args: dict[str, Any] | None
    ) -> dict:
        r = await self.review(review_id)
        try:
            out = await self.ctx.gov.decide_review(
                r, decision=decision, reviewer=self.p.subject, note=note, args=args
            )
        except ReviewError as err:
            raise _review_error(err) from None
        return out

    # -- kill switch -----------------------------------------------------------------------
    def _platform_admin(self) -> None:
        if self.p.org != self.ctx.platform_org:
            raise ApiError(403, "forbidden", "the kill switch belongs to the platform org's admins")

    async def kill_status(self) -> dict[str, Any]:
        return await self.ctx.gov.kill_status()

    async def kill_engage(self, reason: str) -> dict[str, Any]:
        self._platform_admin()
        return await self.ctx.gov.kill_engage(reason, self.p.subject)

    async def kill_release(self) -> dict[str, Any]:
        self._platform_admin()
        try:
            return await self.ctx.gov.kill_release(self.p.subject)
        except ReviewError as err:
            raise _review_error(err) from None

    # -- budgets and alerts ----------------------------------------------------------------
    async def budget(self, org: str | None = None) -> dict[str, Any]:
        """The monthly model budget and spend of ``org`` (default: the viewed org, else the caller's)."""
        org = org or (self.view if self.view != ALL_ORGS else self.p.org)
        gw = await self.app.gateway()
        now = time.time()
        raw = await self.app.store.get_flag(f"gateway.cap.org.{org}") or {}
        tokens, usd = await gw.org_spend(org, now)
        cap_usd, cap_tokens = raw.get("max_usd"), raw.get("max_tokens")
        pct = [spent / cap * 100 for spent, cap in ((usd, cap_usd), (tokens, cap_tokens)) if cap]
        return {
            "org": org,
            "month": time.strftime("%Y-%m", time.gmtime(now)),
            "max_usd": cap_usd,
            "max_tokens": cap_tokens,
            "spent_usd": usd,
            "spent_tokens": tokens,
            "used_pct": round(max(pct), 2) if pct else None,
        }

    async def budgets(self) -> list[dict[str, Any]]:
        """The budget of every org in view (one for an org admin)."""
        orgs = await self.orgs() if self.view == ALL_ORGS else [self.view]
        return [await self.budget(o) for o in orgs]

    async def set_budget(
        self, max_usd: float | None, max_tokens: int | None, org: str | None = None
    ) -> dict[str, Any]:
        """Set (or, with neither cap, clear) an org's monthly cap; caps must be positive."""
        from stalwart.gateway import Budget

        org = self.org_for(org)
        if (max_usd is not None and max_usd <= 0) or (max_tokens is not None and max_tokens <= 0):
            raise ApiError(
                422, "invalid_budget", "max_usd and max_tokens must be positive (omit both to clear the cap)"
            )
        gw = await self.app.gateway()
        cap = (
            None if max_usd is None and max_tokens is None else Budget(max_tokens=max_tokens, max_usd=max_usd)
        )
        await gw.set_cap("org", org, cap)
        await self.ctx.gov.audit(
            "budget.set",
            actor=self.p.actor,
            org=org,
            action="set_cap",
            resource=f"budget:{org}",
            user_id=self.p.subject,
            details={"max_usd": max_usd, "max_tokens": max_tokens},
        )
        return await self.budget(org)

    # -- keys ------------------------------------------------------------------------------
    async def create_key(
        self,
        *,
        org: str | None,
        roles: list[str],
        name: str = "",
        subject: str | None = None,
        expires_at: float | None = None,
    ) -> tuple[str, Any]:
        """A new key in ``org`` (an org admin: its own org only); recorded in the audit log."""
        target = self.org_for(org)
        try:
            return await self.ctx.keys.create(
                org=target,
                roles=roles,
                name=name,
                subject=subject,
                expires_at=expires_at,
                created_by=self.p.subject,
                actor=self.p.actor,
            )
        except StalwartError as exc:
            raise ApiError(422, "invalid_key", exc.message) from None

    async def keys(self, org: str | None = None) -> list[Any]:
        """Keys of ``org``; a platform admin without ``org`` sees every org's keys."""
        if org is None and self.platform:
            return await self.ctx.keys.list()
        return await self.ctx.keys.list(org=self.org_for(org))

    async def revoke_key(self, kid: str) -> Any:
        """Revoke ``kid``; a key of another org reads as not found unless the caller is a platform admin."""
        rec = await self.ctx.keys.get(kid)
        if rec is None or (rec.org != self.p.org and not self.platform):
            raise ApiError(404, "key_not_found", f"no key {kid!r}")
        return await self.ctx.keys.revoke(kid, actor=self.p.actor, user_id=self.p.subject)

    async def alerts(self) -> list[dict[str, Any]]:
        """Conditions that need a person now, computed from the store (no in-memory monitor)."""
        out: list[dict[str, Any]] = []
        ks = await self.kill_status()
        if ks["engaged"]:
            out.append(
                {
                    "name": "KillSwitchEngaged",
                    "severity": "critical",
                    "summary": f"kill switch engaged: {(ks['detail'] or {}).get('reason', '')}",
                }
            )
        dl = await self.dead_letters()
        if dl:
            out.append(
                {
                    "name": "DeadLetters",
                    "severity": "warning",
                    "value": float(len(dl)),
                    "summary": f"{len(dl)} run(s) in the dead-letter queue",
                }
            )
        now = time.time()
        late = [r for r in await self.reviews("pending") if r.get("due_at") and r["due_at"] < now]
        if late:
            out.append(
                {
                    "name": "ReviewSLABreached",
                    "severity": "warning",
                    "value": float(len(late)),
                    "summary": f"{len(late)} review(s) past their SLA",
                }
            )
        b = await self.budget()
        if b["used_pct"] is not None and b["used_pct"] >= 80:
            sev = "critical" if b["used_pct"] >= 95 else "warning"
            out.append(
                {
                    "name": "OrgBudget",
                    "severity": sev,
                    "value": b["used_pct"],
                    "summary": f"org {b['org']} has used {b['used_pct']:.0f}% of its monthly budget",
                }
            )
        return out
