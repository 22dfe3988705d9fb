"""What a user declares: workflows and tools, with their signatures and options."""

from __future__ import annotations

import asyncio
import copy
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, ValidationError, create_model

from stalwart.engine._retry import RetryPolicy
from stalwart.errors import InvalidInput
from stalwart.gateway import Budget

__all__ = ["WorkflowDef", "ToolDef", "format_validation_error"]


def format_validation_error(exc: ValidationError, what: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{what}: " + "; ".join(parts)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


@dataclass(eq=False)
class WorkflowDef:
    """A registered ``async def`` workflow at one version."""

    name: str
    version: str
    fn: Callable[..., Any]
    tools: dict[str, ToolDef]
    budget: Budget | None = None
    retry: RetryPolicy | None = None
    role: str = "agent"
    """The role policies see for this workflow's agent (e.g. ``support``)."""
    mcp_servers: frozenset[str] = frozenset()
    """MCP servers allowlisted whole (``tools=[server]``): each of their tools, once approved."""
    _params: list[inspect.Parameter] = field(default_factory=list, repr=False)
    _input_model: Any = field(default=None, repr=False)
    return_type: Any = None

    def __post_init__(self) -> None:
        if not asyncio.iscoroutinefunction(self.fn):
            raise TypeError(f"workflow {self.name!r} must be an async def function")
        sig = inspect.signature(self.fn)
        params = list(sig.parameters.values())
        if not params:
            raise TypeError(f"workflow {self.name!r} must take the Context as its first parameter")
        self._params = params[1:]
        hints = _hints(self.fn)
        self.return_type = hints.get("return")
        fields: dict[str, Any] = {}
        for p in self._params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"workflow {self.name!r}: *args/**kwargs parameters are not supported")
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (hints.get(p.name, Any), default)
        self._input_model = create_model(  # type: ignore[call-overload]
            f"{self.name}_input", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields
        )

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def allows(self, tool: ToolDef) -> bool:
        """Whether ``tool`` is in this workflow's allowlist (listed itself, or its MCP server whole)."""
        if self.tools.get(tool.name) is tool:
            return True
        return tool.mcp is not None and tool.mcp.server.name in self.mcp_servers

    def _as_kwargs(self, value: Any) -> dict[str, Any]:
        if len(self._params) == 1:
            return {self._params[0].name: value}
        if not self._params:
            if value not in (None, {}, []):
                raise InvalidInput(f"workflow {self.key} takes no input, got {type(value).__name__}")
            return {}
        if not isinstance(value, dict):
            names = ", ".join(p.name for p in self._params)
            raise InvalidInput(f"workflow {self.key} takes an object with fields ({names}), got {type(value).__name__}")
        return value

    def validate_input(self, value: Any) -> dict[str, Any]:
        """Check ``value`` against the workflow's type hints; return the keyword arguments."""
        try:
            model = self._input_model.model_validate(self._as_kwargs(value))
        except ValidationError as exc:
            raise InvalidInput(format_validation_error(exc, f"input does not match workflow {self.key}")) from None
        return {p.name: getattr(model, p.name) for p in self._params}

    def input_json(self, value: Any) -> str:
        """Validate and serialise the input as stored on the run."""
        kwargs = self.validate_input(value)
        try:
            dumped = self._input_model(**kwargs).model_dump(mode="json")
        except Exception as exc:
            raise InvalidInput(f"input of workflow {self.key} is not JSON-serialisable: {exc}") from None
        from stalwart.engine._serde import encode

        return encode(dumped[self._params[0].name] if len(self._params) == 1 else dumped)


@dataclass(eq=False)
class ToolDef:
    """A registered tool: the function plus what the engine needs to call it safely."""

    name: str
    fn: Callable[..., Any]
    scopes: tuple[str, ...] = ()
    timeout_s: float = 30.0
    mutating: bool = False
    compensate: Callable[..., Any] | None = None
    sandbox: str = "process"
    retry: RetryPolicy | None = None
    egress: tuple[str, ...] = ()
    retry_on_timeout: bool | None = None
    """``None``: a timeout is retried unless the tool was CPU-bound the whole time (it burned its
    budget; another attempt burns another); ``True``: always retried; ``False``: never."""
    risk: int = 0
    sensitivity: str = "low"
    """``low`` | ``medium`` | ``high``: how sensitive the data this tool touches is (policy and risk)."""
    max_staleness_s: float | None = None
    """Data older than this (by the result's ``as_of``) is a failure, not an input."""
    fallback: ToolDef | None = None
    """A tool to use instead when this one fails or returns stale data (recorded on the step)."""
    http: Any = None
    """For tools that are HTTP services: the :class:`HttpEndpoint` to call instead of ``fn``."""
    mcp: Any = None
    """For tools of an MCP server: the ``McpBinding`` (server and tool name) to call instead of ``fn``."""
    input_model: Any = None
    """Argument model used instead of ``fn``'s signature (HTTP tools)."""
    pii_fields: tuple[str, ...] = ()
    """Arguments re-hydrated from the vault just before the call (the tool needs the real value)."""
    guarded_args: tuple[str, ...] = ()
    """Security-relevant arguments (recipients, URLs, accounts, file ids, amounts): on a mutating
    tool, a value that derives from untrusted content and not from the run's input is tainted."""
    trusted_values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Per guarded argument, constants the developer declares trusted (the company's own account)."""
    description: str = ""
    return_type: Any = None
    takes_idempotency_key: bool = False
    _model: Any = field(default=None, repr=False)
    _schema: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.sandbox not in ("process", "none"):
            raise ValueError(f"tool {self.name!r}: sandbox must be 'process' or 'none', not {self.sandbox!r}")
        if self.mutating and self.compensate is None:
            pass  # allowed: a mutating tool without compensation is recorded as such
        sig = inspect.signature(self.fn)
        hints = _hints(self.fn)
        self.return_type = hints.get("return")
        self.description = self.description or (inspect.getdoc(self.fn) or "").split("\n\n")[0]
        self.takes_idempotency_key = "idempotency_key" in sig.parameters
        if self.input_model is not None:
            self._model = self.input_model
            self._check_guarded()
            return
        fields: dict[str, Any] = {}
        for p in sig.parameters.values():
            if p.name in ("idempotency_key", "credential"):
                self.takes_idempotency_key |= p.name == "idempotency_key"
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            fields[p.name] = (hints.get(p.name, Any), ... if p.default is p.empty else p.default)
        self._model = create_model(  # type: ignore[call-overload]
            f"{self.name}_args", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields
        )
        self._check_guarded()

    def _check_guarded(self) -> None:
        if self.guarded_args and not self.mutating and self.mcp is None:
            raise TypeError(f"tool {self.name!r}: guarded_args applies to mutating tools (mutating=True); "
                            "a read-only tool cannot act, its output is untrusted whatever its arguments")
        fields = set(getattr(self._model, "model_fields", {}) or {})
        extra = (getattr(self._model, "model_config", {}) or {}).get("extra") == "allow"
        unknown = [a for a in (*self.guarded_args, *self.trusted_values) if a not in fields and not extra]
        if unknown:
            raise TypeError(f"tool {self.name!r}: guarded_args names {', '.join(map(repr, unknown))}, "
                            f"not arguments of the tool ({', '.join(sorted(fields)) or 'none'})")
        stray = [a for a in self.trusted_values if a not in self.guarded_args]
        if stray:
            raise TypeError(f"tool {self.name!r}: trusted values given for {', '.join(map(repr, stray))}, "
                            "which guarded_args does not name")

    def validate_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validate call arguments against the tool's signature (JSON-compatible form out)."""
        try:
            return self._model.model_validate(kwargs).model_dump(mode="json")  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise InvalidInput(format_validation_error(exc, f"arguments of tool {self.name!r}")) from None

    def arg_names(self) -> set[str]:
        return set(self._model.model_fields)

    def json_schema(self) -> dict[str, Any]:
        """The arguments' JSON schema (built once: every model call offered the tool needs it)."""
        if self._schema is None:
            self._schema = self._model.model_json_schema()
        return copy.deepcopy(self._schema)  # type: ignore[no-any-return]
