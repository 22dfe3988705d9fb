"""PII detection and redaction, offline.

Presidio runs on the no-op NLP engine with pattern recognizers only (emails, cards, IBANs, IPs and
the national ids of the configured locale: country-specific recognizers fire on look-alike numbers
from other countries, ``UK_NHS`` scores 1.0 on a US phone number). Beside it run the guard's own
recognizers: phones (libphonenumber, every common region), SSNs with any separator, dates of
birth, postal addresses, person names (cues, a name table and spaCy's NER: ``_names.py``),
secrets and configured patterns. Placeholders are assigned here, in text order.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from stalwart.guard._addresses import AddressRecognizer
from stalwart.guard._dob import DOB_RECOGNIZER, DobTableRecognizer
from stalwart.guard._idnumbers import SSN_RECOGNIZERS
from stalwart.guard._names import NameRecognizer
from stalwart.guard._phones import PhoneRecognizer
from stalwart.guard._placeholders import PlaceholderMap
from stalwart.guard._secrets import SECRET_RECOGNIZERS, RegexRecognizer, Span, custom_recognizers
from stalwart.guard._types import Entity, Redaction

__all__ = ["LABELS", "LOCALE_RECOGNIZERS", "PiiRedactor"]

# Recognizers that hold for any locale. Checksummed or tightly shaped: low false-positive rates.
# Cards and US SSNs are found by the guard's own recognizers (_secrets.py, _idnumbers.py).
_COMMON = ("EmailRecognizer", "IbanRecognizer", "IpRecognizer", "CryptoRecognizer")

# locale (or its country part) -> (phone regions, country-specific Presidio recognizers)
LOCALE_RECOGNIZERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "US": (("US",), ("UsItinRecognizer",)),
    "GB": (("GB",), ("NhsRecognizer", "UkNinoRecognizer")),
    "CA": (("CA", "US"), ("CaSinRecognizer",)),
    "AU": (("AU",), ("AuTfnRecognizer", "AuMedicareRecognizer", "AuAbnRecognizer")),
    "IN": (("IN",), ("InAadhaarRecognizer", "InPanRecognizer")),
    "DE": (("DE",), ("DeTaxIdRecognizer",)),
    "ES": (("ES",), ("EsNifRecognizer", "EsNieRecognizer")),
    "IT": (("IT",), ("ItFiscalCodeRecognizer",)),
    "PL": (("PL",), ("PlPeselRecognizer",)),
    "FI": (("FI",), ("FiPersonalIdentityCodeRecognizer",)),
    "SE": (("SE",), ("SePersonnummerRecognizer",)),
    "SG": (("SG",), ("SgFinRecognizer",)),
    "KR": (("KR",), ("KrRrnRecognizer",)),
    "TR": (("TR",), ("TrNationalIdRecognizer",)),
    "TH": (("TH",), ("ThTninRecognizer",)),
    "ZA": (("ZA",), ("ZaIdNumberRecognizer",)),
    "NG": (("NG",), ("NgNinRecognizer",)),
    "FR": (("FR",), ()),
    "NL": (("NL",), ()),
    "BR": (("BR",), ()),
}

# Presidio entity type -> placeholder label
LABELS: dict[str, str] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "SG_NRIC_FIN": "SG_NRIC",
}

_IBAN_HINT = re.compile(r"[A-Za-z]{2}\s?\d{2}")
_IP_HINT = re.compile(r"\d\.\d|[0-9A-Fa-f]:[0-9A-Fa-f:]|::")

_lock = threading.Lock()
_silenced = False


def _silence_presidio() -> None:
    """Presidio logs every recognizer it loads and warns about missing languages; tldextract warns
    when it cannot fetch its suffix list. None of that is actionable for a guard that runs offline.
    """
    global _silenced
    if _silenced:
        return
    for name in ("presidio-analyzer", "presidio_analyzer", "tldextract", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _silenced = True


def _offline_tld_extractor() -> Any:
    import tldextract

    # No suffix-list URLs and no cache: the snapshot bundled with tldextract, never the network.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


def _locale_parts(locale: str) -> list[str]:
    out = []
    for part in locale.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        country = part.replace("-", "_").split("_")[-1].upper()
        if country == "UK":
            country = "GB"
        out.append(country)
    return out or ["US"]


class PiiRedactor:
    """Finds PII and replaces it with ``{{TYPE_N}}`` placeholders.

    ``locale`` is one locale (``en_US``) or several separated by commas (``en_GB,de_DE``).
    ``custom_patterns`` adds entity types: NAME -> regex. ``min_score`` drops weak matches.
    ``names`` finds person names (loads spaCy's English NER; ``False`` skips it). Presidio and
    the NER model are loaded on first use or by :meth:`load`, not at construction.
    """

    def __init__(
        self,
        *,
        locale: str = "en_US",
        custom_patterns: dict[str, str] | None = None,
        min_score: float = 0.4,
        secrets: bool = True,
        names: bool = True,
        extra: Iterable[RegexRecognizer] = (),
    ) -> None:
        self.locale = locale
        self.min_score = min_score
        self._countries = _locale_parts(locale)
        self._regex: tuple[RegexRecognizer, ...] = (
            (SECRET_RECOGNIZERS if secrets else ())
            + SSN_RECOGNIZERS
            + (DOB_RECOGNIZER,)
            + custom_recognizers(custom_patterns or {})
            + tuple(extra)
        )
        self._names = NameRecognizer() if names else None
        self._analyzer: Any = None
        self._others: tuple[Any, ...] = ()
        self._presidio_always: tuple[str, ...] = ()

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Build the Presidio analyzer now (otherwise done on first use)."""
        if self._analyzer is not None:
            return
        with _lock:
            if self._analyzer is None:
                regions: list[str] = []
                for c in self._countries:
                    regions.extend(r for r in LOCALE_RECOGNIZERS.get(c, ((c,), ()))[0] if r not in regions)
                others: list[Any] = [PhoneRecognizer(regions), AddressRecognizer(), DobTableRecognizer()]
                if self._names is not None:
                    self._names.load()
                    others.append(self._names)
                self._others = tuple(others)
                self._analyzer = self._build()

    def _build(self) -> Any:
        _silence_presidio()
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer import predefined_recognizers as pr
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        names: list[str] = list(_COMMON)
        for c in self._countries:
            names.extend(n for n in LOCALE_RECOGNIZERS.get(c, ((c,), ()))[1] if n not in names)
        registry = RecognizerRegistry(supported_languages=["en"])
        extractor = _offline_tld_extractor()
        for name in names:
            cls = getattr(pr, name)
            if name == "EmailRecognizer":
                cls = type("OfflineEmailRecognizer", (cls,), {"validate_result": _email_validator(extractor)})
            registry.add_recognizer(cls(supported_language="en"))
        always = {e for rec in registry.recognizers for e in rec.supported_entities}
        self._presidio_always = tuple(sorted(always - {"EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS"}))
        nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
        nlp.load()
        return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])

    # -- detection ------------------------------------------------------------------------------
    def find(self, text: str) -> list[Span]:
        """Non-overlapping PII spans in text order (labels already mapped)."""
        if not text:
            return []
        self.load()
        spans: list[Span] = []
        entities = self._presidio_entities(text)
        found = (
            self._analyzer.analyze(
                text=text, language="en", score_threshold=self.min_score, entities=entities
            )
            if entities
            else ()
        )
        for r in found:
            spans.append(Span(LABELS.get(r.entity_type, r.entity_type), r.start, r.end, float(r.score)))
        lowered = text.lower()
        for rec in self._regex:
            spans.extend(rec.find(text, lowered))
        for other in self._others:
            spans.extend(other.find(text, lowered))
        return _resolve(spans)

    def _presidio_entities(self, text: str) -> list[str]:
        """The Presidio entity types worth asking about: an e-mail needs an ``@``, an IBAN two
        capitals and two digits, an IP a dotted or colon-separated number (Presidio's own patterns
        are many times slower than these checks)."""
        out = list(self._presidio_always)
        if "@" in text:
            out.append("EMAIL_ADDRESS")
        if _IBAN_HINT.search(text):
            out.append("IBAN_CODE")
        if _IP_HINT.search(text):
            out.append("IP_ADDRESS")
        return out

    def redact(
        self,
        text: str,
        placeholders: PlaceholderMap | None = None,
        *,
        keep: Iterable[str] = (),
    ) -> Redaction:
        """Replace each PII value by its placeholder. ``keep`` lists raw values left in place
        (values the caller is entitled to see, e.g. in output scanning)."""
        pm = placeholders if placeholders is not None else PlaceholderMap()
        keep_set = set(keep)
        parts: list[str] = []
        entities: list[Entity] = []
        pos = 0
        for s in self.find(text):
            s = _trim(text, s)
            value = text[s.start : s.end]
            if value in keep_set or value.startswith("{{"):
                continue
            ph = pm.placeholder(s.type, value)
            parts.append(text[pos : s.start])
            parts.append(ph)
            entities.append(Entity(s.type, s.start, s.end, round(s.score, 3), ph, value))
            pos = s.end
        parts.append(text[pos:])
        return Redaction("".join(parts), entities)


def _email_validator(extractor: Any) -> Any:
    def validate_result(self: Any, pattern_text: str) -> bool:
        return bool(extractor(pattern_text).fqdn)

    return validate_result


def _trim(text: str, s: Span) -> Span:
    """Drop an unbalanced bracket at either end ("(020 7946 0147" is the number without "("),
    so the same value always gets the same placeholder."""
    start, end = s.start, s.end
    value = text[start:end]
    if value[:1] in "([" and not any(c in value for c in ")]"):
        start += 1
    elif value[-1:] in ")]" and not any(c in value for c in "(["):
        end -= 1
    return s if (start, end) == (s.start, s.end) else Span(s.type, start, end, s.score)


def _resolve(spans: list[Span]) -> list[Span]:
    """Keep the best of overlapping spans: highest score, then longest, then earliest."""
    starts: list[int] = []  # chosen spans, sorted by start; they never overlap
    chosen: list[Span] = []
    for s in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        i = bisect.bisect_left(starts, s.start)
        if i > 0 and chosen[i - 1].end > s.start:
            continue
        if i < len(chosen) and chosen[i].start < s.end:
            continue
        starts.insert(i, s.start)
        chosen.insert(i, s)
    return chosen
