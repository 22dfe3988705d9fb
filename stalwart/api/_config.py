"""Settings of the HTTP layer: authentication, limits, CORS, sessions.

Resolved from ``STALWART_API_*`` environment variables over the defaults below (the lead may
later nest them as ``[api]`` in ``stalwart.toml``). Nothing is read at import time.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stalwart.governance import PLATFORM_ORG, ROLES

__all__ = ["DEFAULT_ORG", "ROLES", "ApiSettings"]

DEFAULT_ORG = PLATFORM_ORG
"""The org of runs started without one (the CLI, the demo) and of the bootstrap admin key."""


class ApiSettings(BaseSettings):
    """Everything ``stalwart.api`` can be configured with."""

    model_config = SettingsConfigDict(env_prefix="STALWART_API_", extra="forbid")

    # -- authentication --------------------------------------------------------------------
    jwt_issuer: str | None = None
    """Expected ``iss`` of bearer JWTs; JWT authentication is off while neither keys nor a JWKS URL is set."""
    jwt_audience: str | None = None
    """Expected ``aud`` of bearer JWTs."""
    jwks_url: str | None = None
    """OIDC JWKS endpoint the signing keys are fetched from (cached by key id)."""
    jwt_public_keys: list[str] = Field(default_factory=list)
    """PEM public keys accepted instead of (or besides) a JWKS URL."""
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    """Accepted signature algorithms; ``none`` and HMAC are never accepted."""
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=600)
    """Clock skew tolerated on ``exp``/``nbf``/``iat``."""
    jwt_org_claim: str = "org"
    """Claim holding the caller's org."""
    jwt_roles_claim: str = "roles"
    """Claim holding the caller's roles (a list, or a space-separated string)."""
    admin_key_env: str | None = None
    """Environment variable whose value becomes an admin key at first start (default: ``server.admin_key_env``)."""
    print_bootstrap_key: bool = True
    """Print a generated admin key once at first start (to stderr)."""

    # -- sessions (console) ----------------------------------------------------------------
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)
    """Console session lifetime."""
    cookie_secure: bool = False
    """Mark the session cookie ``Secure`` (set behind TLS)."""

    # -- protection at the edge ------------------------------------------------------------
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest request body accepted (413 above it)."""
    key_rate_per_min: int = Field(default=60_000, ge=1)
    """Requests per minute per API key / token subject."""
    org_rate_per_min: int = Field(default=120_000, ge=1)
    """Requests per minute per org, all keys together."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS; empty (the default) turns CORS off."""
    redis_url: str | None = None
    """Redis for the rate-limit buckets (default: the top-level ``redis_url``; else the store)."""
