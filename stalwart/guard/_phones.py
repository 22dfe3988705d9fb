"""Phone numbers in national and international formats, checked by Google's libphonenumber.

One loose regex proposes digit runs with phone punctuation; each is then judged by its shape,
by what stands before it, and by ``phonenumbers`` (length and prefix rules of the candidate
regions). Dates, versions, IPs, amounts, order ids and timestamps are turned away by shape and
by the words before them, not by a list of values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from stalwart.guard._secrets import Span

__all__ = ["GLOBAL_REGIONS", "PhoneRecognizer"]

# Regions tried after the configured ones, most-written first. A national number (no ``+``) is a
# phone when one of them accepts it and its shape is a phone's shape (see ``_national_shape``).
GLOBAL_REGIONS: tuple[str, ...] = (
    "US", "GB", "DE", "FR", "IN", "JP", "AU", "ES", "IT", "BR", "CN", "CA", "NL", "MX", "KR",
    "IE", "CH", "AT", "BE", "SE", "PL", "ZA", "NG", "SG", "NZ", "PT", "RU", "TR", "AE", "PH",
)  # fmt: skip

_CAND = re.compile(
    r"(?:(?<=[,;|])(?=\+)|(?<![\w@#$€£¥%/\\.,+\-]))"  # not glued to a word, an id, an amount or a path
    r"(?:\+|\b00)?\s?(?:\(\s?\+?\d{1,5}\s?\)\s?)?\d[\d().\-/ \u00a0]{4,24}\d"
    r"(?![\w@%/\\]|[.,:]\d|-\d)"
)
_DATE = re.compile(r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2}))$")
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_NANP = re.compile(r"^(?:\+?1[\s.\-]?)?(?:\(\d{3}\)|\d{3})[\s.\-]?\d{3}[\s.\-]?\d{4}$")
_SSN_SHAPE = re.compile(r"^\d{3}([ .\-])\d{2}\1\d{4}$")

# Words just before a number that make it something else, and words that make it a phone.
_NOT_PHONE = frozenset(
    [
        "order",
        "invoice",
        "inv",
        "ref",
        "reference",
        "tracking",
        "ticket",
        "case",
        "id",
        "no",
        "nr",
        "num",
        "acct",
        "account",
        "iban",
        "card",
        "sku",
        "serial",
        "version",
        "ver",
        "build",
        "release",
        "isbn",
        "zip",
        "postcode",
        "plz",
        "ssn",
        "sin",
        "nhs",
        "tax",
        "vat",
        "amount",
        "total",
        "price",
        "balance",
        "po",
        "pin",
        "otp",
        "code",
        "item",
        "part",
        "model",
        "batch",
        "lot",
        "policy",
        "claim",
        "member",
        "transaction",
        "txn",
        "confirmation",
        "booking",
        "flight",
        "passport",
        "license",
        "licence",
        "routing",
        "sort",
        "bic",
        "swift",
        "port",
        "pid",
        "uid",
        "uuid",
        "hash",
        "commit",
        "issue",
        "pr",
        "step",
        "#",
    ]
)
_PHONE_CUE = frozenset(
    ["phone", "tel", "telephone", "mobile", "mob", "cell", "cellphone", "fax", "call", "calls", "called", "ring", "text", "sms", "whatsapp", "signal", "contact", "reach", "dial", "hotline", "landline", "number", "numbers", "nummer", "telefon", "handy", "téléphone", "portable", "teléfono", "móvil", "telefono", "cellulare", "tel.", "ph", "ph.", "mob.", "t", "m", "電話", "携帯", "手机", "电话", "☎", "📞", "llamar", "llame", "llama", "appeler", "appelez", "anrufen", "chiamare", "chiama", "ligar", "liga", "telemóvel", "telemovel", "tlf", "tfno", "número", "numero", "numéro", "rufnummer", "mobil", "telefone", "celular"]
)
_CJK_CUES = ("電話", "携帯", "手机", "电话", "연락처", "전화", "тел", "телефон", "هاتف", "الهاتف")


def _context(before: str) -> tuple[bool, bool]:
    """(a phone cue among the last four words, an id/amount word right before)."""
    words = [w.strip(".,:;!?()[]\"'=-") or w for w in before.lower().split()[-6:]]
    cue = any(w in _PHONE_CUE or w.rstrip(".:") in _PHONE_CUE for w in words) or any(
        c in before[-16:].lower() for c in _CJK_CUES
    )
    last = words[-1] if words else ""
    not_phone = (
        last in _NOT_PHONE
        or last.endswith("#")
        or (len(words) > 1 and words[-2] in _NOT_PHONE and last in ("no", "nr", "number", "id", "#", "num"))
    )
    return cue, not_phone


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


class PhoneRecognizer:
    """Finds phone numbers. ``regions`` (ISO country codes) are tried first, then
    :data:`GLOBAL_REGIONS`. Needs the ``phonenumbers`` package (a dependency of Presidio)."""

    entity = "PHONE"

    def __init__(self, regions: Iterable[str] = ("US",), *, score: float = 0.9) -> None:
        import phonenumbers

        self._pn = phonenumbers
        ordered: list[str] = []
        for r in (*regions, *GLOBAL_REGIONS):
            if r not in ordered:
                ordered.append(r)
        self.regions = tuple(ordered)
        self.score = score
        self._cache: dict[tuple[str, tuple[str, ...]], bool] = {}

    def find(self, text: str, lowered: str | None = None) -> list[Span]:
        out: list[Span] = []
        for m in _CAND.finditer(text):
            start, end = m.span()
            raw = m.group()
            # trailing and leading separators are not part of the number
            while raw and raw[-1] in " \u00a0.-/(":
                raw, end = raw[:-1], end - 1
            lead = len(raw) - len(raw.lstrip(" \u00a0"))
            raw, start = raw[lead:], start + lead
            if raw.startswith("(") and ")" not in raw:
                raw, start = raw[1:], start + 1
            if raw.endswith(")") and "(" not in raw:
                raw, end = raw[:-1], end - 1
            if self._is_phone(text, start, raw):
                out.append(Span(self.entity, start, end, self.score))
        return out

    # -- judgement ----------------------------------------------------------------------------------
    def _is_phone(self, text: str, start: int, raw: str) -> bool:
        digits = _digits(raw)
        if not 7 <= len(digits) <= 15:
            return False
        if "  " in raw or _DATE.match(raw) or _IP.match(raw) or _SSN_SHAPE.match(raw):
            return False
        cue, not_phone = _context(text[max(0, start - 40) : start])
        if not_phone and not cue:
            return False
        seps = re.findall(r"[^\d+()]+", raw.strip("+()"))
        if any(len(s.strip()) > 1 for s in seps):
            return False  # "12 - 34" or "1./2": not how numbers are written
        dotted = "." in raw
        if dotted:
            groups = re.split(r"[.\s]+", raw.strip("+() "))
            if len(groups) < 3 or any(len(_digits(g)) < 2 for g in groups[1:]):
                return False  # versions (1.2.3, 10.0.19041.1) and decimals
        if raw.startswith(("+", "00")):
            return self._international(raw)
        bare = not seps and "(" not in raw
        if bare and not cue:
            return False  # an unformatted digit run is a phone only where the text says so
        if _NANP.match(raw):
            return self._possible(digits, ("US", "CA"))
        if re.match(r"^\(\d{2,5}\)[\s.\-]?\d", raw):
            return self._possible(digits, self.regions)  # an area code in brackets: (11) 91234-5678
        if digits.startswith("0") or cue:
            return self._possible(digits, self.regions)
        return False

    def _international(self, raw: str) -> bool:
        pn = self._pn
        number = "+" + _digits(raw)[2:] if raw.startswith("00") else raw
        try:
            parsed = pn.parse(number, None)
        except pn.NumberParseException:
            return False
        return bool(pn.is_possible_number(parsed))

    def _possible(self, digits: str, regions: tuple[str, ...]) -> bool:
        key = (digits, regions)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._possible_in(digits, regions)
            if len(self._cache) > 20_000:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _possible_in(self, digits: str, regions: tuple[str, ...]) -> bool:
        pn = self._pn
        for region in regions:
            try:
                parsed = pn.parse(digits, region)
            except pn.NumberParseException:
                continue
            if pn.is_possible_number(parsed):
                return True
        return False
