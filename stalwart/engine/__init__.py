"""stalwart.engine — durable workflows: definitions, replay, workers, retries, breakers, sagas."""

from stalwart.engine._agent import STOP_REASONS, AgentResult, AgentToolCall
from stalwart.engine._app import KILL_SWITCH_FLAG, App, RunInfo
from stalwart.engine._breaker import BreakerPolicy, BreakerState
from stalwart.engine._context import Context
from stalwart.engine._definitions import ToolDef, WorkflowDef
from stalwart.engine._fleet import FLEET_LEASE, Fleet, start_fleet
from stalwart.engine._ids import Clock, SystemClock
from stalwart.engine._retry import RetryPolicy
from stalwart.engine._states import TRANSITIONS, RunStatus, check_transition
from stalwart.engine._stream import StreamLimits
from stalwart.engine._worker import Worker

__all__ = [
    "App",
    "AgentResult",
    "AgentToolCall",
    "STOP_REASONS",
    "Context",
    "RunInfo",
    "RunStatus",
    "TRANSITIONS",
    "check_transition",
    "RetryPolicy",
    "BreakerPolicy",
    "BreakerState",
    "StreamLimits",
    "Worker",
    "WorkflowDef",
    "ToolDef",
    "Clock",
    "SystemClock",
    "KILL_SWITCH_FLAG",
    "FLEET_LEASE",
    "Fleet",
    "start_fleet",
]
