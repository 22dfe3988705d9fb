"""The embedded vector backend: sqlite-vec ranks exactly like Stalwart's own exact search.

Needs an interpreter whose sqlite3 can load extensions (Debian's python3 can; some pyenv builds
cannot) and the sqlite-vec package; otherwise it is skipped with a loud message.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import warnings

import pytest

from stalwart.memory import LexicalEmbedder, Memory
from stalwart.store import open_store

LOADABLE = hasattr(sqlite3.Connection, "enable_load_extension") and importlib.util.find_spec("sqlite_vec") is not None
if not LOADABLE:
    msg = (f"!!! {sys.executable}: sqlite3 cannot load extensions or sqlite-vec is missing: "
           "the sqlite-vec test is SKIPPED (memory search runs exact here) !!!")
    print("\n" + msg, file=sys.stderr)
    warnings.warn(msg, stacklevel=1)

pytestmark = pytest.mark.skipif(not LOADABLE, reason="sqlite-vec cannot be loaded by this interpreter")


class NoGuard:
    """Only texts without PII or injections are used here; the real guard is tested elsewhere."""

    def redact(self, text: str):  # type: ignore[no-untyped-def]
        return type("R", (), {"text": text})()

    def scan(self, text: str, source: str = "tool"):  # type: ignore[no-untyped-def]
        return type("V", (), {"action": "allow", "score": 0.0})()


TEXTS = [f"order {i} {w}" for i, w in enumerate(
    ["blender broke", "late parcel", "wrong colour shirt", "refund blender", "billing question",
     "blender jug cracked", "parcel lost", "shirt too small", "refund parcel", "opening hours"])]


async def test_sqlite_vec_matches_exact_search(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = await open_store(f"sqlite:///{tmp_path}/m.db", migrate=True)
    mem = Memory(store, NoGuard(), embedder=LexicalEmbedder(), clock=lambda: 1_800_000_000.0)
    for t in TEXTS:
        await mem.remember("acme", "u1", t, "fact")
    vec = await mem.recall("acme", "u1", "blender refund", k=5)
    assert vec.backend == "sqlite-vec"
    mem.index.backend = "exact"  # the same rows, ranked by Stalwart
    exact = await mem.recall("acme", "u1", "blender refund", k=5)
    assert [i.id for i in vec.items] == [i.id for i in exact.items]
    for a, b in zip(vec.items, exact.items, strict=True):
        assert abs((a.score or 0) - (b.score or 0)) < 1e-5
    await store.close()
