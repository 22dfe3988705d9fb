"""Bounded label values: a metric label never holds more than N distinct values per process."""

from __future__ import annotations

import threading

__all__ = ["OTHER", "LabelLimiter"]

OTHER = "other"


class LabelLimiter:
    """Maps label values to themselves until ``max_values`` distinct ones were seen, then to ``other``.

    Keeps cardinality bounded whatever callers pass (org names, error types, PII types): no run or
    user ids reach a label, and a burst of new values cannot blow up the time-series count.
    """

    def __init__(self, max_values: int = 200) -> None:
        self.max_values = max_values
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: object) -> str:
        text = str(value) if value not in (None, "") else "none"
        if len(text) > 64:
            text = text[:64]
        seen = self._seen.get(label)
        if seen is not None and text in seen:
            return text
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if text in seen:
                return text
            if len(seen) >= self.max_values:
                return OTHER
            seen.add(text)
            return text
