"""Deterministic trace and span ids, so a resumed run's spans join the same trace."""

from __future__ import annotations

import hashlib

__all__ = ["child_span_id", "root_span_id", "step_span_id", "trace_id_of"]

_HEX = frozenset("0123456789abcdef")


def _h64(text: str) -> str:
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"  # the all-zero id is invalid in W3C


def trace_id_of(run_id: str, stored: str | None) -> str:
    """The run's stored trace id when it is a valid W3C id, else one derived from the run id."""
    if stored and len(stored) == 32 and set(stored) <= _HEX and stored != "0" * 32:
        return stored
    return hashlib.blake2b(f"trace:{run_id}".encode(), digest_size=16).hexdigest()


def root_span_id(run_id: str) -> str:
    """The ``workflow.run`` span of a run: one per run, whatever worker ends it."""
    return _h64(f"run:{run_id}")


def step_span_id(run_id: str, seq: int, attempt: int) -> str:
    """The span of one attempt of one journaled step (same on every worker and after a crash)."""
    return _h64(f"step:{run_id}:{seq}:{attempt}")


def child_span_id(parent_span_id: str, name: str, n: int = 0) -> str:
    """The ``n``-th child named ``name`` of a span (guard scans, policy decisions)."""
    return _h64(f"child:{parent_span_id}:{name}:{n}")
