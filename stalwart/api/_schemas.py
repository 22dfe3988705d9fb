"""Request and response bodies of the HTTP API (Pydantic v2, strict about what comes in)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AlertOut",
    "AuditVerifyOut",
    "BudgetIn",
    "BudgetOut",
    "DeadLetterOut",
    "Decision",
    "ErrorOut",
    "KeyOut",
    "KillSwitchIn",
    "KillSwitchOut",
    "NewKey",
    "NewKeyOut",
    "ReviewList",
    "ReviewOut",
    "RunList",
    "RunOut",
    "StartRun",
    "TraceOut",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every error response."""

    error: ErrorDetail


class StartRun(_In):
    workflow: str = Field(min_length=1, max_length=200, description="Workflow name registered in the app.")
    input: Any = Field(None, description="The workflow's input (validated against its signature).")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="A reused key returns the existing run and starts nothing.",
    )
    version: str | None = Field(
        None, min_length=1, max_length=50, description="Pin a version (default: latest)."
    )
    confirm_over_usd: float | None = Field(
        None, ge=0, le=1e6, description="Refuse (409) if the p95 cost estimate exceeds this."
    )


class RunOut(BaseModel):
    id: str
    workflow: str
    version: str
    status: Literal["PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "CANCELLED", "DEAD_LETTER"]
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    org: str
    user: str
    idempotency_key: str | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    trace_id: str
    generation: int
    partial: bool
    budget_exceeded: bool
    meta: dict[str, Any]


class RunList(BaseModel):
    runs: list[RunOut]


class TraceOut(BaseModel):
    run_id: str
    trace_id: str
    source: Literal["store", "journal"]
    spans: list[dict[str, Any]]
    explain: dict[str, Any] | None = None


class Decision(_In):
    decision: Literal["approve", "reject", "modify", "escalate"]
    note: str | None = Field(None, max_length=2000)
    args: dict[str, Any] | None = Field(None, description="Modified arguments (decision 'modify').")


class ReviewOut(BaseModel):
    """A review request (see ``stalwart.governance.Review``) with its risk factors spelled out."""

    id: str
    run_id: str
    step_seq: int
    org: str
    requester: str
    proposed_action: dict[str, Any]
    risk: dict[str, Any] | None = None
    risk_score: float | None = None
    risk_factors: list[dict[str, Any]] = []
    policy: dict[str, Any] | None = None
    severity: str
    tier: str
    status: str
    created_at: float
    due_at: float | None = None
    decided_at: float | None = None
    reviewer: str | None = None
    decision: str | None = None
    args: dict[str, Any] | None = None
    note: str | None = None
    sampled: bool = False
    approvals: list[str] = []
    required_approvals: int = 1


class ReviewList(BaseModel):
    reviews: list[ReviewOut]


class KillSwitchIn(_In):
    reason: str = Field(min_length=1, max_length=500)


class KillSwitchOut(BaseModel):
    engaged: bool
    released: bool | None = None
    detail: dict[str, Any] | None = None
    release_approvals: list[dict[str, Any]] = []
    needed: int | None = None


class AuditVerifyOut(BaseModel):
    ok: bool
    checked: int | None = None
    mode: str
    first_bad: dict[str, Any] | None = None


_ORG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class NewKey(_In):
    org: str | None = Field(
        None, pattern=_ORG, description="The key's org (default: the caller's; another org: platform admins only)."
    )
    name: str = Field("", max_length=100)
    roles: list[Literal["viewer", "operator", "reviewer", "admin", "auditor"]] = Field(
        min_length=1, max_length=5
    )
    subject: str | None = Field(None, min_length=1, max_length=200)
    expires_in_s: float | None = Field(None, gt=0, le=10 * 365 * 86400)


class KeyOut(BaseModel):
    kid: str
    org: str
    roles: list[str]
    name: str
    subject: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    created_by: str


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself. Shown once; only its hash is stored.")


class BudgetIn(_In):
    """An org's monthly model cap; caps are positive, and omitting both clears the cap."""

    max_usd: float | None = Field(None, gt=0, le=1e9, description="Monthly spend cap in USD (> 0).")
    max_tokens: int | None = Field(None, gt=0, le=10**13, description="Monthly token cap (> 0).")
    org: str | None = Field(
        None, pattern=_ORG, description="The org (default: the caller's; another org: platform admins only)."
    )


class BudgetOut(BaseModel):
    org: str
    month: str
    max_usd: float | None = None
    max_tokens: int | None = None
    spent_usd: float
    spent_tokens: float
    used_pct: float | None = None


class DeadLetterOut(BaseModel):
    run_id: str
    workflow: str
    version: str
    reason: str
    error: dict[str, Any] | None = None
    created_at: float
    retries: int


class AlertOut(BaseModel):
    name: str
    severity: str
    summary: str
    value: float | None = None
