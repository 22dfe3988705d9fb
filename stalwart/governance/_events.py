"""Audit events and their canonical form.

An entry's body is canonical JSON (sorted keys, no spaces, ASCII only), so the bytes hashed in
Python and in PostgreSQL's ``convert_to(body, 'UTF8')`` are identical whatever the database
encoding. Secret-looking keys in ``details`` are replaced by a hash before anything is written:
the audit log holds redacted data and references, never credentials.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["AuditEvent", "canonical_json", "scrub_secrets"]

_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|credential|private[_-]?key)$", re.IGNORECASE
)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, compact separators, ASCII, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str
    )


def scrub_secrets(value: Any) -> Any:
    """Replace values under secret-looking keys by ``sha256:<prefix>`` (recursively)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if _SECRET_KEY.search(str(k)) and v is not None and not isinstance(v, bool | int | float):
                digest = hashlib.sha256(canonical_json(v).encode()).hexdigest()[:16]
                out[str(k)] = f"sha256:{digest}"
            else:
                out[str(k)] = scrub_secrets(v)
        return out
    if isinstance(value, list | tuple):
        return [scrub_secrets(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit-log entry, before it is chained.

    ``actor`` is ``"user:<id>"``, ``"agent:<workflow>@<version>"`` or ``"system"``. ``details``
    carries redacted payloads (prompts and tool arguments after the guard), latencies, token
    counts, credential ids: data and references, never raw PII or secrets. ``event_id`` and
    ``timestamp`` are filled from the audit log's injected id factory and clock when left empty;
    an ``event_id`` must be unique.
    """

    event_type: str
    action: str = ""
    actor: str = "system"
    resource: str = ""
    decision: str | None = None
    org_id: str = ""
    user_id: str = ""
    run_id: str | None = None
    trace_id: str | None = None
    workflow_version: str | None = None
    policy_version: str | None = None
    risk_score: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = ""
    timestamp: float | None = None

    def completed(self, event_id: str, timestamp: float) -> AuditEvent:
        """This event with its id and timestamp filled in where they were empty."""
        return replace(
            self,
            event_id=self.event_id or event_id,
            timestamp=self.timestamp if self.timestamp is not None else timestamp,
        )

    def body(self) -> str:
        """The canonical JSON that is stored and hashed."""
        # Field by field (not dataclasses.asdict, which deep-copies every nested value): this runs
        # once per step on the hot path.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["details"] = scrub_secrets(self.details)
        return canonical_json(data)

    @classmethod
    def from_body(cls, body: str) -> AuditEvent:
        """Rebuild an event from its stored body."""
        data = json.loads(body)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


_FIELDS = tuple(AuditEvent.__dataclass_fields__)
