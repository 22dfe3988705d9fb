"""The one place where a provider SDK's or transport's exception becomes a ``ProviderError``.

``details["kind"]`` tells the gateway what happened: ``rate_limited``, ``server``, ``timeout``,
``connection``, ``stream_cut``, ``malformed``, ``context_overflow``, ``content_filter``, ``auth``,
``bad_request``. Secrets are scrubbed from every message before it leaves this module.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Any

from stalwart.errors import ProviderError

__all__ = ["error_body_message", "provider_error", "scrub", "status_error", "translate"]

_KEYLIKE = re.compile(r"(sk-|sk_|key-|Bearer\s+)[A-Za-z0-9_\-\.]{6,}")
_OVERFLOW = re.compile(r"context[_ ]length|maximum context|too many tokens|prompt is too long", re.IGNORECASE)


def scrub(text: str, secret: str | None) -> str:
    """Remove ``secret`` and anything shaped like an API key from ``text``."""
    if secret:
        text = text.replace(secret, "***")
    return _KEYLIKE.sub(lambda m: m.group(1) + "***", text)[:500]


def provider_error(
    where: str, kind: str, message: str, *, status: int | None = None, retry_after: float | None = None
) -> ProviderError:
    """A ``ProviderError`` whose retryability follows from its ``kind``."""
    retryable = kind in {"rate_limited", "server", "timeout", "connection", "stream_cut", "malformed"}
    return ProviderError(
        f"{where}: {message}",
        status=status,
        retryable=retryable,
        retry_after=retry_after,
        details={"kind": kind, "provider": where},
    )


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _body_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(exc, "message", "") or exc)


def status_error(where: str, status: int, message: str, headers: Any, secret: str | None) -> ProviderError:
    """The ``ProviderError`` for an HTTP error status with the provider's message."""
    msg = scrub(message, secret)
    if status == 429:
        return provider_error(
            where, "rate_limited", f"HTTP 429 {msg}", status=429, retry_after=_retry_after(headers)
        )
    if status in (401, 403):
        return provider_error(where, "auth", f"HTTP {status} {msg}", status=status)
    if status >= 500 or status in (408, 409, 425, 529):
        return provider_error(
            where, "server", f"HTTP {status} {msg}", status=status, retry_after=_retry_after(headers)
        )
    if _OVERFLOW.search(msg):
        return provider_error(where, "context_overflow", f"HTTP {status} {msg}", status=status)
    if "content_filter" in msg or "content management policy" in msg:
        return provider_error(where, "content_filter", f"HTTP {status} {msg}", status=status)
    return provider_error(where, "bad_request", f"HTTP {status} {msg}", status=status)


def error_body_message(text: str) -> str:
    """The human message inside an OpenAI- or Anthropic-shaped error body (or the raw text)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:300]
    err = doc.get("error", doc) if isinstance(doc, dict) else doc
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    return text[:300]


def translate(exc: BaseException, where: str, secret: str | None) -> ProviderError:
    """Map any exception raised while talking to a provider onto a ``ProviderError``."""
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        response = getattr(exc, "response", None)
        return status_error(where, status, _body_message(exc), getattr(response, "headers", None), secret)
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
    if "Timeout" in name or "Timeout" in cause:
        return provider_error(where, "timeout", f"timed out ({name})")
    if {name, cause} & {"RemoteProtocolError", "ReadError", "IncompleteRead"} or "incomplete" in str(
        exc
    ).lower():
        return provider_error(where, "stream_cut", f"connection closed mid-answer ({name})")
    if "Connection" in name or name in {"ConnectError", "ConnectTimeout", "OSError"}:
        return provider_error(where, "connection", f"cannot connect ({name})")
    if name in {"JSONDecodeError", "APIResponseValidationError", "ValidationError", "DecodingError"}:
        return provider_error(where, "malformed", f"malformed response ({name})")
    return provider_error(where, "malformed", f"unexpected {name}: {scrub(str(exc), secret)}")
