"""JSON encoding of journaled values, and decoding them back to the declared types.

A step's value is always returned *as decoded from its JSON*, on the first execution as on
replay, so workflow code sees the same types either way.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pydantic_core
from pydantic import TypeAdapter

__all__ = ["encode", "decode", "adapter_for"]

_PLAIN = (str, int, float, bool, type(None))


def encode(value: Any) -> str:
    """Serialise a step result (pydantic models, dataclasses, datetimes and plain JSON welcome)."""
    if isinstance(value, _PLAIN) or (isinstance(value, dict | list) and _is_plain(value)):
        return json.dumps(value, separators=(",", ":"))
    return pydantic_core.to_json(value).decode()


def _is_plain(value: Any, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain(v, depth + 1) for v in value)
    return isinstance(value, _PLAIN) and not (isinstance(value, float) and value != value)


@functools.lru_cache(maxsize=1024)
def adapter_for(tp: Any) -> TypeAdapter[Any] | None:
    """A cached validator for ``tp``; ``None`` when the type needs no conversion from JSON."""
    if tp is None or tp is Any or tp in (dict, list, str, int, float, bool, type(None)):
        return None
    try:
        return TypeAdapter(tp)
    except Exception:  # an annotation pydantic cannot handle: hand back plain JSON
        return None


def decode(text: str | None, tp: Any = None) -> Any:
    if text is None:
        return None
    ad = adapter_for(tp) if tp is not None else None
    if ad is None:
        return json.loads(text)
    return ad.validate_json(text)
