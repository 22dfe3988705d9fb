"""The web console at ``/console``: server-rendered Jinja2, plain forms, no build step.

Sign-in exchanges an API key for a session cookie (``HttpOnly``, ``SameSite=Strict``) whose
record lives in the store; every form carries the session's CSRF token. Pages call the same
:class:`Ops` as the JSON API, so roles and org scoping are identical.

A platform admin (the bootstrap key, any admin of the platform org) sees every org: the header
holds an org selector (``?org=``), "all orgs" by default, so the runs of ``stalwart demo`` (org
``acme``) are there at the first sign-in. Everyone else sees their own org, whatever ``?org`` says.
"""

from __future__ import annotations

import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from stalwart.api._auth import SESSION_COOKIE, Principal
from stalwart.api._errors import ApiError, status_for
from stalwart.api._governance import run_org
from stalwart.api._ops import ALL_ORGS, ApiContext, Ops, is_platform_admin, public_run, scrub
from stalwart.errors import RunNotFound, StalwartError

__all__ = ["router", "static_app"]

_HERE = Path(__file__).parent / "console"
router = APIRouter(prefix="/console", include_in_schema=False)
_env = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC" if ts else "—"


def _fmt_dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _until(ts: float | None) -> str:
    if not ts:
        return "no SLA"
    left = ts - time.time()
    return f"{_fmt_dur(left)} left" if left >= 0 else f"overdue by {_fmt_dur(-left)}"


_env.filters.update(
    time=_fmt_time,
    dur=_fmt_dur,
    until=_until,
    pretty=lambda v: json.dumps(v, indent=2, sort_keys=True, default=str),
)


def static_app() -> StaticFiles:
    return StaticFiles(directory=_HERE / "static")


def _ctx(request: Request) -> ApiContext:
    return request.app.state.stalwart  # type: ignore[no-any-return]


async def _principal(request: Request) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    return await _ctx(request).sessions.principal(token) if token else None


def _view(request: Request) -> str:
    """The org a platform admin asked to look at (``?org=``); every org when absent or malformed."""
    from stalwart.governance import check_org

    wanted = request.query_params.get("org") or ALL_ORGS
    if wanted == ALL_ORGS:
        return ALL_ORGS
    try:
        return check_org(wanted)
    except StalwartError:
        return ALL_ORGS


async def _scope(request: Request, p: Principal) -> tuple[Ops, dict[str, Any]]:
    """The page's :class:`Ops` and what the header's org selector needs."""
    ctx = _ctx(request)
    if not is_platform_admin(ctx, p):
        return Ops(ctx, p), {"orgs": None, "view": p.org}
    ops = Ops(ctx, p, view=_view(request))
    return ops, {"orgs": await ops.orgs(), "view": ops.view}


def _render(request: Request, name: str, p: Principal | None, code: int = 200, **kw: Any) -> HTMLResponse:
    html = _env.get_template(name).render(
        request=request,
        p=p,
        flash=request.query_params.get("flash"),
        error=request.query_params.get("error"),
        nav=name.split(".")[0],
        all_orgs=ALL_ORGS,
        **kw,
    )
    return HTMLResponse(html, status_code=code)


def _to_login() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303)


def _back(path: str, *, flash: str | None = None, error: str | None = None) -> RedirectResponse:
    q = f"?flash={quote(flash)}" if flash else (f"?error={quote(error)}" if error else "")
    return RedirectResponse(path + q, status_code=303)


def _csrf_ok(p: Principal, token: str) -> bool:
    return bool(p.csrf) and hmac.compare_digest(p.csrf or "", token or "")


def _message(exc: ApiError | StalwartError) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    return exc.message if status_for(exc) < 500 or status_for(exc) == 503 else exc.code


# -- sign in / out ---------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return RedirectResponse(
        "/console/runs" if await _principal(request) else "/console/login", status_code=303
    )


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    return _render(request, "login.html", None)


@router.post("/login")
async def login(request: Request, api_key: str = Form("", max_length=512)) -> Response:
    ctx = _ctx(request)
    host = request.client.host if request.client else "unknown"
    decision = await ctx.limiter.check([(f"login:{host}", 30)])
    if not decision.allowed:
        return _render(request, "login.html", None, code=429, login_error="Too many attempts; wait a minute.")
    rec = await ctx.keys.verify(api_key.strip())
    if rec is None:
        return _render(request, "login.html", None, code=401, login_error="That key is not valid.")
    p = Principal(subject=rec.subject, org=rec.org, roles=frozenset(rec.roles), via="key", key_id=rec.kid)
    token = await ctx.sessions.create(p)
    resp = RedirectResponse(
        "/console/reviews" if p.has("reviewer") and not p.has("operator") else "/console/runs",
        status_code=303,
    )
    resp.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ctx.settings.session_ttl_s),
        httponly=True,
        samesite="strict",
        secure=ctx.settings.cookie_secure,
        path="/console",
    )
    return resp


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> Response:
    p = await _principal(request)
    token = request.cookies.get(SESSION_COOKIE)
    if p is not None and token and _csrf_ok(p, csrf):
        await _ctx(request).sessions.delete(token)
    resp = _to_login()
    resp.delete_cookie(SESSION_COOKIE, path="/console")
    return resp


# -- runs ------------------------------------------------------------------------------------
_STATUSES = ("PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "CANCELLED", "DEAD_LETTER")


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(request: Request, status: str = "", workflow: str = "") -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    st = status if status in _STATUSES else None
    ops, scope = await _scope(request, p)
    runs = await ops.runs(st, workflow[:200] or None, 200)
    workflows = sorted({w.name for w in _ctx(request).app.workflows()} | {r.workflow for r in runs})
    return _render(
        request,
        "runs.html",
        p,
        **scope,
        runs=[{**public_run(r), "org": run_org(r.org)} for r in runs],
        status=st or "",
        workflow=workflow,
        statuses=_STATUSES,
        workflows=workflows,
    )


def _waterfall(spans: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    if not spans:
        return [], 0.0
    t0 = min(s["start"] for s in spans)
    t1 = max(max(s["end"], s["start"]) for s in spans)
    total = max(t1 - t0, 1e-6)
    rows = []
    for s in spans:
        attrs = s.get("attributes") or {}
        rows.append(
            {
                "name": s["name"],
                "depth": 0 if s.get("parent_span_id") is None else 1,
                "left": round((s["start"] - t0) / total * 100, 3),
                "width": max(round((max(s["end"], s["start"]) - s["start"]) / total * 100, 3), 0.4),
                "dur": max(s["end"] - s["start"], 0.0),
                "ok": s.get("ok", True),
                "error": s.get("error"),
                "kind": attrs.get("step.kind")
                or ("run" if s.get("parent_span_id") is None else s.get("kind")),
                "tokens": (attrs.get("tokens.input") or 0) + (attrs.get("tokens.output") or 0),
                "cost": attrs.get("cost.usd") or 0.0,
            }
        )
    return rows, total


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    ops = Ops(_ctx(request), p, view=ALL_ORGS)
    try:
        info = await ops.run(run_id[:100])
    except RunNotFound:
        return _render(request, "notfound.html", p, code=404, what=f"run {run_id[:100]}")
    trace = await ops.trace(info.id)
    rows, total = _waterfall(trace["spans"])
    journal = [
        scrub(
            {
                "seq": e.seq,
                "kind": e.kind,
                "name": e.name,
                "status": e.status,
                "attempts": e.attempts,
                "started_at": e.started_at,
                "finished_at": e.finished_at,
                "error": e.error,
                "result": e.result_json[:400] if e.result_json else None,
            }
        )
        for e in await _ctx(request).app.journal(info.id)
    ]
    audit = None
    if p.has("auditor", "admin"):
        audit = await _ctx(request).gov.audit_events(org=run_org(info.org), run_id=info.id, limit=200)
    reviews = [r for r in await ops.reviews() if r["run_id"] == info.id]
    return _render(
        request,
        "run.html",
        p,
        run=public_run(info),
        waterfall=rows,
        total=total,
        explain=trace.get("explain"),
        journal=journal,
        audit=audit,
        reviews=reviews,
    )


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str, csrf: str = Form("")) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    path = f"/console/runs/{quote(run_id[:100])}"
    if not _csrf_ok(p, csrf) or not p.has("operator", "admin"):
        return _back(path, error="You may not cancel runs.")
    try:
        await Ops(_ctx(request), p, view=ALL_ORGS).cancel(run_id[:100])
    except (ApiError, StalwartError) as exc:
        return _back(path, error=_message(exc))
    return _back(path, flash="Cancellation requested; it takes effect at the next step.")


# -- reviews ---------------------------------------------------------------------------------
@router.get("/reviews", response_class=HTMLResponse)
async def reviews_page(request: Request, show: str = "open") -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    ops, scope = await _scope(request, p)
    reviews = await ops.reviews("pending" if show == "open" else None)
    runs = {}
    for r in reviews:
        try:
            runs[r["run_id"]] = public_run(await ops.run(r["run_id"]))
        except RunNotFound:
            pass
    return _render(
        request, "reviews.html", p, **scope, reviews=reviews, runs=runs, show=show, now=time.time()
    )


@router.post("/reviews/{review_id}/decision")
async def decide(
    request: Request,
    review_id: str,
    csrf: str = Form(""),
    decision: str = Form(""),
    note: str = Form("", max_length=2000),
    args: str = Form("", max_length=20_000),
) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    if not _csrf_ok(p, csrf) or not p.has("reviewer", "admin"):
        return _back("/console/reviews", error="You may not decide reviews.")
    parsed = None
    if decision == "modify":
        try:
            parsed = json.loads(args or "null")
        except ValueError:
            return _back("/console/reviews", error="Modified arguments must be a JSON object.")
        if not isinstance(parsed, dict):
            return _back("/console/reviews", error="Modified arguments must be a JSON object.")
    if decision not in ("approve", "reject", "modify", "escalate"):
        return _back("/console/reviews", error="Unknown decision.")
    try:
        r = await Ops(_ctx(request), p, view=ALL_ORGS).decide(review_id[:200], decision, note or None, parsed)
    except (ApiError, StalwartError) as exc:
        return _back("/console/reviews", error=_message(exc))
    return _back("/console/reviews", flash=f"Review {r['id'][:8]} is now {r['status']}.")


# -- dead letters, budget, alerts ------------------------------------------------------------
@router.get("/dlq", response_class=HTMLResponse)
async def dlq_page(request: Request) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    ops, scope = await _scope(request, p)
    orgs = {r.id: run_org(r.org) for r in await ops.runs("DEAD_LETTER", None, 1000)}
    items = [
        scrub(
            {
                "run_id": d.run_id,
                "org": orgs.get(d.run_id, ""),
                "workflow": d.workflow,
                "version": d.version,
                "reason": d.reason,
                "error": d.error,
                "created_at": d.created_at,
                "retries": d.retries,
            }
        )
        for d in await ops.dead_letters()
    ]
    return _render(request, "dlq.html", p, **scope, items=items)


@router.post("/dlq/{run_id}/retry")
async def dlq_retry(request: Request, run_id: str, csrf: str = Form("")) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    if not _csrf_ok(p, csrf) or not p.has("operator", "admin"):
        return _back("/console/dlq", error="You may not retry runs.")
    try:
        await Ops(_ctx(request), p, view=ALL_ORGS).retry_dead_letter(run_id[:100])
    except (ApiError, StalwartError) as exc:
        return _back("/console/dlq", error=_message(exc))
    return _back("/console/dlq", flash=f"Run {run_id[:12]} is queued again.")


@router.get("/budget", response_class=HTMLResponse)
async def budget_page(request: Request) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    ops, scope = await _scope(request, p)
    budgets = [{**b, "bars": _bars(b)} for b in await ops.budgets()]
    return _render(request, "budget.html", p, **scope, budgets=budgets)


def _bars(b: dict[str, Any]) -> list[dict[str, Any]]:
    bars = []
    for label, spent, cap, unit in (
        ("Spend (USD)", b["spent_usd"], b["max_usd"], "$"),
        ("Tokens", b["spent_tokens"], b["max_tokens"], ""),
    ):
        pct = (spent / cap * 100) if cap else None
        level = "ok" if pct is None or pct < 50 else "notice" if pct < 80 else "warn" if pct < 95 else "crit"
        bars.append(
            {
                "label": label,
                "spent": spent,
                "cap": cap,
                "pct": pct,
                "width": min(pct or 0, 100),
                "level": level,
                "unit": unit,
            }
        )
    return bars


@router.post("/budget")
async def set_budget(
    request: Request,
    csrf: str = Form(""),
    max_usd: str = Form(""),
    max_tokens: str = Form(""),
    org: str = Form("", max_length=64),
) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    if not _csrf_ok(p, csrf) or not p.has("admin"):
        return _back("/console/budget", error="Only admins set budgets.")
    try:
        usd = float(max_usd) if max_usd.strip() else None
        tokens = int(max_tokens) if max_tokens.strip() else None
        if (usd is not None and usd <= 0) or (tokens is not None and tokens <= 0):
            raise ValueError
    except ValueError:
        return _back("/console/budget", error="Caps must be positive numbers.")
    try:
        b = await Ops(_ctx(request), p).set_budget(usd, tokens, org or None)
    except (ApiError, StalwartError) as exc:
        return _back("/console/budget", error=_message(exc))
    return _back("/console/budget", flash=f"Budget of {b['org']} saved.")


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    from stalwart.telemetry import ALERT_RULES

    alerts = await Ops(_ctx(request), p).alerts()
    return _render(request, "alerts.html", p, alerts=alerts, rules=ALERT_RULES)


# -- kill switch -----------------------------------------------------------------------------
@router.get("/kill-switch", response_class=HTMLResponse)
async def kill_page(request: Request) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    ks = await Ops(_ctx(request), p).kill_status()
    can = p.has("admin") and p.org == _ctx(request).platform_org
    return _render(request, "kill.html", p, ks=ks, can=can)


@router.post("/kill-switch/engage")
async def kill_engage(
    request: Request, csrf: str = Form(""), reason: str = Form("", max_length=500)
) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    if not _csrf_ok(p, csrf) or not p.has("admin"):
        return _back("/console/kill-switch", error="Only admins operate the kill switch.")
    if not reason.strip():
        return _back("/console/kill-switch", error="Give a reason.")
    try:
        await Ops(_ctx(request), p).kill_engage(reason.strip())
    except (ApiError, StalwartError) as exc:
        return _back("/console/kill-switch", error=_message(exc))
    return _back("/console/kill-switch", flash="Kill switch ENGAGED. New runs and steps are stopped.")


@router.post("/kill-switch/release")
async def kill_release(request: Request, csrf: str = Form("")) -> Response:
    p = await _principal(request)
    if p is None:
        return _to_login()
    if not _csrf_ok(p, csrf) or not p.has("admin"):
        return _back("/console/kill-switch", error="Only admins operate the kill switch.")
    try:
        out = await Ops(_ctx(request), p).kill_release()
    except (ApiError, StalwartError) as exc:
        return _back("/console/kill-switch", error=_message(exc))
    if out.get("released"):
        return _back("/console/kill-switch", flash="Kill switch released by two admins.")
    return _back("/console/kill-switch", flash="Release recorded. A second, different admin must confirm.")
