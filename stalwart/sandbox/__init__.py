"""stalwart.sandbox — isolated tool execution, the egress allowlist proxy and the credential broker.

Every tool call runs in a fresh bubblewrap sandbox (:class:`BwrapSandbox`) unless the tool opted in
to ``sandbox="none"`` (:class:`InProcessSandbox`). "Fresh" holds for the warm pool too: a pooled
sandbox was started before the call, with the tool's module imported, and serves that one call
only; then it is destroyed (see ``_pool``). Both take a :class:`ToolInvocation` and return a
:class:`ToolOutcome`; a tool's failure is data on the outcome (``error`` shaped like
``StalwartError.to_dict()``), never an exception. Only a host that cannot isolate raises
:class:`~stalwart.errors.SandboxUnavailable`; there is no fallback to an unsandboxed run.

Inside a sandbox: a read-only view of ``/usr``, the tool's top-level package from ``code_root`` (under
``/opt/stalwart/code``; never the whole project root, which holds ``.git``, ``.env`` and the database),
the ``stalwart`` package and site-packages; a size-capped tmpfs at ``/tmp`` as the only writable place;
no network (or only loopback plus a CONNECT proxy for the tool's ``egress`` allowlist, exposed through
``HTTPS_PROXY``); a seccomp filter; a dedicated unprivileged uid; rlimits and, where writable,
per-sandbox pids/memory cgroups; a wall-clock timeout that kills the whole tree; an output cap.

Credentials. For each invocation the engine mints a token with :meth:`CredentialBroker.mint` and
puts it on ``ToolInvocation.credential`` together with ``verifier=broker.snapshot()``. The token goes
to the sandbox over stdin, never argv or environment. A tool receives it either

* as a keyword parameter named ``credential`` (filled in when the function declares one), or
* by calling :func:`current_credential`.

A service the tool calls checks it with :func:`verify_credential` ``(token, "read:orders", org="acme")``
(or a bound scope ``"read:orders:org:acme"``); inside the sandbox this works offline from the snapshot.
"""

from __future__ import annotations

import importlib

# Not ``from typing import ...``: ``typing`` costs ~15 ms to import, and a sandboxed tool module
# that does ``import stalwart`` must not pay for it (annotations here are strings).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Imported on first use: a tool running inside a sandbox imports this package for
# current_credential/verify_credential and must not pay for the host-side machinery.
_HOMES = {
    "BwrapSandbox": "_bwrap",
    "current_credential": "_context",
    "Claims": "_credentials",
    "CredentialBroker": "_credentials",
    "bind_scope": "_credentials",
    "verify_credential": "_credentials",
    "Check": "_doctor",
    "doctor": "_doctor",
    "InProcessSandbox": "_inprocess",
    "EgressProxy": "_proxy",
    "address_refusal": "_proxy",
    "egress_decision": "_proxy",
    "parse_allowlist": "_proxy",
    "resolve": "_proxy",
    "Sandbox": "_types",
    "StdioServerSandbox": "_stdio",
    "SandboxLimits": "_types",
    "ToolInvocation": "_types",
    "ToolOutcome": "_types",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stalwart.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"stalwart.sandbox.{home}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from stalwart.sandbox._bwrap import BwrapSandbox
    from stalwart.sandbox._context import current_credential
    from stalwart.sandbox._credentials import Claims, CredentialBroker, bind_scope, verify_credential
    from stalwart.sandbox._doctor import Check, doctor
    from stalwart.sandbox._inprocess import InProcessSandbox
    from stalwart.sandbox._proxy import (
        EgressProxy,
        address_refusal,
        egress_decision,
        parse_allowlist,
        resolve,
    )
    from stalwart.sandbox._stdio import StdioServerSandbox
    from stalwart.sandbox._types import Sandbox, SandboxLimits, ToolInvocation, ToolOutcome

__all__ = [
    "BwrapSandbox",
    "Check",
    "Claims",
    "CredentialBroker",
    "EgressProxy",
    "InProcessSandbox",
    "Sandbox",
    "SandboxLimits",
    "StdioServerSandbox",
    "ToolInvocation",
    "ToolOutcome",
    "address_refusal",
    "bind_scope",
    "current_credential",
    "doctor",
    "egress_decision",
    "parse_allowlist",
    "resolve",
    "verify_credential",
]
