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

__all__ = ["MODEL_PATH", "InjectionClassifier", "NgramClassifier", "features"]

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

    def __post_init__(self) -> None:
        # Split by feature kind so inference can look up raw n-grams without building prefixed
        # strings; the arithmetic is identical to scoring ``features(text)``.
        self._char = {k[1:]: v for k, v in self.weights.items() if k[:1] == "c"}
        self._word = {k[1:]: v for k, v in self.weights.items() if k[:1] == "w"}

    def decision(self, text: str) -> float:
        low = " ".join(text.lower().split())
        padded = f" {low} "
        grams: list[str] = []
        for n in range(self.char_n[0], self.char_n[1] + 1):
            grams.extend([padded[i : i + n] for i in range(len(padded) - n + 1)])
        words = _TOKEN.findall(low)
        wgrams: list[str] = []
        for n in range(self.word_n[0], self.word_n[1] + 1):
            wgrams.extend([" ".join(words[i : i + n]) for i in range(len(words) - n + 1)])
        total = 0.0
        norm = 0.0
        for counts, w in ((Counter(grams), self._char), (Counter(wgrams), self._word)):
            for f, c in counts.items():
                v = 1.0 if c == 1 else 1.0 + math.log(c)
                norm += v * v
                wf = w.get(f)
                if wf is not None:
                    total += wf * v
        if norm == 0.0:
            return self.bias
        return self.bias + total / math.sqrt(norm)

    def score(self, text: str) -> float:
        z = self.decision(text)
        if z < -30:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))
