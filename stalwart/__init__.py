"""Stalwart: a production-grade runtime for AI agents.

Write the agent as an ordinary ``async def`` workflow; Stalwart runs it durably, behind a model
gateway, a tool sandbox, a guard and governance. See ``App`` to begin.
"""

from stalwart import guard
from stalwart.engine import App, Context, RetryPolicy, RunInfo, RunStatus, Worker
from stalwart.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    InjectionBlocked,
    InvalidInput,
    NeedsConfirmation,
    NonDeterminismError,
    PolicyDenied,
    ProviderError,
    StalwartError,
    StepError,
    ToolError,
    UnknownWorkflow,
    WorkflowFailed,
)
from stalwart.gateway import Budget
from stalwart.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "App",
    "Context",
    "Budget",
    "RetryPolicy",
    "RunInfo",
    "RunStatus",
    "Worker",
    "Settings",
    "load_settings",
    "guard",
    "StalwartError",
    "ConfigError",
    "InvalidInput",
    "UnknownWorkflow",
    "WorkflowFailed",
    "NonDeterminismError",
    "StepError",
    "ToolError",
    "CircuitOpen",
    "ProviderError",
    "BudgetExceeded",
    "PolicyDenied",
    "InjectionBlocked",
    "NeedsConfirmation",
    "__version__",
]
