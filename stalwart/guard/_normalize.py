"""Text normalisation before injection scanning.

Attackers hide instructions from detectors rather than from models: compatibility forms, zero-width
and tag characters, variation-selector "emoji smuggling", homoglyphs, letter spacing and encoded
blobs. :func:`normalize` undoes the character-level tricks; :func:`views` adds the decoded and
re-folded variants that the rule layer and the classifier also look at.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from urllib.parse import unquote

__all__ = ["hidden_payloads", "normalize", "views"]

_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0]
    + list(range(0x200B, 0x2010))
    + list(range(0x202A, 0x202F))
    + list(range(0x2060, 0x2070))
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0000, 0xE0080))
    + list(range(0xE0100, 0xE01F0))
)

# Confusables that survive NFKC: Cyrillic and Greek letters that look Latin, plus a few Latin
# lookalikes. Folded only inside words made of Latin letters and confusables, so genuine
# Cyrillic or Greek prose (which contains non-confusable letters) is left as it is.
_CONFUSABLE = {
    "а": "a",
    "в": "b",
    "е": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "і": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "һ": "h",
    "ԛ": "q",
    "ԝ": "w",
    "ӏ": "l",
    "ɡ": "g",
    "ɑ": "a",
    "ı": "i",
    "ȷ": "j",
    "ʏ": "y",
    "ɩ": "i",
    "ℓ": "l",
    "А": "A",
    "В": "B",
    "Е": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "Х": "X",
    "І": "I",
    "Ј": "J",
    "Ѕ": "S",
    "Ү": "Y",
    "Ԁ": "D",
    "Ԛ": "Q",
    "Ԝ": "W",
    "α": "a",
    "β": "b",
    "ε": "e",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "γ": "y",
    "ω": "w",
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
}
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLE)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_SPACED = re.compile(r"(?<![\w])(?:[A-Za-z][.\-_*|/]){2,}[A-Za-z](?![\w])")
_SPACED_BLANK = re.compile(r"(?<![\w])(?:[A-Za-z] ){3,}[A-Za-z](?![\w])")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"(?:\\x|0x)?(?:[0-9a-fA-F]{2}[ :]?){8,}")
_ESCAPED = re.compile(r"(?:\\u[0-9a-fA-F]{4}|\\x[0-9a-fA-F]{2}){4,}")


def _fold_word(m: re.Match[str]) -> str:
    w = m.group(0)
    if w.isascii():
        return w
    if all(c.isascii() or c in _CONFUSABLE for c in w):
        return w.translate(_CONFUSABLE_TABLE)
    return w


def normalize(text: str) -> str:
    """NFKC, invisible characters removed, homoglyphs folded, letter-spaced words joined.

    Case is kept; callers that compare lower-case it themselves.
    """
    t = unicodedata.normalize("NFKC", text)
    if not t.isascii():
        t = t.translate(_INVISIBLE)
        t = _WORD.sub(_fold_word, t)
        t = unicodedata.normalize("NFKC", t)
    if "&" in t:
        t = html.unescape(t)
    t = _SPACED.sub(lambda m: re.sub(r"[.\-_*|/]", "", m.group(0)), t)
    return _SPACED_BLANK.sub(lambda m: m.group(0).replace(" ", ""), t)


def hidden_payloads(text: str) -> list[str]:
    """Text smuggled in Unicode tag characters or variation selectors, decoded."""
    if text.isascii():
        return []
    out: list[str] = []
    tags = "".join(chr(ord(c) - 0xE0000) for c in text if 0xE0020 <= ord(c) <= 0xE007E)
    if len(tags) >= 3:
        out.append(tags)
    data = bytearray()
    for c in text:
        o = ord(c)
        if 0xFE00 <= o <= 0xFE0F:
            data.append(o - 0xFE00)
        elif 0xE0100 <= o <= 0xE01EF:
            data.append(o - 0xE0100 + 16)
    if len(data) >= 4:
        decoded = data.decode("utf-8", "ignore")
        if _printable(decoded):
            out.append(decoded)
    return out


def _printable(s: str, ratio: float = 0.9) -> bool:
    if len(s) < 4:
        return False
    good = sum(1 for c in s if c.isprintable() or c in "\n\r\t")
    return good / len(s) >= ratio and sum(c.isalpha() for c in s) >= len(s) * 0.5


def _decode_blobs(text: str) -> list[str]:
    out: list[str] = []
    for m in _B64.finditer(text):
        blob = m.group(0)
        if blob.isdigit() or blob.isalpha() and (blob.islower() or blob.isupper()):
            continue
        raw = blob.replace("-", "+").replace("_", "/")
        raw += "=" * (-len(raw) % 4)
        try:
            dec = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if _printable(dec):
            out.append(dec)
    for m in _HEX.finditer(text):
        digits = re.sub(r"\\x|0x|[ :]", "", m.group(0))
        if len(digits) % 2:
            digits = digits[:-1]
        try:
            dec = bytes.fromhex(digits).decode("utf-8")
        except ValueError:
            continue
        if _printable(dec):
            out.append(dec)
    for m in _ESCAPED.finditer(text):
        try:
            dec = codecs.decode(m.group(0), "unicode_escape")
        except UnicodeDecodeError:
            continue
        if _printable(dec):
            out.append(dec)
    if "%" in text:
        dec = unquote(text)
        if dec != text:
            out.append(dec)
    return out


def views(text: str, *, depth: int = 2) -> list[tuple[str, str]]:
    """``(name, text)`` variants to scan: the normalised text, hidden and decoded payloads
    (recursively, to ``depth``), and a rot13 reading. The first view is always ``normalized``.
    """
    base = normalize(text)
    out: list[tuple[str, str]] = [("normalized", base)]
    for p in hidden_payloads(text):
        out.append(("hidden", normalize(p)))
    pending = [base] + [v for _, v in out[1:]]
    for level in range(depth):
        found: list[str] = []
        for src in pending:
            for dec in _decode_blobs(src):
                nd = normalize(dec)
                out.append(("decoded", nd))
                found.append(nd)
        if not found:
            break
        pending = found
        del level
    return out


def rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def leet(text: str) -> str:
    return text.translate(_LEET)


def squash(text: str) -> str:
    """Lower-case letters only: defeats splitting a phrase with spaces, dots or markup."""
    return "".join(c for c in text.lower() if c.isalpha())
