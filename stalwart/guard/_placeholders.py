"""Per-run placeholder numbering: the same value always gets the same ``{{TYPE_N}}``."""

from __future__ import annotations

import re

__all__ = ["PLACEHOLDER_RE", "PlaceholderMap"]

PLACEHOLDER_RE = re.compile(r"\{\{([A-Z][A-Z0-9_]*?)_(\d+)\}\}")


class PlaceholderMap:
    """Numbering state for one run. Pass the same map to successive ``redact`` calls of a run.

    Numbers count per type in the order values are first seen, so within one text they follow
    text order. The map holds raw values: keep it in memory or in the vault, never in a journal.
    """

    __slots__ = ("_by_placeholder", "_by_value", "_counters")

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counters: dict[str, int] = {}

    @classmethod
    def from_mapping(cls, mapping: dict[str, str]) -> PlaceholderMap:
        """Rebuild numbering from placeholder -> value pairs (e.g. read back from the vault)."""
        m = cls()
        for ph, value in mapping.items():
            hit = PLACEHOLDER_RE.fullmatch(ph)
            if hit is None:
                continue
            label, n = hit.group(1), int(hit.group(2))
            m._by_value[(label, value)] = ph
            m._by_placeholder[ph] = value
            m._counters[label] = max(m._counters.get(label, 0), n)
        return m

    def placeholder(self, label: str, value: str) -> str:
        key = (label, value)
        ph = self._by_value.get(key)
        if ph is None:
            n = self._counters.get(label, 0) + 1
            self._counters[label] = n
            ph = "{{" + f"{label}_{n}" + "}}"
            self._by_value[key] = ph
            self._by_placeholder[ph] = value
        return ph

    def value(self, placeholder: str) -> str | None:
        return self._by_placeholder.get(placeholder)

    def mapping(self) -> dict[str, str]:
        """Placeholder -> raw value for everything seen in this run."""
        return dict(self._by_placeholder)

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def __repr__(self) -> str:
        return f"PlaceholderMap({len(self)} values)"
