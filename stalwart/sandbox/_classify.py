"""Turn what the host saw of a sandboxed process into an outcome's ``ok/result/error`` (pure)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from typing import Any

__all__ = ["CPU_BOUND_SHARE", "Observed", "classify", "tool_error"]

CPU_BOUND_SHARE = 0.8
"""A timed-out tool that wanted a CPU (ran or waited in the run queue) for at least this share of
its call's wall time was CPU-bound: it burned its budget, and retrying it blindly burns another."""


@dataclass(frozen=True)
class Observed:
    """Facts gathered by the host about one finished (or killed) sandbox."""

    returncode: int | None
    reply: bytes
    timed_out: bool = False
    output_exceeded: bool = False
    oom_killed: bool = False
    timeout_s: float = 0.0
    max_output_bytes: int = 0
    cpu_s: float | None = None
    """CPU time the tree used during the call (``None``: not measured)."""
    demand_s: float | None = None
    """CPU time plus run-queue wait during the call (``None``: not measured)."""
    elapsed_s: float | None = None
    """Wall time from the call's start to the kill."""


def tool_error(
    message: str,
    *,
    code: str = "tool_error",
    retryable: bool,
    kind: str = "ToolError",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An error dict shaped like ``StalwartError.to_dict``."""
    out: dict[str, Any] = {"type": kind, "code": code, "message": message, "retryable": retryable}
    if details:
        out["details"] = details
    return out


def _signal_of(rc: int | None) -> int | None:
    if rc is None:
        return None
    if rc < 0:
        return -rc
    if rc > 128:  # bwrap reports a child killed by signal N as exit status 128 + N
        return rc - 128
    return None


def classify(obs: Observed) -> tuple[bool, str | None, dict[str, Any] | None]:
    """Return ``(ok, result_json, error)``; the order of checks is the order of blame."""
    if obs.timed_out:
        return False, None, _timeout_error(obs)
    if obs.output_exceeded:
        return (
            False,
            None,
            tool_error(
                f"tool wrote more than {obs.max_output_bytes} bytes of output; killed",
                code="tool_output_exceeded",
                retryable=False,
                details={"limit": "output", "max_output_bytes": obs.max_output_bytes},
            ),
        )
    if obs.oom_killed:
        return (
            False,
            None,
            tool_error(
                "tool exceeded its memory limit; killed",
                code="tool_memory_exceeded",
                retryable=False,
                details={"limit": "memory"},
            ),
        )
    if obs.reply:
        try:
            reply = json.loads(obs.reply)
            if reply.get("ok") is True and isinstance(reply.get("result_json"), str):
                return True, reply["result_json"], None
            err = reply.get("error")
            if reply.get("ok") is False and isinstance(err, dict) and isinstance(err.get("message"), str):
                err.setdefault("type", "ToolError")
                err["retryable"] = bool(err.get("retryable", False))
                return False, None, err
        except (ValueError, AttributeError):
            pass
        return (
            False,
            None,
            tool_error("sandbox reply was malformed", code="tool_protocol_error", retryable=False),
        )
    sig = _signal_of(obs.returncode)
    if sig == signal.SIGXCPU:
        return (
            False,
            None,
            tool_error(
                "tool exceeded its CPU time limit; killed",
                code="tool_cpu_exceeded",
                retryable=False,
                details={"limit": "cpu_time"},
            ),
        )
    if sig == signal.SIGXFSZ:
        return (
            False,
            None,
            tool_error(
                "tool exceeded its file size limit; killed",
                code="tool_file_size_exceeded",
                retryable=False,
                details={"limit": "file_size"},
            ),
        )
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return (
            False,
            None,
            tool_error(
                f"tool process was killed by {name}",
                code="tool_crashed",
                retryable=sig != signal.SIGSYS,
                details={"signal": name},
            ),
        )
    return (
        False,
        None,
        tool_error(
            f"tool process exited with status {obs.returncode} without a reply",
            code="tool_crashed",
            retryable=True,
            details={"returncode": obs.returncode},
        ),
    )


def _timeout_error(obs: Observed) -> dict[str, Any]:
    """A wall-clock timeout; retryable unless the tool was CPU-bound for the whole call."""
    details: dict[str, Any] = {"limit": "timeout", "timeout_s": obs.timeout_s}
    cpu_bound = False
    if obs.cpu_s is not None:
        details["cpu_s"] = round(obs.cpu_s, 3)
    if obs.demand_s is not None and obs.elapsed_s:
        share = min(1.0, obs.demand_s / obs.elapsed_s)
        details["cpu_share"] = round(share, 3)
        cpu_bound = share >= CPU_BOUND_SHARE
    details["cpu_bound"] = cpu_bound
    if cpu_bound:
        message = (
            f"tool did not finish within {obs.timeout_s:g} s and was CPU-bound the whole time; "
            "its process tree was killed (not retried unless the tool sets retry_on_timeout=True)"
        )
    else:
        message = f"tool did not finish within {obs.timeout_s:g} s; its process tree was killed"
    return tool_error(message, kind="ToolTimeout", code="tool_timeout", retryable=not cpu_bound, details=details)
