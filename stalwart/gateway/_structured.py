"""Structured outputs: the JSON Schema sent to a provider, validation, and correction prompts.

No free text enters the critical path: an answer either validates into the requested Pydantic
model, or after ``MAX_CORRECTIONS`` correction prompts the call fails with
``OutputValidationError`` (non-retryable).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["MAX_CORRECTIONS", "correction_message", "schema_instruction", "strict_schema", "validate_output"]

MAX_CORRECTIONS = 2
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _strict(node: Any) -> None:
    if not isinstance(node, dict):
        return
    node.pop("default", None)
    props = node.get("properties")
    if isinstance(props, dict):
        node["additionalProperties"] = False
        node["required"] = list(props)
        for sub in props.values():
            _strict(sub)
    for key in ("$defs", "definitions"):
        for sub in (node.get(key) or {}).values():
            _strict(sub)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in node.get(key) or []:
            _strict(sub)
    _strict(node.get("items"))


def strict_schema(output: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema in the strict shape OpenAI-compatible servers require."""
    schema = copy.deepcopy(output.model_json_schema())
    _strict(schema)
    return schema


def validate_output(text: str, output: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    """``(instance, None)`` when ``text`` validates, else ``(None, errors for the model to read)``."""
    m = _FENCE.match(text)
    raw = m.group(1) if m else text.strip()
    try:
        return output.model_validate_json(raw), None
    except ValidationError as exc:
        errors = [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        return None, "; ".join(errors)[:2000]


def correction_message(errors: str) -> dict[str, str]:
    """The user message sent after an answer that did not validate."""
    return {
        "role": "user",
        "content": (
            "Your previous answer did not match the required JSON schema. Validation errors: "
            f"{errors}. Reply again with only one JSON object that satisfies the schema."
        ),
    }


def schema_instruction(schema: dict[str, Any]) -> dict[str, str]:
    """A system message carrying the schema, for providers that cannot enforce one themselves."""
    return {
        "role": "system",
        "content": "Answer with only one JSON object (no prose, no code fence) that validates against "
        "this JSON Schema:\n" + json.dumps(schema, separators=(",", ":")),
    }
