"""The JSON API: runs, reviews, kill switch, audit, compliance, keys, budgets, health."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from stalwart.api._auth import READ, Principal, requires
from stalwart.api._errors import ApiError
from stalwart.api._governance import ReviewError
from stalwart.api._ops import ApiContext, Ops, public_run, scrub
from stalwart.api._run_events import parse_last_event_id, sse_events
from stalwart.api._schemas import (
    AlertOut,
    AuditVerifyOut,
    BudgetIn,
    BudgetOut,
    DeadLetterOut,
    Decision,
    ErrorOut,
    KeyOut,
    KillSwitchIn,
    KillSwitchOut,
    NewKey,
    NewKeyOut,
    ReviewList,
    ReviewOut,
    RunList,
    RunOut,
    StartRun,
    TraceOut,
)

__all__ = ["router"]

_E: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 409, 422, 429)}
router = APIRouter(responses=_E)


def _run_id() -> Any:
    return Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")


def _item_id() -> Any:
    return Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")


def _ctx(request: Request) -> ApiContext:
    return request.app.state.stalwart  # type: ignore[no-any-return]


def ops(request: Request, p: Principal) -> Ops:
    return Ops(_ctx(request), p)


# -- runs ------------------------------------------------------------------------------------
@router.post(
    "/v1/runs",
    status_code=201,
    response_model=RunOut,
    tags=["runs"],
    responses={402: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def start_run(
    body: StartRun, request: Request, p: Principal = Depends(requires("operator", "admin"))
) -> Any:
    """Start a run of ``workflow`` in the caller's org."""
    return public_run(await ops(request, p).start(body))


@router.get("/v1/runs", response_model=RunList, tags=["runs"])
async def list_runs(
    request: Request,
    status: str | None = Query(
        None, pattern="^(PENDING|RUNNING|WAITING|COMPLETED|FAILED|CANCELLED|DEAD_LETTER)$"
    ),
    workflow: str | None = Query(None, min_length=1, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    p: Principal = Depends(requires(*READ)),
) -> Any:
    runs = await ops(request, p).runs(status, workflow, limit)
    return {"runs": [public_run(r) for r in runs]}


@router.get("/v1/runs/{run_id}", response_model=RunOut, tags=["runs"])
async def get_run(request: Request, run_id: str = _run_id(), p: Principal = Depends(requires(*READ))) -> Any:
    return public_run(await ops(request, p).run(run_id))


@router.get("/v1/runs/{run_id}/trace", response_model=TraceOut, tags=["runs"])
async def get_trace(
    request: Request, run_id: str = _run_id(), p: Principal = Depends(requires(*READ))
) -> Any:
    """The run's spans (as persisted, else rebuilt from its journal) and its ``explain`` summary."""
    return await ops(request, p).trace(run_id)


@router.get(
    "/v1/runs/{run_id}/events",
    tags=["runs"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def run_events(
    request: Request,
    run_id: str = _run_id(),
    after: int = Query(0, ge=0, le=10**18, description="Resume after this offset (Last-Event-ID wins)."),
    last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=40),
    p: Principal = Depends(requires(*READ)),
) -> Any:
    """The run's durable event stream as server-sent events (``id:`` is the offset); it ends with an
    ``end`` event once the run has ended. Reconnect with ``Last-Event-ID`` to resume."""
    await ops(request, p).run(run_id)  # another org's run reads as not found, before anything streams
    start = parse_last_event_id(last_event_id, after)
    return StreamingResponse(
        sse_events(_ctx(request).app, run_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/v1/runs/{run_id}/cancel", response_model=RunOut, tags=["runs"])
async def cancel_run(
    request: Request, run_id: str = _run_id(), p: Principal = Depends(requires("operator", "admin"))
) -> Any:
    """Request cancellation; it takes effect at the run's next step boundary."""
    return public_run(await ops(request, p).cancel(run_id))


@router.get("/v1/dlq", response_model=list[DeadLetterOut], tags=["runs"])
async def list_dead_letters(request: Request, p: Principal = Depends(requires(*READ))) -> Any:
    return [scrub(_slots(d)) for d in await ops(request, p).dead_letters()]


@router.post("/v1/dlq/{run_id}/retry", response_model=RunOut, tags=["runs"])
async def retry_dead_letter(
    request: Request, run_id: str = _run_id(), p: Principal = Depends(requires("operator", "admin"))
) -> Any:
    return public_run(await ops(request, p).retry_dead_letter(run_id))


def _slots(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(obj)


# -- reviews ---------------------------------------------------------------------------------
@router.get("/v1/reviews", response_model=ReviewList, tags=["reviews"])
async def list_reviews(
    request: Request,
    status: str | None = Query(None, pattern="^(pending|approved|modified|rejected|auto_approved)$"),
    p: Principal = Depends(requires(*READ)),
) -> Any:
    return {"reviews": await ops(request, p).reviews(status)}


@router.get("/v1/reviews/{review_id}", response_model=ReviewOut, tags=["reviews"])
async def get_review(
    request: Request, review_id: str = _item_id(), p: Principal = Depends(requires(*READ))
) -> Any:
    return await ops(request, p).review(review_id)


@router.post("/v1/reviews/{review_id}/decision", response_model=ReviewOut, tags=["reviews"])
async def decide_review(
    body: Decision,
    request: Request,
    review_id: str = _item_id(),
    p: Principal = Depends(requires("reviewer", "admin")),
) -> Any:
    """Approve, reject, modify (with ``args``) or escalate. Nobody may approve their own run."""
    return await ops(request, p).decide(review_id, body.decision, body.note, body.args)


# -- kill switch -----------------------------------------------------------------------------
@router.get("/admin/kill-switch", response_model=KillSwitchOut, tags=["admin"])
async def kill_switch_status(request: Request, p: Principal = Depends(requires(*READ))) -> Any:
    return await ops(request, p).kill_status()


@router.post("/admin/kill-switch", response_model=KillSwitchOut, tags=["admin"])
async def engage_kill_switch(
    body: KillSwitchIn, request: Request, p: Principal = Depends(requires("admin"))
) -> Any:
    """Stop new runs and new steps everywhere (in-flight steps finish)."""
    return await ops(request, p).kill_engage(body.reason)


@router.delete(
    "/admin/kill-switch",
    response_model=KillSwitchOut,
    tags=["admin"],
    responses={202: {"model": KillSwitchOut}},
)
async def release_kill_switch(request: Request, p: Principal = Depends(requires("admin"))) -> Any:
    """Two-person release: the first admin's call is recorded (202); a second, distinct admin releases (200)."""
    out = await ops(request, p).kill_release()
    return JSONResponse(KillSwitchOut(**out).model_dump(), status_code=200 if out.get("released") else 202)


# -- audit and compliance --------------------------------------------------------------------
@router.get("/v1/audit/verify", response_model=AuditVerifyOut, tags=["audit"])
async def verify_audit(request: Request, p: Principal = Depends(requires("auditor", "admin"))) -> Any:
    return await _ctx(request).gov.verify(p.org)


@router.get("/v1/audit/events", tags=["audit"], response_model=list[dict[str, Any]])
async def audit_events(
    request: Request,
    run_id: str | None = Query(None, min_length=1, max_length=100),
    limit: int = Query(200, ge=1, le=1000),
    p: Principal = Depends(requires("auditor", "admin")),
) -> Any:
    """The caller's org's audit entries (optionally of one run)."""
    return await _ctx(request).gov.audit_events(org=p.org, run_id=run_id, limit=limit)


@router.get("/v1/compliance/subjects/{subject_id}/export", tags=["compliance"], response_model=dict[str, Any])
async def export_subject(
    request: Request, subject_id: str = _item_id(), p: Principal = Depends(requires("auditor", "admin"))
) -> Any:
    """Everything held about a data subject in the caller's org (GDPR access)."""
    ctx = _ctx(request)
    try:
        return scrub(await ctx.gov.export_subject(subject_id, p.org, p.subject))
    except ReviewError as err:
        raise ApiError(err.status, err.code, err.message) from None


@router.delete("/v1/compliance/subjects/{subject_id}", tags=["compliance"], response_model=dict[str, Any])
async def erase_subject(
    request: Request, subject_id: str = _item_id(), p: Principal = Depends(requires("admin"))
) -> Any:
    """Erase a data subject's personal data in the caller's org (GDPR erasure)."""
    ctx = _ctx(request)
    try:
        return await ctx.gov.erase_subject(subject_id, p.org, p.subject)
    except ReviewError as err:
        raise ApiError(err.status, err.code, err.message) from None


# -- keys, budgets, alerts -------------------------------------------------------------------
_ORG_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


@router.post("/admin/keys", status_code=201, response_model=NewKeyOut, tags=["admin"])
async def create_key(body: NewKey, request: Request, p: Principal = Depends(requires("admin"))) -> Any:
    """Create an API key in ``org`` (default: the caller's). The response is the only time the key is shown.

    A platform admin (an admin of the platform org, e.g. the bootstrap key) may name any org; an org
    admin naming another org gets 403."""
    expires = time.time() + body.expires_in_s if body.expires_in_s else None
    token, rec = await ops(request, p).create_key(
        org=body.org,
        roles=list(body.roles),
        name=body.name,
        subject=body.subject,
        expires_at=expires,
    )
    return {**rec.public(), "key": token}


@router.get("/admin/keys", response_model=list[KeyOut], tags=["admin"])
async def list_keys(
    request: Request,
    org: str | None = Query(None, pattern=_ORG_RE, description="Only this org's keys (platform admins: any org)."),
    p: Principal = Depends(requires("admin")),
) -> Any:
    """Keys of the caller's org; a platform admin sees every org's (or ``org``'s) keys."""
    return [k.public() for k in await ops(request, p).keys(org)]


@router.delete("/admin/keys/{kid}", response_model=KeyOut, tags=["admin"])
async def revoke_key(
    request: Request,
    kid: str = Path(min_length=1, max_length=40, pattern="^[A-Za-z0-9]+$"),
    p: Principal = Depends(requires("admin")),
) -> Any:
    """Revoke a key (idempotent). A key of another org reads as not found, except to a platform admin."""
    return (await ops(request, p).revoke_key(kid)).public()


@router.get("/v1/budget", response_model=BudgetOut, tags=["budgets"])
async def get_budget(request: Request, p: Principal = Depends(requires(*READ))) -> Any:
    """The caller's org's monthly model budget and spend."""
    return await ops(request, p).budget()


@router.put("/admin/budget", response_model=BudgetOut, tags=["budgets"])
async def set_budget(body: BudgetIn, request: Request, p: Principal = Depends(requires("admin"))) -> Any:
    """Set the monthly model cap of the caller's org (a platform admin: of ``org``); omit both caps to clear it."""
    return await ops(request, p).set_budget(body.max_usd, body.max_tokens, body.org)


@router.get("/v1/alerts", response_model=list[AlertOut], tags=["alerts"])
async def alerts(request: Request, p: Principal = Depends(requires(*READ))) -> Any:
    return await ops(request, p).alerts()


# -- health ----------------------------------------------------------------------------------
@router.get("/healthz", tags=["health"], response_model=dict[str, str])
async def healthz() -> Any:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz", tags=["health"], response_model=dict[str, Any], responses={503: {"model": dict[str, Any]}}
)
async def readyz(request: Request) -> Any:
    """Readiness: the database answers, its migrations are current, and the sandbox is available."""
    ctx = _ctx(request)
    checks: dict[str, Any] = {}
    store = ctx.app.store
    try:
        await asyncio.wait_for(asyncio.to_thread(store.ping_sync), 5)
        checks["database"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - readiness reports, it never raises
        checks["database"] = {"ok": False, "detail": type(exc).__name__}
    try:
        pending = await store.pending_migrations()
        checks["migrations"] = {"ok": not pending, "pending": pending}
    except Exception as exc:  # noqa: BLE001
        checks["migrations"] = {"ok": False, "detail": type(exc).__name__}
    checks["sandbox"] = await asyncio.to_thread(_sandbox_check, ctx.app)
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
    )


def _sandbox_check(app: Any) -> dict[str, Any]:
    from stalwart.sandbox import doctor

    try:
        checks = doctor(app.settings.sandbox)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "detail": type(exc).__name__}
    required = [c for c in checks if not c.name.startswith("cgroup") and "optional" not in c.name]
    failed = [f"{c.name}: {c.fix or c.detail}" for c in required if not c.ok]
    return {"ok": not failed, "failed": failed}


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"}},
)
async def metrics(request: Request) -> Response:
    from prometheus_client import generate_latest

    from stalwart.telemetry import metrics_exposition

    body, content_type = metrics_exposition()
    body += generate_latest(request.app.state.registry)
    return Response(body, media_type=content_type)



@router.post("/v1/triggers/{name}", status_code=202, tags=["triggers"])
async def webhook_trigger(request: Request, name: str) -> Any:
    """Start a workflow from a signed webhook (HMAC ``Stalwart-Signature``; no API key).

    Deliveries outside the replay window, unsigned or badly signed are refused (401); a repeated
    delivery returns the same run; the kill switch refuses them (503)."""
    from stalwart.errors import CredentialError

    app = _ctx(request).app
    body = await request.body()
    try:
        run_id = await app.trigger_webhook(name, body, request.headers.get("stalwart-signature"),
                                           request.headers.get("stalwart-delivery"))
    except CredentialError as exc:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": {"code": exc.code, "message": str(exc)}}, status_code=401)
    return {"id": run_id}
