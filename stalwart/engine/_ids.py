"""Injected clock and id generation, so tests and replay are deterministic."""

from __future__ import annotations

import os
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "new_id", "new_trace_id"]


class Clock(Protocol):
    def time(self) -> float:
        """Unix seconds."""
        ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def new_id(now: float | None = None, rand: bytes | None = None) -> str:
    """A time-ordered id in UUIDv7 layout, as 32 hex characters."""
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    r = int.from_bytes(rand if rand is not None else os.urandom(10), "big") & ((1 << 74) - 1)
    value = (ms << 80) | (0x7 << 76) | ((r >> 62) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    return f"{value:032x}"


def new_trace_id() -> str:
    """A W3C trace id (16 random bytes, hex)."""
    return os.urandom(16).hex()
