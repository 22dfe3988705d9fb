"""stalwart.gateway — the model gateway: providers, routing and fallback, budgets, cache,
structured outputs, prompt templates, token counting and cost.

The engine calls ``await Gateway(settings, store).complete(LLMRequest(...), CallContext(...))``
and journals the ``LLMResult``; ``on_delta=`` streams the answer as it is produced. The ``local``
provider is an offline scripted stand-in, labelled ``local (offline, not a real LLM)`` wherever it
appears; ``embedded`` is a real small model (SmolLM2-135M-Instruct) run in-process on the CPU.
"""

from stalwart.gateway._budget import Budget
from stalwart.gateway._cache import SEMANTIC_CACHE_STATUS
from stalwart.gateway._cost import CostEstimate
from stalwart.gateway._gateway import DEFAULT_MAX_TOKENS, Gateway
from stalwart.gateway._providers._base import Provider
from stalwart.gateway._providers.embedded import EMBEDDED_LABEL
from stalwart.gateway._providers.local import LocalProvider, LocalRule
from stalwart.gateway._templates import PROMPT_FLAG_PREFIX, PromptTemplate, parse_template, split_ref
from stalwart.gateway._tokens import count_messages, count_text
from stalwart.gateway._types import (
    LOCAL_LABEL,
    CallContext,
    LLMRequest,
    LLMResult,
    ProviderRequest,
    ProviderResponse,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "EMBEDDED_LABEL",
    "LOCAL_LABEL",
    "PROMPT_FLAG_PREFIX",
    "SEMANTIC_CACHE_STATUS",
    "Budget",
    "CallContext",
    "CostEstimate",
    "Gateway",
    "LLMRequest",
    "LLMResult",
    "LocalProvider",
    "LocalRule",
    "PromptTemplate",
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "count_messages",
    "count_text",
    "parse_template",
    "split_ref",
]
