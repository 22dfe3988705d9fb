"""The tool-call allowlist: a model may call only its workflow's tools, with arguments that
validate against each tool's signature or JSON schema. Everything else is a blocked decision the
engine records, counts (``agent_unauthorized_tool_calls_total``) and sends to review.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from stalwart.errors import UnauthorizedToolCall
from stalwart.guard._types import ToolCallDecision

__all__ = ["ToolCallPolicy", "ToolSpec", "check_tool_call", "enforce_tool_call"]

# Parameters the runtime fills in itself; a model must not choose them.
INJECTED_PARAMS = frozenset({"idempotency_key", "ctx", "context"})


@dataclass(frozen=True)
class ToolSpec:
    """One allowed tool: its name and either a callable (its signature is the schema) or a JSON
    schema (``{"type": "object", "properties": ..., "required": [...]}``)."""

    name: str
    fn: Callable[..., Any] | None = None
    schema: Mapping[str, Any] | None = None

    def model(self) -> type[BaseModel] | None:
        if self.fn is None:
            return None
        fields: dict[str, Any] = {}
        for p in inspect.signature(self.fn).parameters.values():
            if p.name in INJECTED_PARAMS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            ann = Any if p.annotation is inspect.Parameter.empty else p.annotation
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (ann, default)
        return create_model(  # type: ignore[call-overload, no-any-return]
            f"{self.name}_args", __config__=ConfigDict(extra="forbid", strict=False), **fields
        )


def _spec(name: str, item: Any) -> ToolSpec:
    if isinstance(item, ToolSpec):
        return item
    if isinstance(item, Mapping):
        schema = item.get("parameters", item) if "parameters" in item else item
        return ToolSpec(name, schema=schema)
    fn = getattr(item, "fn", None) or getattr(item, "__wrapped__", None) or item
    if not callable(fn):
        raise TypeError(f"tool {name!r}: expected a callable, a JSON schema or a ToolSpec")
    return ToolSpec(name, fn=fn)


def _name_of(item: Any) -> str:
    for attr in ("tool_name", "name", "__name__"):
        v = getattr(item, attr, None)
        if isinstance(v, str):
            return v
    raise TypeError(f"cannot tell the name of tool {item!r}; pass a mapping name -> tool")


class ToolCallPolicy:
    """The tools one workflow allows.

    ``tools`` is a mapping name -> (callable | JSON schema | :class:`ToolSpec`), or an iterable of
    callables / tool objects whose ``name`` or ``__name__`` is used.
    """

    def __init__(self, tools: Mapping[str, Any] | Iterable[Any]) -> None:
        items = tools.items() if isinstance(tools, Mapping) else ((_name_of(t), t) for t in tools)
        self._specs: dict[str, ToolSpec] = {n: _spec(n, t) for n, t in items}
        self._models: dict[str, type[BaseModel] | None] = {n: s.model() for n, s in self._specs.items()}

    @property
    def names(self) -> list[str]:
        return sorted(self._specs)

    def check(self, name: str, args: Mapping[str, Any] | None = None) -> ToolCallDecision:
        """Decide on one proposed call. Never raises; see :func:`enforce_tool_call`."""
        args = dict(args or {})
        spec = self._specs.get(name)
        if spec is None:
            return ToolCallDecision(
                False, name, f"tool {name!r} is not in this workflow's allowlist", "unknown_tool"
            )
        injected = sorted(INJECTED_PARAMS.intersection(args))
        if injected:
            return ToolCallDecision(
                False, name, f"arguments {injected} are set by the runtime, not the model", "invalid_args"
            )
        model = self._models.get(name)
        if model is not None:
            try:
                model.model_validate(args)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()[:5]
                )
                return ToolCallDecision(
                    False, name, f"arguments do not match the signature: {problems}", "invalid_args"
                )
        elif spec.schema is not None:
            problem = _validate_schema(args, spec.schema, "args")
            if problem:
                return ToolCallDecision(
                    False, name, f"arguments do not match the schema: {problem}", "invalid_args"
                )
        return ToolCallDecision(True, name, "", "ok")


def check_tool_call(
    allowed: ToolCallPolicy | Mapping[str, Any] | Iterable[Any],
    name: str,
    args: Mapping[str, Any] | None = None,
) -> ToolCallDecision:
    """Whether the call ``name(**args)`` is allowed by ``allowed`` (a policy or what builds one)."""
    policy = allowed if isinstance(allowed, ToolCallPolicy) else ToolCallPolicy(allowed)
    return policy.check(name, args)


def enforce_tool_call(decision: ToolCallDecision) -> ToolCallDecision:
    """Raise :class:`~stalwart.errors.UnauthorizedToolCall` for a blocked decision."""
    if not decision.allowed:
        raise UnauthorizedToolCall(
            decision.reason, retryable=False, details={"tool": decision.tool, "code": decision.code}
        )
    return decision


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list, tuple),
    "null": (type(None),),
}


def _validate_schema(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    """A small JSON-schema subset: type, properties, required, additionalProperties, items,
    enum, minimum/maximum, minLength/maxLength, pattern."""
    import re

    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        ok = False
        for name in types:
            py = _JSON_TYPES.get(name, (object,))
            if isinstance(value, py) and not (name in ("integer", "number") and isinstance(value, bool)):
                ok = True
        if not ok:
            return f"{path}: expected {t}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: not one of {schema['enum']}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in value:
                return f"{path}.{req}: required"
        extra = schema.get("additionalProperties", not props)
        for k, v in value.items():
            if k in props:
                p = _validate_schema(v, props[k], f"{path}.{k}")
                if p:
                    return p
            elif extra is False:
                return f"{path}.{k}: unexpected argument"
            elif isinstance(extra, Mapping):
                p = _validate_schema(v, extra, f"{path}.{k}")
                if p:
                    return p
    if isinstance(value, list | tuple) and "items" in schema:
        for i, v in enumerate(value):
            p = _validate_schema(v, schema["items"], f"{path}[{i}]")
            if p:
                return p
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path}: below minimum {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path}: above maximum {schema['maximum']}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']}"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{path}: does not match {schema['pattern']}"
    return None
