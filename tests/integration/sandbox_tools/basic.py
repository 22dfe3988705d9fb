"""Well-behaved tools used by the sandbox tests."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel


class Order(BaseModel):
    order_id: str
    cents: int


def echo(value: str) -> dict:
    return {"value": value}


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def lookup(order_id: str) -> Order:
    return Order(order_id=order_id, cents=1250)


def wrong_type() -> int:
    return "not an int"  # type: ignore[return-value]


def bad_model() -> Order:
    return {"order_id": "x"}  # type: ignore[return-value]


def noisy(lines: int) -> int:
    for i in range(lines):
        print("line", i)
    return lines


def raise_value_error() -> None:
    raise ValueError("bad input")


def raise_connection_error() -> None:
    raise ConnectionError("upstream reset")


def raise_stalwart(retryable: bool) -> None:
    from stalwart.errors import StaleData

    raise StaleData("inventory changed", retryable=retryable)


def crash() -> None:
    import os

    os.abort()


def whoami(*, credential: str) -> dict:
    from stalwart.sandbox import current_credential

    return {"kw": credential, "current": current_credential()}


def verify_scope(scope: str, org: str | None = None, *, credential: str) -> dict:
    from stalwart.sandbox import verify_credential

    claims = verify_credential(credential, scope, org=org)
    return {"org": claims.org, "scopes": list(claims.scopes)}


def visible_text(*, credential: str) -> dict:
    """Everything a tool can see of argv and environment, to prove the credential is not there."""
    import os

    seen = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for name in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{name}", "rb") as f:
                        seen[f"{pid}/{name}"] = f.read().decode("latin-1")
                except OSError as exc:
                    seen[f"{pid}/{name}"] = f"<{exc.__class__.__name__}>"
    return {"seen": seen, "has_credential": bool(credential)}


async def sleep_async(seconds: float) -> None:
    await asyncio.sleep(seconds)


def framework_bytecode() -> dict:
    """Where the framework's bytecode comes from inside the sandbox (precompiled, read-only)."""
    import os

    import stalwart.errors

    cached = stalwart.errors.__cached__
    try:
        with open(cached, "ab"):
            writable = True
    except OSError:
        writable = False
    return {"cached": cached, "exists": os.path.exists(cached), "writable": writable}
