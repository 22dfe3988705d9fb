"""Prompt-injection detection in layers: normalisation, rules, a trained classifier, and an
optional external classifier. Returns a :class:`Verdict`; the engine decides what to raise.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from stalwart.errors import InjectionBlocked
from stalwart.guard._classifier import MODEL_PATH, InjectionClassifier, NgramClassifier
from stalwart.guard._normalize import views
from stalwart.guard._rules import RuleHit, combine, match_rules
from stalwart.guard._types import Action, Source, Verdict

__all__ = ["InjectionDetector", "Thresholds", "enforce", "windows"]

_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score at or above ``flag`` -> flag (the run goes to review); at or above ``block`` -> block."""

    flag: float = 0.5
    block: float = 0.85


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "user": Thresholds(0.5, 0.9),
    "tool": Thresholds(0.5, 0.85),
    "model": Thresholds(0.5, 0.85),
}


def windows(text: str, size: int = 400) -> list[str]:
    """Split text into pieces of about ``size`` characters along lines and sentences, so that
    an instruction buried in a long document is scored on its own and not diluted."""
    if len(text) <= size:
        return [text]
    pieces: list[str] = []
    for line in text.splitlines():
        if len(line) <= size:
            pieces.append(line)
            continue
        for sent in _SENTENCE.split(line):
            while len(sent) > size:
                cut = sent.rfind(" ", size // 2, size)
                cut = cut if cut > 0 else size
                pieces.append(sent[:cut])
                sent = sent[cut:]
            pieces.append(sent)
    out: list[str] = []
    cur = ""
    for p in pieces:
        if not p.strip():
            continue
        if cur and len(cur) + len(p) + 1 > size:
            out.append(cur)
            # Overlap by one piece so a payload split across the boundary is seen whole once.
            cur = p if len(p) > size // 2 else (pieces_tail(cur, size // 2) + " " + p)
        else:
            cur = f"{cur} {p}" if cur else p
    if cur:
        out.append(cur)
    return out


def pieces_tail(s: str, n: int) -> str:
    if len(s) <= n:
        return s
    cut = s.find(" ", len(s) - n)
    return s[cut + 1 :] if cut >= 0 else s[-n:]


class InjectionDetector:
    """Scores untrusted text for prompt injection.

    ``classifier`` defaults to the n-gram model shipped in the repo (loaded on first use);
    ``external`` is an optional :class:`InjectionClassifier` whose score is combined with ours
    (max), for operators who run a larger model. ``rules=False`` or ``classifier=False``
    switch a layer off (for evaluation).
    """

    def __init__(
        self,
        *,
        classifier: InjectionClassifier | bool | None = None,
        external: InjectionClassifier | Sequence[InjectionClassifier] | None = None,
        rules: bool = True,
        thresholds: dict[str, Thresholds] | None = None,
        window: int = 240,
    ) -> None:
        self._classifier: InjectionClassifier | None = None
        self._use_classifier = classifier is not False
        if classifier is not None and not isinstance(classifier, bool):
            self._classifier = classifier
        if external is None:
            self._external: tuple[InjectionClassifier, ...] = ()
        elif isinstance(external, InjectionClassifier):
            self._external = (external,)
        else:
            self._external = tuple(external)
        self._rules = rules
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        self._window = window
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the shipped classifier now (otherwise done on first scan)."""
        if self._use_classifier and self._classifier is None:
            with self._lock:
                if self._classifier is None:
                    self._classifier = NgramClassifier.load(MODEL_PATH)

    @property
    def classifier(self) -> InjectionClassifier | None:
        self.load()
        return self._classifier

    def score(self, text: str) -> tuple[float, tuple[str, ...]]:
        """``(score, reasons)`` for one text, before thresholds."""
        if not text or not text.strip():
            return 0.0, ()
        vs = views(text)
        hits: list[RuleHit] = []
        reasons: list[str] = []
        if self._rules:
            for name, v in vs:
                hits.extend(match_rules(v, name))
            if any(name == "hidden" for name, _ in vs):
                hits.append(RuleHit("obfuscation.hidden_text", 0.5, "hidden"))
        rule_score = combine(hits)
        for h in sorted({(h.name, h.view) for h in hits}):
            reasons.append(f"rule:{h[0]}" + ("" if h[1] == "normalized" else f"@{h[1]}"))
        clf_score = 0.0
        clf_view = ""
        clf = self.classifier if self._use_classifier else None
        models = ((clf,) if clf is not None else ()) + self._external
        for model in models:
            for name, v in vs:
                for w in windows(v, self._window):
                    s = model.score(w)
                    if s > clf_score:
                        clf_score, clf_view = s, name
        if clf_score >= 0.5:
            reasons.append(
                f"classifier:{clf_score:.2f}" + ("" if clf_view == "normalized" else f"@{clf_view}")
            )
        # Alone, the classifier is damped: n-gram models are overconfident on short, odd texts.
        # With a rule as corroboration, the two combine as independent evidence.
        if rule_score >= 0.4 and clf_score >= 0.4:
            score = 1.0 - (1.0 - rule_score) * (1.0 - clf_score)
        else:
            score = max(rule_score, clf_score**1.5)
        return min(score, 0.999), tuple(reasons)

    def scan(self, text: str, source: Source = "tool") -> Verdict:
        score, reasons = self.score(text)
        t = self.thresholds.get(source, DEFAULT_THRESHOLDS["tool"])
        action: Action = "block" if score >= t.block else "flag" if score >= t.flag else "allow"
        return Verdict(action, round(score, 4), reasons, source)


def enforce(verdict: Verdict) -> Verdict:
    """Raise :class:`~stalwart.errors.InjectionBlocked` for a blocking verdict; else return it.

    The error names the rules that fired and the score, never the scanned text.
    """
    if verdict.action == "block":
        raise InjectionBlocked(
            f"prompt injection blocked in {verdict.source} text (score {verdict.score:.2f})",
            retryable=False,
            details={"score": verdict.score, "reasons": list(verdict.reasons), "source": verdict.source},
        )
    return verdict
