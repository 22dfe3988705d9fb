"""OIDC/JWT bearer verification: RS256 or ES256, against a JWKS URL or configured PEM keys.

Issuer, audience, expiry and not-before are checked with the configured clock-skew leeway. The
JWKS client caches keys by ``kid`` (a cache of public keys, refetched on an unknown ``kid``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
from jwt import PyJWKClient

from stalwart.api._config import ROLES, ApiSettings

__all__ = ["JwtVerifier", "looks_like_jwt"]

_ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class JwtVerifier:
    """Verifies bearer JWTs and turns their claims into ``(subject, org, roles)``."""

    def __init__(self, settings: ApiSettings) -> None:
        self.s = settings
        self.algorithms = [a for a in settings.jwt_algorithms if a in _ASYMMETRIC]
        self._keys = [_load_pem(p) for p in settings.jwt_public_keys]
        self._jwks = (
            PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300) if settings.jwks_url else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._keys or self._jwks) and bool(self.algorithms)

    async def verify(self, token: str) -> tuple[str, str, list[str]] | None:
        """Claims as ``(subject, org, roles)``, or ``None`` when the token is not acceptable."""
        if not self.enabled:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        if header.get("alg") not in self.algorithms:
            return None
        candidates: list[Any] = []
        if self._jwks is not None:
            try:
                jwk = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                candidates.append(jwk.key)
            except (jwt.PyJWTError, OSError):
                pass
        candidates.extend(self._keys)
        options: Any = {"require": ["exp", "sub"], "verify_aud": self.s.jwt_audience is not None}
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=self.algorithms,
                    audience=self.s.jwt_audience,
                    issuer=self.s.jwt_issuer,
                    leeway=self.s.jwt_leeway_s,
                    options=options,
                )
            except (jwt.PyJWTError, TypeError, ValueError):  # wrong key type for the alg: try the next
                continue
            return _principal_claims(claims, self.s)
        return None


def _load_pem(pem: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem.encode())


def _principal_claims(claims: dict[str, Any], s: ApiSettings) -> tuple[str, str, list[str]] | None:
    org = claims.get(s.jwt_org_claim)
    raw_roles = claims.get(s.jwt_roles_claim) or []
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    roles = [r for r in raw_roles if isinstance(r, str) and r in ROLES]
    if not isinstance(org, str) or not org or not roles:
        return None
    return str(claims["sub"]), org, roles
