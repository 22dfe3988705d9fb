"""The shipped injection classifier: a logistic regression over hashed-free char and word n-grams.

Weights are plain JSON (``injection_model.json`` beside this file), produced by
``scripts/train_injection.py``. Inference is pure Python: a dict lookup per n-gram.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["InjectionClassifier", "NgramClassifier", "features", "MODEL_PATH"]

MODEL_PATH = Path(__file__).with_name("injection_model.json")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)


@runtime_checkable
class InjectionClassifier(Protocol):
    """A pluggable classifier: the probability in [0, 1] that ``text`` carries an injection.

    ``text`` is already normalised. Implementations must be safe to call from several threads
    and must not reach the network unless their operator configured it to.
    """

    name: str

    def score(self, text: str) -> float: ...


def features(text: str, char_n: tuple[int, int] = (3, 5), word_n: tuple[int, int] = (1, 2)) -> Counter[str]:
    """The n-gram counts both training and inference use (lower-cased, whitespace collapsed)."""
    low = " ".join(text.lower().split())
    feats: Counter[str] = Counter()
    padded = f" {low} "
    for n in range(char_n[0], char_n[1] + 1):
        for i in range(len(padded) - n + 1):
            feats["c" + padded[i : i + n]] += 1
    words = _TOKEN.findall(low)
    for n in range(word_n[0], word_n[1] + 1):
        for i in range(len(words) - n + 1):
            feats["w" + " ".join(words[i : i + n])] += 1
    return feats


@dataclass
class NgramClassifier:
    """Linear model over L2-normalised, sublinear n-gram counts."""

    weights: dict[str, float]
    bias: float
    char_n: tuple[int, int] = (3, 5)
    word_n: tuple[int, int] = (1, 2)
    name: str = "ngram-logreg"
    version: str = ""

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> NgramClassifier:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            weights=data["weights"],
            bias=float(data["bias"]),
            char_n=tuple(data["char_n"]),  # type: ignore[arg-type]
            word_n=tuple(data["word_n"]),  # type: ignore[arg-type]
            version=str(data.get("version", "")),
        )

    def decision(self, text: str) -> float:
        feats = features(text, self.char_n, self.word_n)
        if not feats:
            return self.bias
        w = self.weights
        total = 0.0
        norm = 0.0
        for f, c in feats.items():
            v = 1.0 + math.log(c)
            norm += v * v
            wf = w.get(f)
            if wf is not None:
                total += wf * v
        return self.bias + total / math.sqrt(norm)

    def score(self, text: str) -> float:
        z = self.decision(text)
        if z < -30:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))
