"""The output guard for a streamed answer: text is released only once it has been scanned.

Scanning every token would cost more than generating it, and scanning each chunk alone would
miss an injection split across chunks. So pending text is scanned in steps (at a line or
sentence end, else once ``step`` + ``holdback`` characters are pending) together with the tail
of what was already released (a sliding ``window``, so a phrase cut by a step is still seen
whole), and only scanned text leaves; mid-sentence, the last ``holdback`` characters wait for
the next scan, so the opening words of an injection are not sent before it can be recognised. A placeholder
split across chunks (``{{EMA`` … ``IL_1}}``) is held back until it is whole, then re-hydrated.
Pure: the scan and re-hydration functions are injected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["StreamGuard"]

_OPEN_PLACEHOLDER = re.compile(r"\{\{?[A-Z_0-9]{0,40}\}?$")
_BOUNDARY = re.compile(r"[\n.!?;:]\s*$")


@dataclass(slots=True)
class StreamGuard:
    """Feed it the stream's pieces; it answers the text that may leave, or raises nothing and
    reports a block through :attr:`blocked`."""

    scan: Callable[[str], Any]
    """``text -> Verdict`` (``.action`` in allow/flag/block)."""
    rehydrate: Callable[[str], str]
    window: int = 400
    step: int = 16
    holdback: int = 24
    """Scanned text that still waits for what follows it: the start of an injection is held
    until the phrase is complete enough to be judged (mid-sentence only)."""
    released: str = ""
    pending: str = ""
    blocked: Any = None
    """The blocking verdict, once one was seen (nothing more is released after it)."""
    scans: int = 0

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text that is now scanned and may be sent (maybe empty)."""
        if self.blocked is not None:
            return ""
        self.pending += piece
        if _BOUNDARY.search(self.pending):
            return self._release(final=False, keep=0)
        if len(self.pending) >= self.step + self.holdback:
            return self._release(final=False, keep=self.holdback)
        return ""

    def finish(self) -> str:
        """The stream ended: scan and release whatever is pending."""
        if self.blocked is not None or not self.pending:
            return ""
        return self._release(final=True)

    def _release(self, *, final: bool, keep: int = 0) -> str:
        self.scans += 1
        verdict = self.scan(self.released[-self.window :] + self.pending)
        if getattr(verdict, "action", "allow") == "block":
            self.blocked = verdict
            self.pending = ""
            return ""
        text = self.pending
        tail = text[len(text) - keep :] if keep else ""
        text = text[: len(text) - len(tail)]
        held = "" if final else _split_placeholder(text)
        text = text[: len(text) - len(held)]
        held += tail
        self.pending = held
        self.released += text
        return self.rehydrate(text)


def _split_placeholder(text: str) -> str:
    """The tail of ``text`` that may be the start of a placeholder (kept until it is whole)."""
    m = _OPEN_PLACEHOLDER.search(text)
    if m is None or not m.group(0).startswith("{"):
        return ""
    tail = m.group(0)
    return "" if tail.endswith("}}") else tail
