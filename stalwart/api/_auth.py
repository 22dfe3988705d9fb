"""Who is calling: API keys, OIDC/JWT bearer tokens and console sessions; role checks; rate limits.

Every authenticated request is charged to its key's bucket and its org's bucket before the route
runs. Roles: ``viewer`` reads, ``operator`` starts/cancels runs and calls the model gateway,
``reviewer`` decides reviews, ``auditor`` reads the audit log and exports subjects, ``admin`` may
do everything within its org plus the kill switch and keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from stalwart.api._errors import ApiError
from stalwart.api._jwt import looks_like_jwt
from stalwart.api._ratelimit import retry_after_header

__all__ = ["READ", "SESSION_COOKIE", "Principal", "authenticate", "requires"]

SESSION_COOKIE = "stalwart_session"

READ = ("viewer", "operator", "reviewer", "admin", "auditor")
"""Roles that may read runs."""

_bearer = HTTPBearer(auto_error=False, description="An API key (sw_…) or an OIDC JWT.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (sw_…).")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    org: str
    roles: frozenset[str]
    via: str
    """``key``, ``jwt`` or ``session``."""
    key_id: str | None = None
    csrf: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def actor(self) -> str:
        return f"user:{self.subject}"


def _ctx(request: Request) -> Any:
    return request.app.state.stalwart


async def _from_token(ctx: Any, token: str) -> Principal | None:
    if looks_like_jwt(token):
        claims = await ctx.jwt.verify(token)
        if claims is None:
            return None
        subject, org, roles = claims
        return Principal(subject=subject, org=org, roles=frozenset(roles), via="jwt")
    rec = await ctx.keys.verify(token)
    if rec is None:
        return None
    return Principal(subject=rec.subject, org=rec.org, roles=frozenset(rec.roles), via="key", key_id=rec.kid)


async def principal_from_request(
    request: Request, bearer: str | None, api_key: str | None
) -> Principal | None:
    ctx = _ctx(request)
    token = bearer or api_key
    if token:
        return await _from_token(ctx, token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return await ctx.sessions.principal(cookie)
    return None


async def authenticate(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key),
) -> Principal:
    """The caller, authenticated and admitted by the rate limits (401 / 429 otherwise)."""
    p = await principal_from_request(request, bearer.credentials if bearer else None, api_key)
    if p is None:
        raise ApiError(
            401,
            "unauthenticated",
            "a valid API key or bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="stalwart"'},
        )
    ctx = _ctx(request)
    s = ctx.settings
    decision = await ctx.limiter.check(
        [
            (f"key:{p.key_id or p.subject}", s.key_rate_per_min),
            (f"org:{p.org}", s.org_rate_per_min),
        ]
    )
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit reached ({decision.scope.split(':')[0]}); retry later",
            headers={"Retry-After": retry_after_header(decision.retry_after_s)},
        )
    request.state.principal = p
    return p


def requires(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting callers that hold at least one of ``roles`` (403 otherwise)."""

    async def check(p: Principal = Depends(authenticate)) -> Principal:
        if not p.has(*roles):
            raise ApiError(403, "forbidden", f"this action needs one of the roles: {', '.join(roles)}")
        return p

    return check
