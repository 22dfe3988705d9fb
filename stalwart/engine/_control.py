"""Control-flow signals. They derive from BaseException so ``except Exception`` in user code
cannot swallow a run being suspended, cancelled, drained or fenced out."""

from __future__ import annotations

__all__ = ["Suspend", "Cancelled", "Drain", "Fenced"]


class Suspend(BaseException):
    """The run now waits durably (timer, signal, review, retry backoff); its state is saved."""


class Cancelled(BaseException):
    """Cancellation was requested; it takes effect at this step boundary."""


class Drain(BaseException):
    """The worker is shutting down or the kill switch is engaged: release the run, start nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Fenced(BaseException):
    """Another worker owns the run now; this one must stop without writing."""
