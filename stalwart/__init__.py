"""Stalwart: a production-grade runtime for AI agents.

Write the agent as an ordinary ``async def`` workflow; Stalwart runs it durably, behind a model
gateway, a tool sandbox, a guard and governance. See ``App`` to begin.

Names are imported on first use, so that a sandboxed tool importing ``stalwart.errors`` or
``stalwart.sandbox`` does not pay for the engine, the gateway and the guard.
"""

from __future__ import annotations

import importlib

# Not ``from typing import ...``: ``typing`` costs ~15 ms to import, and a sandboxed tool module
# that does ``import stalwart`` must not pay for it (annotations here are strings).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, tuple[str, str | None]] = {
    "App": ("stalwart.engine", "App"),
    "Context": ("stalwart.engine", "Context"),
    "AgentResult": ("stalwart.engine", "AgentResult"),
    "AgentToolCall": ("stalwart.engine", "AgentToolCall"),
    "RetryPolicy": ("stalwart.engine", "RetryPolicy"),
    "RunInfo": ("stalwart.engine", "RunInfo"),
    "RunStatus": ("stalwart.engine", "RunStatus"),
    "Worker": ("stalwart.engine", "Worker"),
    "Budget": ("stalwart.gateway", "Budget"),
    "Settings": ("stalwart.settings", "Settings"),
    "load_settings": ("stalwart.settings", "load_settings"),
    "verify_credential": ("stalwart.sandbox", "verify_credential"),
    "guard": ("stalwart.guard", None),
    "engine": ("stalwart.engine", None),
    "gateway": ("stalwart.gateway", None),
    "sandbox": ("stalwart.sandbox", None),
    "store": ("stalwart.store", None),
    "governance": ("stalwart.governance", None),
    "telemetry": ("stalwart.telemetry", None),
}
_ERRORS = (
    "StalwartError", "ConfigError", "InvalidInput", "UnknownWorkflow", "WorkflowFailed", "NonDeterminismError",
    "StepError", "ToolError", "CircuitOpen", "ProviderError", "BudgetExceeded", "PolicyDenied",
    "InjectionBlocked", "NeedsConfirmation", "CredentialError", "KillSwitchEngaged", "UnauthorizedToolCall",
    "OutputValidationError", "ReviewRejected", "StaleData", "ToolTimeout", "TaintedArgument",
)
for _name in _ERRORS:
    _LAZY[_name] = ("stalwart.errors", _name)

__all__ = [
    "App", "Context", "AgentResult", "AgentToolCall", "Budget", "RetryPolicy", "RunInfo", "RunStatus", "Worker", "Settings", "load_settings",
    "verify_credential", "guard", *_ERRORS, "__version__",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'stalwart' has no attribute {name!r}")
    module = importlib.import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from stalwart import guard
    from stalwart.engine import AgentResult, AgentToolCall, App, Context, RetryPolicy, RunInfo, RunStatus, Worker
    from stalwart.errors import *  # noqa: F403
    from stalwart.gateway import Budget
    from stalwart.sandbox import verify_credential
    from stalwart.settings import Settings, load_settings
