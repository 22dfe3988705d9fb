"""Signed webhook triggers: an external system starts a workflow with an HMAC-signed request.

The signature header is ``Stalwart-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">`` under the trigger's secret (read from an environment variable, never from
config). A timestamp outside the replay window is refused, and each delivery id (header
``Stalwart-Delivery``, else the signature itself) starts at most one run: replays are no-ops.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from stalwart.errors import ConfigError, CredentialError

__all__ = ["WebhookTrigger", "sign", "verify_signature"]


@dataclass(frozen=True)
class WebhookTrigger:
    name: str
    workflow: str
    secret_env: str
    org: str = ""
    replay_window_s: float = 300.0

    def secret(self) -> bytes:
        value = os.environ.get(self.secret_env)
        if not value:
            raise ConfigError(f"webhook trigger {self.name!r}: the secret variable {self.secret_env} is not set")
        return value.encode()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The header value a sender puts on a request (used by tests and by senders written in Python)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(header: str | None, secret: bytes, body: bytes, now: float, window_s: float) -> int:
    """Check the header; return its timestamp or raise :class:`CredentialError` (fail closed)."""
    if not header:
        raise CredentialError("missing Stalwart-Signature header", details={"reason": "unsigned"})
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise CredentialError("malformed Stalwart-Signature header", details={"reason": "malformed"}) from None
    if abs(now - ts) > window_s:
        raise CredentialError("signature timestamp outside the replay window", details={"reason": "stale"})
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        raise CredentialError("bad webhook signature", details={"reason": "signature"})
    return ts
