"""The values that cross the sandbox boundary: what to run, with which limits, and what came back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Sandbox", "SandboxLimits", "ToolInvocation", "ToolOutcome"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource bounds for one tool invocation.

    ``memory_mb`` is the address-space rlimit and, with ``tmpfs_mb``, the memory cgroup limit.
    ``max_procs`` is the pids cgroup limit of the one sandbox; ``uid_nproc`` is ``RLIMIT_NPROC``,
    a backstop shared by every sandbox running under the same uid.
    """

    memory_mb: int = 512
    cpu_s: int = 30
    max_procs: int = 64
    uid_nproc: int = 1024
    file_mb: int = 16
    open_files: int = 128
    tmpfs_mb: int = 64
    max_output_bytes: int = 1_000_000


@dataclass
class ToolInvocation:
    """One call of one tool. ``credential`` travels over stdin, never in argv or the environment."""

    tool_name: str
    module: str
    qualname: str
    code_root: str
    kwargs_json: str
    timeout_s: float = 30.0
    egress: list[str] = field(default_factory=list)
    credential: str | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    verifier: dict[str, Any] | None = None
    """Snapshot that lets ``verify_credential`` work inside the sandbox (see ``CredentialBroker.snapshot``)."""


@dataclass
class ToolOutcome:
    """What a tool invocation produced. ``result_json`` is untrusted: scan it before a model sees it."""

    ok: bool
    result_json: str | None
    error: dict[str, Any] | None
    duration_ms: float
    egress_log: list[dict[str, Any]] = field(default_factory=list)
    stderr_tail: str = ""
    pooled: bool = False
    """Served by a sandbox from the warm pool (started before the call, used once)."""


@runtime_checkable
class Sandbox(Protocol):
    """Runs one tool invocation in isolation and never raises for a tool's own failure."""

    async def run(self, inv: ToolInvocation) -> ToolOutcome: ...
