"""Where a running tool finds its credential: inside a sandbox, the runner's context module;
in process, a context variable set around the call."""

from __future__ import annotations

import contextlib
import contextvars
import sys

TYPE_CHECKING = False  # not ``typing``: this module is imported inside sandboxes, where it costs
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

from stalwart.sandbox._runner import CTX_MODULE

__all__ = ["current_credential", "current_verifier", "use_credential"]

_current: contextvars.ContextVar[tuple[str | None, dict[str, Any] | None] | None] = contextvars.ContextVar(
    "stalwart_tool_credential", default=None
)


def _sandbox_context() -> tuple[str | None, dict[str, Any] | None] | None:
    ctx = sys.modules.get(CTX_MODULE)
    if ctx is None:
        return None
    return getattr(ctx, "credential", None), getattr(ctx, "verifier", None)


def current_credential() -> str | None:
    """The credential minted for the tool invocation running now, or ``None``."""
    found = _current.get() or _sandbox_context()
    return found[0] if found else None


def current_verifier() -> dict[str, Any] | None:
    """The verifier snapshot handed to the running invocation, or ``None``."""
    found = _current.get() or _sandbox_context()
    return found[1] if found else None


@contextlib.contextmanager
def use_credential(credential: str | None, verifier: dict[str, Any] | None) -> Iterator[None]:
    """Make ``credential`` current for the enclosed (in-process) tool call."""
    token = _current.set((credential, verifier))
    try:
        yield
    finally:
        _current.reset(token)
