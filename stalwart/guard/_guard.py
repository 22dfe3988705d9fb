"""The guard as one configured object, and the process-wide default behind ``sw.guard.scan``."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stalwart.guard._injection import InjectionDetector
from stalwart.guard._pii import PiiRedactor
from stalwart.guard._placeholders import PlaceholderMap
from stalwart.guard._types import Redaction, Source, Verdict

if TYPE_CHECKING:
    from stalwart.settings import GuardSettings

__all__ = ["Guard", "OutputScan", "configure", "default_guard", "redact", "scan", "scan_output"]


@dataclass(frozen=True, slots=True)
class OutputScan:
    """A model output after scanning: its injection verdict and the text with PII redacted."""

    verdict: Verdict
    redaction: Redaction

    @property
    def text(self) -> str:
        return self.redaction.text


class Guard:
    """PII redaction and injection scanning configured from :class:`GuardSettings`.

    Heavy parts (Presidio, the classifier) load on first use or on :meth:`load`.
    ``settings.pii=False`` / ``settings.injection=False`` switch a control off; they exist so that
    evaluations can prove a gate fails without it.
    """

    def __init__(
        self,
        settings: GuardSettings | None = None,
        *,
        redactor: PiiRedactor | None = None,
        detector: InjectionDetector | None = None,
    ) -> None:
        if settings is None:
            from stalwart.settings import GuardSettings

            settings = GuardSettings()
        self.settings = settings
        self.redactor = redactor or PiiRedactor(
            locale=self.settings.locale,
            custom_patterns=dict(self.settings.custom_patterns),
            names=self.settings.names,
        )
        self.detector = detector or InjectionDetector()

    def load(self) -> Guard:
        """Load Presidio, the NER model and the classifier now (e.g. at worker start), not on the
        first call."""
        if self.settings.pii:
            self.redactor.load()
        if self.settings.injection:
            self.detector.load()
        return self

    def redact(
        self, text: str, placeholders: PlaceholderMap | None = None, *, keep: Iterable[str] = ()
    ) -> Redaction:
        """Replace PII by ``{{TYPE_N}}`` placeholders. Pass a run's :class:`PlaceholderMap` to keep
        numbering stable across calls; ``keep`` lists raw values left in place."""
        if not self.settings.pii:
            return Redaction(text, [])
        return self.redactor.redact(text, placeholders, keep=keep)

    def scan(self, text: str, source: Source = "tool") -> Verdict:
        """Score ``text`` for prompt injection. ``source`` is where it came from."""
        if not self.settings.injection:
            return Verdict("allow", 0.0, ("injection scanning disabled",), source)
        return self.detector.scan(text, source)

    def scan_output(
        self, text: str, placeholders: PlaceholderMap | None = None, *, keep: Iterable[str] = ()
    ) -> OutputScan:
        """Scan a model's output before it leaves: injection verdict (source ``model``) and PII
        the caller is not entitled to redacted. ``keep`` lists values the caller may see."""
        return OutputScan(self.scan(text, "model"), self.redact(text, placeholders, keep=keep))


_default: Guard | None = None
_default_lock = threading.Lock()


def default_guard() -> Guard:
    """The process-wide guard, built from default settings on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Guard()
    return _default


def configure(settings: GuardSettings | None = None, **kwargs: object) -> Guard:
    """Replace the process-wide guard (``App`` calls this with its settings; tests reset with no
    arguments). Keyword arguments are passed to :class:`Guard`."""
    global _default
    with _default_lock:
        _default = Guard(settings, **kwargs)  # type: ignore[arg-type]
    return _default


def scan(text: str, source: Source = "tool") -> Verdict:
    """Score untrusted text for prompt injection with the default guard."""
    return default_guard().scan(text, source)


def redact(text: str, placeholders: PlaceholderMap | None = None) -> Redaction:
    """Redact PII with the default guard."""
    return default_guard().redact(text, placeholders)


def scan_output(text: str, placeholders: PlaceholderMap | None = None) -> OutputScan:
    """Scan a model output with the default guard."""
    return default_guard().scan_output(text, placeholders)
