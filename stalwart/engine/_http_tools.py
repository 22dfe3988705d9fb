"""Tools that are HTTP services: the arguments go as a JSON body, a per-call credential as a
bearer token, and the service's status decides what happens next (429 and 5xx retry, honouring
``Retry-After``; other 4xx fail for good)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stalwart.errors import ToolError, ToolTimeout

if TYPE_CHECKING:
    from stalwart.engine._definitions import ToolDef
    from stalwart.engine._execution import RunExecution

__all__ = ["HttpEndpoint", "call_http_tool"]


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    url: str
    method: str = "POST"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            import time

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


async def call_http_tool(ex: RunExecution, tool: ToolDef, args: dict[str, Any], meta: dict[str, Any]) -> Any:
    import httpx

    endpoint = tool.http
    assert endpoint is not None
    headers = {"content-type": "application/json", "x-stalwart-run": ex.run.id}
    broker = await ex.app.credential_broker() if tool.scopes else None
    if broker is not None:
        token, jti = await broker.mint(ex.run.id, ex.run.org or "default", tool.name, list(tool.scopes))
        headers["authorization"] = f"Bearer {token}"
        meta["credential_id"] = jti
    if "idempotency_key" in args:
        headers["idempotency-key"] = str(args.pop("idempotency_key"))
    client = ex.app._http_client()
    try:
        resp = await client.request(endpoint.method, endpoint.url, json=args, headers=headers, timeout=tool.timeout_s)
    except httpx.TimeoutException:
        raise ToolTimeout(f"tool {tool.name!r}: {endpoint.url} did not answer within {tool.timeout_s}s") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"tool {tool.name!r}: {endpoint.url} unreachable: {type(exc).__name__}") from None
    meta["http_status"] = resp.status_code
    if resp.status_code == 429 or resp.status_code >= 500:
        raise ToolError(f"tool {tool.name!r}: {endpoint.url} answered {resp.status_code}", retryable=True,
                        retry_after=_retry_after(resp.headers.get("retry-after")),
                        details={"status": resp.status_code})
    if resp.status_code >= 400:
        raise ToolError(f"tool {tool.name!r}: {endpoint.url} refused the call ({resp.status_code}): "
                        f"{resp.text[:200]}", retryable=False, details={"status": resp.status_code})
    try:
        return resp.json()
    except ValueError:
        raise ToolError(f"tool {tool.name!r}: {endpoint.url} did not answer JSON", retryable=False) from None
