"""Stalwart's one exception tree.

Every failure that crosses a public boundary is a :class:`StalwartError`. What to do next travels
on the error itself: ``retryable`` (may the engine try again?), ``retry_after`` (a server-given or
computed delay, in seconds) and ``code`` (a stable, machine-readable name).

::

    StalwartError
    ├── ConfigError                 the operator must fix a setting
    │   └── SandboxUnavailable      a required isolation feature is missing (fail closed)
    ├── StoreError                  the durable store
    │   ├── StoreUnavailable        cannot reach the database (retryable)
    │   └── LeaseLost               this worker no longer owns the run (fencing)
    ├── WorkflowError               about one run or its definition
    │   ├── UnknownWorkflow
    │   ├── InvalidInput
    │   ├── RunNotFound
    │   ├── NonDeterminismError     replay diverged from the journal
    │   ├── WorkflowFailed          app.result() of a run that did not complete
    │   ├── KillSwitchEngaged       new runs and steps are stopped
    │   └── NeedsConfirmation       a start would cost more than the caller confirmed
    ├── StepError                   a step body raised; wraps the original
    ├── ToolError                   a tool failed (retryable as its type says)
    │   ├── ToolTimeout
    │   ├── CircuitOpen
    │   └── StaleData
    ├── ProviderError               a model provider failed (status, retry_after)
    ├── OutputValidationError       a model's structured output did not validate
    ├── BudgetExceeded
    ├── PolicyDenied
    │   └── TaintedArgument         a guarded tool argument derives from untrusted content
    ├── InjectionBlocked
    ├── UnauthorizedToolCall
    ├── CredentialError
    └── ReviewRejected

Control-flow signals (a run suspending, being cancelled, the kill switch draining it) are
``BaseException`` subclasses private to the engine, so a user's ``except Exception`` cannot
swallow them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "StalwartError",
    "ConfigError",
    "SandboxUnavailable",
    "StoreError",
    "StoreUnavailable",
    "LeaseLost",
    "WorkflowError",
    "UnknownWorkflow",
    "InvalidInput",
    "RunNotFound",
    "NonDeterminismError",
    "WorkflowFailed",
    "KillSwitchEngaged",
    "NeedsConfirmation",
    "StepError",
    "ToolError",
    "ToolTimeout",
    "CircuitOpen",
    "StaleData",
    "ProviderError",
    "OutputValidationError",
    "BudgetExceeded",
    "PolicyDenied",
    "TaintedArgument",
    "InjectionBlocked",
    "UnauthorizedToolCall",
    "ToolQuarantined",
    "CredentialError",
    "ReviewRejected",
    "InvalidTransition",
    "error_from_dict",
]


class StalwartError(Exception):
    """Root of every Stalwart error.

    ``retryable`` and ``retry_after`` are class defaults that an instance may override.
    """

    code: str = "stalwart_error"
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, as stored in the journal and the dead-letter queue."""
        out: dict[str, Any] = {
            "type": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return self.message or self.code


class ConfigError(StalwartError):
    """A setting is missing or wrong. The message names the setting."""

    code = "config_error"


class SandboxUnavailable(ConfigError):
    """Isolation cannot be provided on this host; the tool refuses to run."""

    code = "sandbox_unavailable"


class StoreError(StalwartError):
    code = "store_error"


class StoreUnavailable(StoreError):
    """The database could not be reached (after retries). The URL is shown without its password."""

    code = "store_unavailable"
    retryable = True


class LeaseLost(StoreError):
    """A write was refused because another worker now holds the run (a higher fencing epoch)."""

    code = "lease_lost"


class WorkflowError(StalwartError):
    code = "workflow_error"


class UnknownWorkflow(WorkflowError):
    code = "unknown_workflow"


class InvalidInput(WorkflowError):
    code = "invalid_input"


class RunNotFound(WorkflowError):
    code = "run_not_found"


class NonDeterminismError(WorkflowError):
    """The workflow asked for a different step than the journal holds at that position."""

    code = "non_determinism"


class WorkflowFailed(WorkflowError):
    """Raised by ``app.result`` when the run ended FAILED, CANCELLED or DEAD_LETTER."""

    code = "workflow_failed"

    def __init__(self, message: str, *, run_id: str, status: str, error: dict[str, Any] | None = None):
        super().__init__(message, details={"run_id": run_id, "status": status, "error": error})
        self.run_id = run_id
        self.status = status
        self.error = error


class KillSwitchEngaged(WorkflowError):
    code = "kill_switch_engaged"
    retryable = True


class NeedsConfirmation(WorkflowError):
    code = "needs_confirmation"


class StepError(StalwartError):
    """A step body raised something that is not a StalwartError; the original is kept."""

    code = "step_error"
    retryable = True


class ToolError(StalwartError):
    code = "tool_error"
    retryable = True


class ToolTimeout(ToolError):
    code = "tool_timeout"
    retryable = True


class CircuitOpen(ToolError):
    code = "circuit_open"
    retryable = True


class StaleData(ToolError):
    code = "stale_data"
    retryable = True


class ProviderError(StalwartError):
    """A model provider failed. ``status`` is the HTTP status when there was one."""

    code = "provider_error"
    retryable = True

    def __init__(self, message: str = "", *, status: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.status is not None:
            out["status"] = self.status
        return out


class OutputValidationError(StalwartError):
    code = "output_validation_error"


class BudgetExceeded(StalwartError):
    code = "budget_exceeded"


class PolicyDenied(StalwartError):
    code = "policy_denied"


class TaintedArgument(PolicyDenied):
    """A mutating tool was called with a guarded argument (a recipient, URL, account, file id,
    amount) whose value derives from untrusted content (a tool, MCP or model output, recalled
    memory) and does not appear in the run's trusted input. Never retried: the same journal
    decides the same way. ``details`` name the arguments and the step each value came from."""

    code = "tainted_argument"


class InjectionBlocked(StalwartError):
    code = "injection_blocked"


class UnauthorizedToolCall(StalwartError):
    code = "unauthorized_tool_call"


class ToolQuarantined(PolicyDenied):
    """An MCP tool whose definition is new or differs from its approved pin: not callable until an
    operator approves it again (``stalwart mcp approve SERVER TOOL``)."""

    code = "tool_quarantined"


class CredentialError(StalwartError):
    code = "credential_error"


class ReviewRejected(StalwartError):
    code = "review_rejected"


class InvalidTransition(StalwartError):
    """An illegal run-state transition was attempted. This is a bug in Stalwart, never user error."""

    code = "invalid_transition"


def _all_error_types() -> dict[str, type[StalwartError]]:
    found: dict[str, type[StalwartError]] = {}
    stack: list[type[StalwartError]] = [StalwartError]
    while stack:
        cls = stack.pop()
        found[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return found


def error_from_dict(data: dict[str, Any]) -> StalwartError:
    """Rebuild an error from :meth:`StalwartError.to_dict` (used when replaying a failed step)."""
    cls = _all_error_types().get(str(data.get("type")), StepError)
    if cls is WorkflowFailed:
        cls = StepError
    err = cls.__new__(cls)
    StalwartError.__init__(
        err,
        str(data.get("message", "")),
        retryable=bool(data.get("retryable", False)),
        retry_after=data.get("retry_after"),
        details=data.get("details"),
    )
    if isinstance(err, ProviderError):
        err.status = data.get("status")
    return err
