"""MCP servers as tool sources of an app: ``app.mcp(...)``, their tools as ``ToolDef``\\ s, and the
governed call.

A call of an MCP tool takes the path of any tool (``ctx.tool``: allowlist, Cedar with resource
``mcp:SERVER::TOOL``, risk, review, then the journaled step). Inside the step, before anything
reaches the server: the server's current definition of the tool must equal its approved pin
(else :class:`~stalwart.errors.ToolQuarantined`, audited, counted as an unauthorized call, which
the alert rules watch), and the arguments must validate against that pinned input schema. The
result is untrusted: the step scans it as tool output and moves it to the artifact store when large.
The tool list is fetched once per run (and never on replay: a replayed step does not execute).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stalwart.engine._definitions import ToolDef
from stalwart.errors import ConfigError, InvalidInput, PolicyDenied, ToolError, ToolQuarantined
from stalwart.mcp import APPROVED, CHANGED, NEW, McpSession, ServerSpec, ToolDefinition, pin_state

if TYPE_CHECKING:
    from stalwart.engine._app import App
    from stalwart.engine._execution import RunExecution

__all__ = ["McpBinding", "McpServer", "call_mcp_tool"]

_RUN_LISTINGS = 256
"""Runs whose tool listing a server keeps (a run lists each server once)."""
_LISTING_TTL_S = 30
"""Lifetime of the credential an HTTP server's tool listing (and handshake) carries."""


@dataclass(frozen=True)
class McpBinding:
    server: McpServer
    tool: str


class McpServer:
    """An MCP server declared on an app (``app.mcp(...)``). ``server.tool("x")`` is a tool like any
    other (``tools=[server.tool("x")]``, ``ctx.tool(server.tool("x"), ...)``); ``tools=[server]``
    allowlists every tool of the server (each still callable only once approved)."""

    def __init__(self, app: App, spec: ServerSpec, *, risk: int = 0, sensitivity: str = "medium",
                 guarded_args: dict[str, list[str]] | None = None) -> None:
        self.app = app
        self.guarded_args = {k: tuple(v) for k, v in (guarded_args or {}).items()}
        self.spec = spec
        self.name = spec.name
        self.risk = risk
        self.sensitivity = sensitivity
        self._tools: dict[str, ToolDef] = {}
        self._session: McpSession | None = None
        self._listings: OrderedDict[str, dict[str, ToolDefinition]] = OrderedDict()

    def __repr__(self) -> str:
        return f"McpServer({self.name!r}, {self.spec.transport})"

    def tool(self, name: str, *, timeout_s: float | None = None) -> ToolDef:
        """The tool ``name`` of this server, as a ``ToolDef`` named ``mcp:SERVER::TOOL`` (the same
        object each time); ``timeout_s`` overrides the server's for this tool, on first mention."""
        if not name or not isinstance(name, str):
            raise ConfigError(f"MCP server {self.name!r}: a tool name must be a non-empty string")
        tdef = self._tools.get(name)
        if tdef is None:
            from pydantic import BaseModel, ConfigDict

            # The arguments are checked against the pinned schema inside the step; here any object passes.
            model = type(f"mcp_{self.name}_{name}_args", (BaseModel,), {"model_config": ConfigDict(extra="allow")})

            async def _mcp_call(**kwargs: Any) -> Any:  # the engine calls the server, never this body
                raise RuntimeError("MCP tools are invoked by the engine")

            tdef = ToolDef(name=f"mcp:{self.name}::{name}", fn=_mcp_call, scopes=self.spec.scopes,
                           timeout_s=timeout_s or self.spec.timeout_s, sandbox="none", risk=self.risk,
                           sensitivity=self.sensitivity, mcp=McpBinding(self, name), input_model=model,
                           description=f"MCP tool {name} of server {self.name}",
                           guarded_args=self.guarded_args.get(name, ()))
            self._tools[name] = tdef
            self.app._tools[tdef.name] = tdef
        return tdef

    # -- the session -----------------------------------------------------------------------------
    def session(self) -> McpSession:
        """This process's session to the server (started on first use, restarted when it dies)."""
        if self._session is None:
            sandbox_argv = None
            if self.spec.command and self.spec.sandbox == "process":
                from stalwart.sandbox import SandboxLimits, StdioServerSandbox

                st = self.app.settings.sandbox
                box = StdioServerSandbox(SandboxLimits(), uid=st.uid, python=st.python)

                def sandbox_argv(argv: list[str], code_dir: str | None) -> list[str]:
                    return box.argv(argv, code_dir=code_dir)

            self._session = McpSession(self.spec, sandbox_argv=sandbox_argv)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()
            self._session = None
        self._listings.clear()

    async def definitions(self, run_id: str | None = None, org: str | None = None) -> dict[str, ToolDefinition]:
        """The server's tool definitions now (``run_id``: the ones this run saw first, listed once).
        An HTTP server with ``scopes`` gets a credential for the listing: subject ``mcp:SERVER``, the
        server's scopes bound to ``org`` (the run's; ``default`` outside a run), short-lived."""
        if run_id is not None and run_id in self._listings:
            self._listings.move_to_end(run_id)
            return self._listings[run_id]
        bearer = None
        if self.spec.url and self.spec.scopes:
            broker = await self.app.credential_broker()
            bearer, _ = await broker.mint(run_id or "", org or "default", f"mcp:{self.name}", list(self.spec.scopes),
                                          ttl_s=_LISTING_TTL_S)
        listed = {d.name: d for d in await self.session().list_tools(bearer=bearer)}
        if run_id is not None:
            self._listings[run_id] = listed
            while len(self._listings) > _RUN_LISTINGS:
                self._listings.popitem(last=False)
        return listed

    async def pins(self) -> dict[str, dict[str, Any]]:
        store = await self.app.connect()
        return {p["tool"]: p for p in await store.mcp_pins(self.name)}

    async def status(self) -> list[dict[str, Any]]:
        """Each tool listed or pinned: ``tool``, ``state``, ``pinned`` and ``listed`` hashes."""
        listed = await self.definitions()
        pins = await self.pins()
        rows = []
        for name in sorted(set(listed) | set(pins)):
            d, p = listed.get(name), pins.get(name)
            rows.append({"server": self.name, "tool": name, "state": pin_state(d, p["sha256"] if p else None),
                         "pinned": p and p["sha256"], "listed": d and d.sha256,
                         "approved_by": p and p["approved_by"]})
        return rows

    async def approve(self, tool: str | None = None, *, by: str) -> list[dict[str, Any]]:
        """Pin the current definition of ``tool`` (or of every listed tool). Each description is
        scanned by the guard first: a tool whose description the guard blocks is refused (not
        pinned, so it stays quarantined), and the refusal is audited like the approvals."""
        listed = await self.definitions()
        if tool is not None and tool not in listed:
            raise InvalidInput(f"MCP server {self.name!r} lists no tool {tool!r} (it lists: {', '.join(sorted(listed))})")
        chosen = [listed[tool]] if tool is not None else [listed[k] for k in sorted(listed)]
        guard = await self.app.guard_ready()
        outcome: list[dict[str, Any]] = []
        pins: list[dict[str, Any]] = []
        for d in chosen:
            verdict = guard.scan(f"{d.description}\n{json.dumps(d.input_schema)}", source="tool")
            row = {"tool": d.name, "sha256": d.sha256, "guard": verdict.action, "reasons": list(verdict.reasons)}
            if verdict.action == "block":
                row["state"] = "refused"
            else:
                row["state"] = "approved"
                pins.append({"tool": d.name, "sha256": d.sha256, "definition": d.to_json()})
            outcome.append(row)
        store = await self.app.connect()
        if pins:
            await store.mcp_pin(self.name, pins, by, self.app.clock.time())
        await _audit(self.app, [
            {"event_type": f"mcp.tool_{'approved' if r['state'] == 'approved' else 'refused'}", "actor": f"user:{by}",
             "resource": f"mcp:{self.name}::{r['tool']}", "decision": r["state"],
             "details": {"sha256": r["sha256"], "guard": r["guard"], "reasons": r["reasons"]}}
            for r in outcome
        ])
        return outcome


_DESTRUCTIVE_RISK = 30
"""Added to an MCP tool's risk when its server marks it ``destructiveHint``."""


async def risk_hints(ex: RunExecution, tool: ToolDef) -> tuple[int, bool]:
    """(risk, mutating) for the policy decision on an MCP tool: the declared values, raised (never
    lowered) by the server's annotations. A ``destructiveHint`` adds risk and makes the call count as
    mutating; ``readOnlyHint`` changes nothing (a server's word is no permission). The listing is the
    run's own (fetched once per run); if the server cannot list now, the declared values stand and
    the call's own step fails on the same cause."""
    binding: McpBinding = tool.mcp
    try:
        listed = await binding.server.definitions(ex.run.id, ex.run.org)
    except Exception:  # noqa: BLE001 - the tool step reports the failure, with its retry policy
        return tool.risk, tool.mutating
    d = listed.get(binding.tool)
    if d is not None and d.annotations.get("destructiveHint") is True:
        return min(100, tool.risk + _DESTRUCTIVE_RISK), True
    return tool.risk, tool.mutating


async def _audit(app: App, events: list[dict[str, Any]], run: Any = None) -> None:
    from stalwart.governance import AuditEvent

    gov = await app.governance()
    await gov.audit.append([AuditEvent(
        action=e["event_type"], org_id=(run.org if run else "") or "", user_id=(run.user if run else "") or "",
        run_id=run.id if run else None, **e) for e in events])


def _validate(schema: dict[str, Any], args: dict[str, Any], what: str) -> None:
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        errors = sorted(cls(schema).iter_errors(args), key=lambda e: list(e.absolute_path))
    except jsonschema.SchemaError as exc:
        raise PolicyDenied(f"{what}: the pinned input schema is not a valid JSON schema: {exc.message}") from None
    if errors:
        parts = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:5]]
        raise InvalidInput(f"arguments of {what} do not match its pinned input schema: " + "; ".join(parts))


async def call_mcp_tool(ex: RunExecution, tool: ToolDef, args: dict[str, Any], meta: dict[str, Any]) -> Any:
    """One call of an MCP tool inside its journaled step (see the module docstring)."""
    binding: McpBinding = tool.mcp
    server = binding.server
    listed = await server.definitions(ex.run.id, ex.run.org)
    pin = (await server.pins()).get(binding.tool)
    definition = listed.get(binding.tool)
    state = pin_state(definition, pin["sha256"] if pin else None)
    meta["mcp"] = {"server": server.name, "tool": binding.tool, "state": state,
                   "definition_sha256": definition and definition.sha256}
    if state != APPROVED:
        ex.app._count_unauthorized(tool.name)
        if ex.app.telemetry is not None:
            ex.app.telemetry.mcp_quarantined(server.name)
        why = {CHANGED: "its definition differs from the approved pin", NEW: "it has never been approved"}.get(
            state, "the server no longer lists it")
        await _audit(ex.app, [{"event_type": "mcp.tool_quarantined", "actor": f"agent:{ex.run.workflow}@{ex.run.version}",
                               "resource": tool.name, "decision": "deny",
                               "details": {"state": state, "pinned": pin and pin["sha256"],
                                           "listed": definition and definition.sha256}}], run=ex.run)
        raise ToolQuarantined(
            f"MCP tool {tool.name!r} is quarantined: {why} (review it, then `stalwart mcp approve "
            f"{server.name} {binding.tool}`)", retryable=False, details={"tool": tool.name, "state": state})
    assert definition is not None
    if definition.annotations:
        meta["mcp"]["annotations"] = definition.annotations  # hints for the record, never for permission
    _validate(definition.input_schema, args, f"MCP tool {tool.name!r}")
    bearer = None
    if server.spec.url and tool.scopes:
        broker = await ex.app.credential_broker()
        bearer, jti = await broker.mint(ex.run.id, ex.run.org or "default", tool.name, list(tool.scopes))
        meta["credential_id"] = jti
    egress: list[dict[str, Any]] = []
    try:
        outcome = await server.session().call_tool(binding.tool, args, timeout_s=tool.timeout_s, bearer=bearer,
                                                   egress=egress)
    finally:
        if egress:
            meta["egress"] = list(egress)
    value = outcome.to_value()
    size = len(json.dumps(value, ensure_ascii=False, default=str))
    meta["mcp"]["result_bytes"] = size
    if size > server.spec.max_result_bytes:
        raise ToolError(f"MCP tool {tool.name!r} returned {size} bytes, over the limit of "
                        f"{server.spec.max_result_bytes}", retryable=False, details={"limit": "result_bytes"})
    if outcome.is_error:
        raise ToolError(f"MCP tool {tool.name!r} reported an error: {outcome.text()[:300]}", retryable=False)
    return value
