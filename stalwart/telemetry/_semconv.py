"""Span names and attribute keys, kept here rather than taken from the semconv package.

The ``opentelemetry-semantic-conventions`` package marks the ``gen_ai.*`` names as moved between
releases; Stalwart pins the names it emits so that dashboards and queries do not break on upgrade.
"""

from __future__ import annotations

__all__ = [
    "ATTR",
    "GEN_AI",
    "SPAN",
]


class SPAN:
    """Span names."""

    WORKFLOW_RUN = "workflow.run"
    STEP = "step {name}"
    CHAT = "chat {model}"
    EXECUTE_TOOL = "execute_tool {name}"
    POLICY = "policy.evaluate"
    GUARD = "guard.scan"
    REVIEW = "review.wait"
    SLEEP = "sleep"
    SIGNAL = "signal.wait {name}"
    COMPENSATION = "compensate {name}"


class GEN_AI:
    """OpenTelemetry GenAI semantic-convention attribute keys, pinned."""

    OPERATION_NAME = "gen_ai.operation.name"
    PROVIDER_NAME = "gen_ai.provider.name"
    REQUEST_MODEL = "gen_ai.request.model"
    RESPONSE_MODEL = "gen_ai.response.model"
    USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
    USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
    TOOL_NAME = "gen_ai.tool.name"
    TOOL_CALL_ID = "gen_ai.tool.call.id"
    INPUT_MESSAGES = "gen_ai.input.messages"
    OUTPUT_MESSAGES = "gen_ai.output.messages"
    OP_CHAT = "chat"
    OP_EXECUTE_TOOL = "execute_tool"


class ATTR:
    """Attributes every Stalwart span carries, and a few specific ones."""

    WORKFLOW_NAME = "workflow.name"
    WORKFLOW_VERSION = "workflow.version"
    RUN_ID = "run.id"
    ORG_ID = "org.id"
    USER_ID = "user.id"
    MODEL_NAME = "model.name"
    TOKENS_INPUT = "tokens.input"
    TOKENS_OUTPUT = "tokens.output"
    COST_USD = "cost.usd"
    LATENCY_MS = "latency.ms"
    SUCCESS = "success"
    ERROR_TYPE = "error.type"
    STEP_SEQ = "step.seq"
    STEP_KIND = "step.kind"
    STEP_NAME = "step.name"
    STEP_ATTEMPT = "step.attempt"
    STEP_STATUS = "step.status"
    CACHE_HIT = "cache.hit"
    ROUTING_REASON = "routing.reason"
    TOOL_SANDBOX = "tool.sandbox"
    TOOL_MUTATING = "tool.mutating"
    WAIT_MS = "wait.ms"
    RUN_STATUS = "run.status"
    GUARD_SOURCE = "guard.source"
    GUARD_ACTION = "guard.action"
    GUARD_SCORE = "guard.score"
    GUARD_PII_TYPES = "guard.pii_types"
    POLICY_DECISION = "policy.decision"
    POLICY_TOOL = "policy.tool"
