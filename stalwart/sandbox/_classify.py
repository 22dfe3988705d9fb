"""Turn what the host saw of a sandboxed process into an outcome's ``ok/result/error`` (pure)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from typing import Any

__all__ = ["Observed", "classify", "tool_error"]


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
        return (
            False,
            None,
            tool_error(
                f"tool did not finish within {obs.timeout_s:g} s; its process tree was killed",
                kind="ToolTimeout",
                code="tool_timeout",
                retryable=True,
            ),
        )
    if obs.output_exceeded:
        return (
            False,
            None,
            tool_error(
                f"tool wrote more than {obs.max_output_bytes} bytes of output; killed",
                code="tool_output_exceeded",
                retryable=False,
            ),
        )
    if obs.oom_killed:
        return (
            False,
            None,
            tool_error(
                "tool exceeded its memory limit; killed", code="tool_memory_exceeded", retryable=False
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
            tool_error("tool exceeded its CPU time limit; killed", code="tool_cpu_exceeded", retryable=False),
        )
    if sig == signal.SIGXFSZ:
        return (
            False,
            None,
            tool_error(
                "tool exceeded its file size limit; killed", code="tool_file_size_exceeded", retryable=False
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
