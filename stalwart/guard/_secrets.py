"""Pattern recognizers Presidio lacks: API keys, tokens, private keys, configured identifiers.

They run as plain compiled regexes beside Presidio (faster, and no NLP artifacts needed). A pattern
with a group named ``v`` redacts only that group, so ``password=hunter22`` keeps its label.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from stalwart.errors import ConfigError

__all__ = ["SECRET_RECOGNIZERS", "RegexRecognizer", "Span", "custom_recognizers"]


@dataclass(frozen=True, slots=True)
class Span:
    type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class RegexRecognizer:
    """An entity type found by one regular expression."""

    entity: str
    pattern: re.Pattern[str]
    score: float = 0.95
    hints: tuple[str, ...] = ()
    """Lower-case substrings, one of which must occur for the regex to be tried (a cheap pre-check)."""
    validate: Callable[[str], bool] | None = None
    """A check on the matched value (e.g. a checksum); a match that fails it is dropped."""

    def find(self, text: str, lowered: str | None = None) -> list[Span]:
        if self.hints:
            low = lowered if lowered is not None else text.lower()
            if not any(h in low for h in self.hints):
                return []
        out = []
        for m in self.pattern.finditer(text):
            if "v" in self.pattern.groupindex and m.group("v") is not None:
                s, e = m.span("v")
            else:
                s, e = m.span()
            if e > s and (self.validate is None or self.validate(text[s:e])):
                out.append(Span(self.entity, s, e, self.score))
        return out


def _r(entity: str, pattern: str, score: float = 0.95, hints: tuple[str, ...] = ()) -> RegexRecognizer:
    return RegexRecognizer(entity, re.compile(pattern), score, hints)


def luhn_card(value: str) -> bool:
    """Luhn checksum and a known card prefix (Presidio's pattern misses Mastercard's 2-series)."""
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    head = "".join(map(str, digits[:2]))
    if not (head[0] in "456" or head in ("34", "37", "35", "36", "30", "38") or 22 <= int(head) <= 27):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _secret_like(value: str) -> bool:
    """A value that looks chosen as a secret: a digit, a symbol or mixed case ("required" is not)."""
    v = value.rstrip(".!?)")
    return (
        any(c.isdigit() for c in v)
        or any(not c.isalnum() for c in v)
        or (v != v.lower() and v != v.capitalize())
    )


def _obfuscated_email(value: str) -> bool:
    low = value.lower()
    return any(t in low for t in ("[at]", "(at)", "{at}", " dot ", "[dot]", "(dot)"))


CARD_RECOGNIZER = RegexRecognizer(
    "CREDIT_CARD", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), 0.95, (), luhn_card
)

SECRET_RECOGNIZERS: tuple[RegexRecognizer, ...] = (
    CARD_RECOGNIZER,
    _r(
        "PRIVATE_KEY",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        1.0,
        ("private key",),
    ),
    _r(
        "AWS_ACCESS_KEY",
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b",
        1.0,
        ("akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa", "abia", "acca"),
    ),
    _r(
        "AWS_SECRET_KEY",
        r"(?i)aws.{0,20}?(?:secret|private).{0,20}?['\"]?\s*[:=]\s*['\"]?(?P<v>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        1.0,
        ("aws",),
    ),
    _r(
        "GITHUB_TOKEN",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        1.0,
        ("gh", "github_pat_"),
    ),
    _r("SLACK_TOKEN", r"\bxox[abposr]-[A-Za-z0-9-]{10,250}", 1.0, ("xox",)),
    _r("API_KEY", r"\bsk-(?:proj-|ant-(?:api\d{2}-)?|svcacct-)?[A-Za-z0-9_-]{20,}", 0.95, ("sk-",)),
    _r("API_KEY", r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}\b", 1.0, ("_live_", "_test_")),
    _r("API_KEY", r"\bAIza[0-9A-Za-z_-]{35}\b", 1.0, ("aiza",)),
    _r("API_KEY", r"\bglpat-[A-Za-z0-9_-]{20,}\b", 1.0, ("glpat-",)),
    _r("API_KEY", r"\bhf_[A-Za-z0-9]{30,}\b", 0.95, ("hf_",)),
    _r("API_KEY", r"\bnpm_[A-Za-z0-9]{36}\b", 1.0, ("npm_",)),
    _r("JWT", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 1.0, ("eyj",)),
    _r("BEARER_TOKEN", r"(?i)\bbearer\s+(?P<v>[A-Za-z0-9._~+/=-]{16,})", 0.95, ("bearer",)),
    _r(
        "SECRET",
        r"(?i)\b(?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)"
        r"\b['\"]?\s*[:=]\s*['\"]?(?P<v>[^\s'\"`,;]{6,})",
        0.9,
        ("pass", "pwd", "secret", "key", "token"),
    ),
    _r("SECRET", r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,64}:(?P<v>[^\s:/@]{3,128})@[^\s/]+", 0.9, ("://",)),
    # an e-mail address at any domain, known top-level domain or not (name@host.example)
    _r(
        "EMAIL",
        r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b",
        0.9,
        ("@",),
    ),
    # a secret named a few words before its value: "the wifi password for the office is X",
    # "netflix pw = X", "pass=X", "password fallback: X"
    RegexRecognizer(
        "SECRET",
        re.compile(
            r"(?i)\b(?:password|passwd|passphrase|passcode|pass|pw|pwd|secret|app password|credentials?)\b"
            r"[^\n=:]{0,40}?(?:\bis\b|=|:)\s*['\"`“]?(?P<v>[^\s'\"`”,;]{6,})"
        ),
        0.85,
        ("pass", "pw", "secret", "credential"),
        _secret_like,
    ),
    # long random-looking tokens with a vendor prefix (webhook secrets, SendGrid, Bitbucket...)
    _r(
        "API_KEY", r"\b(?:whsec_|SG\.|ATBB|xapp-|shpat_|shpss_|sq0atp-|EAAC|ya29\.)[A-Za-z0-9._\-]{16,}", 0.95
    ),
    # "the password is hunter2", "token: 8f2c…", "PIN 4821"
    _r(
        "SECRET",
        r"(?i)\b(?:password|passwd|passcode|passphrase|pwd|secret|pin|token|api[_ -]?key)\s+(?:is|was|=|:)\s*"
        r"['\"`]?(?P<v>[^\s'\"`,;]{4,})",
        0.9,
        ("pass", "pwd", "secret", "pin", "token", "key"),
    ),
    _r(
        "SECRET",
        r"(?i)\b(?:token|pin|passcode)\b['\"]?\s*[:=]\s*['\"]?(?P<v>[^\s'\"`,;]{4,})",
        0.9,
        ("token", "pin", "passcode"),
    ),
    # e-mail addresses written to dodge scrapers: "jane dot doe at example dot com", "jane[at]example.com"
    RegexRecognizer(
        "EMAIL",
        re.compile(
            r"(?i)(?<![\w.])[a-z0-9][\w.+-]*(?:\s*(?:\[dot\]|\(dot\)|\s+dot\s+)\s*[\w+-]+)*"
            r"\s*(?:\[at\]|\(at\)|\{at\}|\s+at\s+)\s*[a-z0-9][\w-]*"
            r"(?:\s*(?:\[dot\]|\(dot\)|\{dot\}|\s+dot\s+|\.)\s*[a-z0-9][\w-]*)*"
            r"\s*(?:\[dot\]|\(dot\)|\{dot\}|\s+dot\s+|\.)\s*[a-z]{2,10}\b"
        ),
        0.9,
        ("[at]", "(at)", "{at}", " dot "),
        _obfuscated_email,
    ),
    _r("SECRET", r"(?i)\b(?:pin|pin code|passcode)\s+(?P<v>\d{4,8})\b", 0.9, ("pin", "passcode")),
)


def custom_recognizers(patterns: dict[str, str]) -> tuple[RegexRecognizer, ...]:
    """Recognizers for ``guard.custom_patterns`` (NAME -> regex), e.g. order or account numbers."""
    out = []
    for name, pattern in patterns.items():
        label = re.sub(r"[^A-Z0-9_]", "_", name.upper())
        try:
            out.append(RegexRecognizer(label, re.compile(pattern), 0.9))
        except re.error as exc:
            raise ConfigError(
                f"guard.custom_patterns[{name!r}] is not a valid regular expression: {exc}"
            ) from exc
    return tuple(out)
