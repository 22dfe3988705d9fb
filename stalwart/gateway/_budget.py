"""Per-run spending caps declared on a workflow version."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps for one run of a workflow version. ``None`` means no cap on that dimension."""

    max_tokens: int | None = None
    max_usd: float | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ValueError("Budget.max_tokens must be positive")
        if self.max_usd is not None and self.max_usd <= 0:
            raise ValueError("Budget.max_usd must be positive")
