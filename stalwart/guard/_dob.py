"""Dates of birth: a date that follows a birth cue ("DOB", "date of birth", "born", "geboren",
"né le", "fecha de nacimiento", "data di nascita"...), in numeric or written-month form. A date
without such a cue is not personal data by itself and is left alone."""

from __future__ import annotations

import re

from stalwart.guard._secrets import RegexRecognizer, Span

__all__ = ["DOB_RECOGNIZER", "DobTableRecognizer"]

_MONTHS = (
    r"(?:jan(?:uary|uar|vier|\.)?|feb(?:ruary|ruar|\.)?|févr(?:ier)?|fevr(?:ier)?|mar(?:ch|\.)?|märz|mars|"
    r"apr(?:il|\.)?|avr(?:il)?|may|mai|jun(?:e|i|\.)?|juin|jul(?:y|i|\.)?|juil(?:let)?|aug(?:ust|\.)?|août|"
    r"sep(?:t(?:ember|embre)?)?\.?|oct(?:ober|obre|\.)?|okt(?:ober)?|nov(?:ember|embre|\.)?|"
    r"dec(?:ember|\.)?|dez(?:ember)?|déc(?:embre)?|"
    r"enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|"
    r"gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre)"
)
_DATE = (
    r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th|er|º|\.)?\s*(?:of\s+|de\s+|di\s+)?{_MONTHS}\.?,?\s*(?:de\s+|del\s+)?\d{{4}}"
    rf"|{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|\d{{1,2}}[-/ ]{_MONTHS}\.?[-/ ]\d{{2,4}}"
    rf"|\d{{4}}年\s?\d{{1,2}}月\s?\d{{1,2}}日)"
)
_CUE = (
    r"(?:d\.?\s?o\.?\s?b\.?|date\s+of\s+birth|birth\s?date|birthday|born(?:\s+on)?|b\.|"
    r"geb(?:oren|\.)?(?:\s+am)?|geburtsdatum|geburtstag|date\s+de\s+naissance|né(?:e)?\s+le|"
    r"fecha\s+de\s+nacimiento|nacid[oa]\s+el|data\s+di\s+nascita|nat[oa]\s+il|geboortedatum|"
    r"生年月日|出生日期)"
)

DOB_RECOGNIZER = RegexRecognizer(
    "DATE_OF_BIRTH",
    re.compile(rf"(?i)(?<!\w){_CUE}[^.;]{{0,32}}?(?<![\w/.\-])(?P<v>{_DATE})(?![\w/])"),
    0.96,
    (
        "dob",
        "d.o.b",
        "birth",
        "born",
        "b.",
        "geb",
        "naissance",
        "né",
        "nacimiento",
        "nacid",
        "nascita",
        "nato",
        "nata",
        "geboorte",
        "生年月日",
        "出生",
    ),
)


_HEADER_CUE = re.compile(rf"(?i)(?<!\w){_CUE}(?!\w)")
_ANY_DATE = re.compile(rf"(?i)(?<![\w/.\-]){_DATE}(?![\w/])")


class DobTableRecognizer:
    """Dates in the rows of a table whose header names a birth date ("acct | holder | dob"):
    every full date on a row below such a header line is taken as a date of birth."""

    entity = "DATE_OF_BIRTH"

    def find(self, text: str, lowered: str | None = None) -> list[Span]:
        low = lowered if lowered is not None else text.lower()
        if "dob" not in low and "birth" not in low and "geburt" not in low and "naissance" not in low:
            return []
        out: list[Span] = []
        header_end = -1
        pos = 0
        for line in text.splitlines(keepends=True):
            if header_end < 0:
                if any(sep in line for sep in ("|", ",", "\t", ";")) and _HEADER_CUE.search(line):
                    header_end = pos + len(line)
            else:
                for m in _ANY_DATE.finditer(line):
                    out.append(Span(self.entity, pos + m.start(), pos + m.end(), 0.9))
            pos += len(line)
        return out
