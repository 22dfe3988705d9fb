"""Postal addresses by their structure, for the address styles of the US/UK/CA/AU, Germany and
its neighbours, France, Spain, Italy and Portugal/Brazil: a house number and a street word
("Street", "Ave", "-straße", "rue", "Calle", "Via"...), optionally a unit, then optionally a
city with a state and ZIP or a postcode. A PO box counts too.

No gazetteer: what is matched is the shape, so an unknown street in an unknown town is found as
readily as a famous one. A lower-case street ("12 main st") needs an address cue before it.
"""

from __future__ import annotations

import re

from stalwart.guard._secrets import Span

__all__ = ["AddressRecognizer"]

_SUFFIX = (
    r"(?:street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|terrace|ter|"
    r"place|pl|parkway|pkwy|highway|hwy|circle|cir|square|sq|trail|trl|alley|crescent|cres|close|row|"
    r"walk|loop|pike|plaza|mews|grove|gardens|gdns|hill|broadway|expressway|freeway|turnpike|"
    r"causeway|esplanade|parade|quay|wharf|green|park|rise|vale|view|hollow|run|path|pass|point|"
    r"ridge|bend|cove|crossing|heights|landing|manor|meadows?|estates?|commons?)"
)
_WORD = r"(?:[A-Z][\w'’\-]*|[A-Z]\.|\d+(?:st|nd|rd|th)|(?:de|del|la|las|los|of|the|von|van|du|des)\b)"
_UNIT = (
    r"(?:,?\s*(?:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building|#)\.?\s*#?\s*[\w\-]{1,6})"
)
_STATE = (
    r"(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|P[AR]|RI|S[CD]|"
    r"T[NX]|UT|V[AIT]|W[AIVY]|AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT|NSW|VIC|QLD|WA|SA|TAS|ACT)"
)
_CITY = r"(?:[A-Z][\w'’\-]*(?:[ \t]+[A-Z][\w'’\-]*){0,3})"
_US_ZIP = r"\d{5}(?:-\d{4})?"
_UK_PC = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
_CA_PC = r"[A-Z]\d[A-Z]\s?\d[A-Z]\d"
_EU_PC = r"(?:[A-Z]{1,2}-)?\d{4,5}(?:\s?[A-Z]{2})?"
_TAIL = (
    rf"(?:,?\s+{_CITY}(?:,\s*|\s+){_STATE}\.?,?\s+(?:{_US_ZIP}|{_CA_PC})"  # Springfield, IL 62704
    rf"|,?\s+{_CITY},?\s+(?:{_UK_PC}|{_CA_PC})"  # London SW1A 2AA
    rf"|,\s*{_CITY}(?:,\s*{_STATE})?(?![\w]))"  # , Springfield
    rf"(?:[ \t,]+(?:\d{{6}}|\d{{3}}-\d{{4}})\b)?"  # PIN (India), 〒 code (Japan)
    rf"(?:,\s*(?:USA|US|United States|UK|United Kingdom|Canada|Australia|India|Japan))?"
)
_EU_TAIL = rf"(?:,?\s+{_EU_PC}\s+{_CITY}|,\s*{_CITY})?"

_EN = re.compile(
    rf"(?<![\w\-/.])\d{{1,6}}[A-Za-z]?(?:-\d{{1,4}})?,?\s+(?:{_WORD}\s+){{0,4}}?(?i:{_SUFFIX})\b\.?"
    rf"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?(?i:{_UNIT})?(?:{_TAIL})?"
)
_EN_LOWER = re.compile(
    rf"(?i)\d{{1,6}}[a-z]?,?\s+(?:[a-z0-9][\w'’.\-]*\s+){{0,3}}?{_SUFFIX}\b\.?{_UNIT}?"
    rf"(?:,\s*[a-z][\w'’.\-]*(?:\s+[a-z][\w'’.\-]*){{0,2}})?(?:,?\s*{_STATE}\s+{_US_ZIP}|\s+{_US_ZIP})?"
)
_CUE = re.compile(
    r"(?i)\b(?:address|addr|live[sd]? (?:at|on)|ship(?:ped)? to|deliver(?:ed)? to|send (?:it )?to|"
    r"located at|moved to|mail(?:ed)? to|office (?:at|is at)|home at|stay(?:ing)? at|reside|"
    r"adresse|anschrift|dirección|direccion|indirizzo|endereço)\b(?:\s*(?:is|:|-))?[ \t]*"
)
_EN_START = re.compile(r"(?<![\w\-/.])\d{1,6}[A-Za-z]?(?:-\d{1,4})?,?\s+(?=[A-Z0-9(])")
_DE_HINT = re.compile(
    r"(?:straße|strasse|str\.|weg|platz|allee|gasse|ring|damm|ufer|chaussee|steig|pfad|markt|straat|"
    r"laan|plein|gracht|kade|singel|dijk)\s+\d"
)
_FR_HINT = re.compile(
    r"\d(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|allee|impasse|quai|route|"
    r"cours|square|passage|faubourg|rond-point|voie)\s"
)
_SOUTH_HINT = re.compile(
    r"\b(?:Calle|C/|Avenida|Avda\.|Av\.|Plaza|Pza\.|Paseo|Ronda|Carrer|Via|Viale|Piazza|Corso|Largo|Vicolo|"
    r"Rua|Travessa|Praça|Alameda|Rodovia)\s"
)
# Germany, Austria, Switzerland, the Netherlands: Hauptstraße 5, Kerkstraat 12a
_DE = re.compile(
    r"(?<![\w\-])[A-ZÄÖÜ][\wäöüßÄÖÜ\-]*(?:straße|strasse|str\.|weg|platz|allee|gasse|ring|damm|ufer|"
    r"chaussee|steig|pfad|markt|straat|laan|plein|gracht|kade|singel|dijk)"
    rf"\s+\d{{1,4}}\s?[a-zA-Z]?\b(?:\s*[/\-]\s*\d{{1,4}})?{_EU_TAIL}"
)
# France, Belgium: 12 rue de la Paix, 75002 Paris
_FR = re.compile(
    r"(?i)(?<![\w\-])\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|"
    r"allee|impasse|quai|route|cours|square|passage|faubourg|rond-point|voie)"
    r"[ \t]+(?:[\w'’\-]+[ \t]+){0,5}?[\w'’\-]+(?=[ \t]*(?:[,.;\n)]|$|\d{4,5}\b))(?-i:"
    rf"{_EU_TAIL})"
)
# Spain, Italy, Portugal, Brazil: Calle Mayor 5, 28013 Madrid; Via Roma 10; Rua Augusta, 100
_SOUTH = re.compile(
    r"(?<![\w\-])(?:Calle|C/|Avenida|Avda\.|Av\.|Plaza|Pza\.|Paseo|Ronda|Carrer|Via|Viale|Piazza|Corso|"
    r"Largo|Vicolo|Rua|Travessa|Praça|Alameda|Rodovia)"
    r"\s+(?:[\w'’.\-]+\s+){0,4}?[\w'’.\-]+,?\s+(?:n[º°o]\.?\s*)?\d{1,5}[A-Za-z]?\b"
    rf"(?:,?\s*\d{{1,2}}º?\s?[A-Za-z]?(?![\w]))?{_EU_TAIL}"
)
_PO_BOX = re.compile(
    r"(?i)\b(?:p\.?\s?o\.?\s?box|post office box|postfach|apartado|casella postale|boîte postale|bp)\s+\d{1,7}\b"
    rf"(?-i:{_TAIL}|{_EU_TAIL})?"
)


class AddressRecognizer:
    """Finds postal addresses by their structure (see the module docstring)."""

    entity = "ADDRESS"

    def __init__(self, *, score: float = 0.85) -> None:
        self.score = score

    def find(self, text: str, lowered: str | None = None) -> list[Span]:
        low = lowered if lowered is not None else text.lower()
        out: list[Span] = []

        def add(m: re.Match[str] | None, score: float) -> None:
            if m is not None:
                out.append(Span(self.entity, m.start(), _rstrip(text, m.start(), m.end()), score))

        # each pattern is tried only where its cheap anchor occurs
        for m in _EN_START.finditer(text):
            add(_EN.match(text, m.start()), self.score)
        if _DE_HINT.search(low):
            for m in _DE.finditer(text):
                add(m, self.score)
        if _FR_HINT.search(low):
            for m in _FR.finditer(text):
                add(m, self.score)
        if _SOUTH_HINT.search(text):
            for m in _SOUTH.finditer(text):
                add(m, self.score)
        if "box" in low or "post" in low or "apartado" in low or "bp " in low:
            for m in _PO_BOX.finditer(text):
                add(m, self.score)
        for cue in _CUE.finditer(text):
            add(_EN_LOWER.match(text, cue.end()), self.score - 0.05)
        return out


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in " ,.;:":
        end -= 1
    return end
