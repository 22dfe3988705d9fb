"""Builds WHERE clauses for the generic row methods (placeholder style given per dialect)."""

from __future__ import annotations

from typing import Any

__all__ = ["check_table", "where_sql"]

_OPS = {"<=", "<", ">=", ">", "!="}


def check_table(table: str, allowed: frozenset[str]) -> None:
    if table not in allowed:
        raise ValueError(f"governance does not manage table {table!r}")


def where_sql(where: dict[str, Any], mark: str) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for col, val in where.items():
        if not col.isidentifier():
            raise ValueError(f"bad column {col!r}")
        if val is None:
            parts.append(f"{col} IS NULL")
        elif isinstance(val, list):
            if not val:
                parts.append("1=0")
                continue
            parts.append(f"{col} IN ({','.join([mark] * len(val))})")
            params.extend(val)
        elif isinstance(val, tuple) and len(val) == 2 and val[0] in _OPS:
            parts.append(f"{col} {val[0]} {mark}")
            params.append(val[1])
        else:
            parts.append(f"{col} = {mark}")
            params.append(val)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params
