"""US Social Security numbers written with dashes, spaces, dots or none, with the SSA's validity
rules: area not 000, 666 or 9xx; group not 00; serial not 0000. An undelimited nine-digit run
counts only after an SSN cue ("SSN", "social security")."""

from __future__ import annotations

import re

from stalwart.guard._secrets import RegexRecognizer

__all__ = ["SSN_RECOGNIZERS", "valid_ssn"]


def valid_ssn(value: str) -> bool:
    d = "".join(c for c in value if c.isdigit())
    if len(d) != 9:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    return not (area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000")


SSN_RECOGNIZERS: tuple[RegexRecognizer, ...] = (
    # 123-45-6789, 123 45 6789, 123.45.6789: one separator used throughout
    RegexRecognizer(
        "SSN",
        re.compile(r"(?<![\w.\-+/])\d{3}([ .\-])\d{2}\1\d{4}(?![\w\-]|[.,/]\d)"),
        0.97,
        (),
        valid_ssn,
    ),
    RegexRecognizer(
        "SSN",
        re.compile(
            r"(?i)\b(?:ssn|ss#|ss\s?no\.?|social[\s-]security(?:[\s-](?:number|no\.?|#))?)"
            r"\W{0,8}(?:(?:is|was|=|number)\W{0,4})?(?P<v>\d{9}|\d{3}\s?[\-.]\s?\d{2}\s?[\-.]\s?\d{4})(?!\d)"
        ),
        0.98,
        ("ssn", "ss#", "ss no", "social"),
        valid_ssn,
    ),
)
