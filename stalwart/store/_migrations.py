"""Versioned SQL migrations, one directory per dialect (``migrations/<dialect>/NNNN_name.sql``)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

__all__ = ["Migration", "load_migrations"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """All migrations for ``dialect`` in version order."""
    root = resources.files("stalwart.store").joinpath("migrations", dialect)
    found: list[Migration] = []
    for item in root.iterdir():
        fname = item.name
        if not fname.endswith(".sql"):
            continue
        stem = fname[:-4]
        num, _, name = stem.partition("_")
        found.append(Migration(int(num), name, item.read_text()))
    found.sort(key=lambda m: m.version)
    return found
