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
_CITY = r"(?:[A-ZÀ-ÖØ-ÞĀ-Žİ][\w'’\-]*(?:[ \t]+[A-ZÀ-ÖØ-ÞĀ-Žİ][\w'’\-]*){0,3})"
_US_ZIP = r"\d{5}(?:-\d{4})?"
_UK_PC = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
_CA_PC = r"[A-Z]\d[A-Z]\s?\d[A-Z]\d"
_EU_PC = r"(?:[A-Z]{1,2}-)?\d{4,5}(?:\s?[A-Z]{2})?"
_TAIL = (
    rf"(?:,?\s+{_CITY}(?:,\s*|\s+){_STATE}\.?,?\s+(?:{_US_ZIP}|{_CA_PC})"  # Springfield, IL 62704
    rf"|,?\s+{_CITY},?\s+(?:{_UK_PC}|{_CA_PC})"  # London SW1A 2AA
    rf"|\n{_CITY},?\s+{_STATE}\.?\s+(?:{_US_ZIP}|{_CA_PC})"  # a second line: Toronto, ON M5V 2T6
    rf"|,?\s+{_CITY}\s+\d{{4}}(?!\d)"  # Cape Town 8001
    rf"|,\s*{_CITY}(?:\s+\d{{1,2}}(?!\d))?(?:,\s*{_STATE})?(?![\w]))"  # , Springfield / , Dublin 2
    rf"(?:,\s*{_CITY}(?:\s+\d{{6}})?){{0,2}}"  # district, city (Pudong, Shanghai 200120)
    rf"(?:,\s*[A-Z]\d{{2}}\s?[A-Z0-9]{{4}})?"  # Eircode
    rf"(?:[ \t,]+(?:\d{{6}}|\d{{3}}-\d{{4}})\b)?"  # PIN (India), 〒 code (Japan)
    rf"(?:[,\n]\s*(?:USA|US|United States|UK|United Kingdom|Canada|Australia|India|Japan|China|Ireland|"
    rf"South Africa|Mexico|Serbia|Greece|Germany|France|Spain|Italy|Portugal|Brazil|Poland|Russia|Turkey))?"
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
_UNIT_BEFORE = re.compile(r"(?i)\b(?:flat|unit|apt|apartment|suite|room|rm|ste)\.?\s*#?[\w\-]{1,6},?\s+$")
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
# Slavic, Nordic, Turkish, Japanese and Chinese forms; number-first Calle/Via; Eircodes
_INTL = re.compile(
    r"(?<![\w\-])(?:"
    r"(?:ul\.|ulica|pr\.|prospekt|nab\.|per\.|bul\.|al\.|pl\.)\s*[A-ZĄĆĘŁŃÓŚŹŻА-ЯЁ][\wąćęłńóśźżа-яё.\-]*(?:\s+[A-ZĄĆĘŁŃÓŚŹŻА-ЯЁ][\wąćęłńóśźżа-яё\-]*){0,2}"
    r"\s+\d{1,4}[a-zA-Z]?(?:/\d{1,4})?(?:,\s*(?:kv\.|m\.|lok\.|apt\.?)\s*\d{1,4})?"
    r"|[A-ZÅÄÖÆØ][\wåäöæø\-]*(?:gatan|gata|vägen|väg|gränd|gade|vej|veien|veg|gate|torget|torg|plads|tie|katu)"
    r"\s+\d{1,4}[a-zA-Z]?"
    r"|[A-ZÇĞİÖŞÜ][\wçğıöşü\-]*\s+(?:Cd\.|Cad\.|Caddesi|Sk\.|Sok\.|Sokak|Sokağı|Mah\.|Mahallesi|Blv\.|Bulvarı)"
    r"(?:\s+No\s*:\s*\d{1,5}[a-zA-Z]?)?"
    r"|\d{1,4}(?:-\d{1,4}){1,2}\s+[A-Z][a-z]+,\s*[A-Z][a-z]+-(?:ku|shi|cho|machi|gun)"
    r"|\d{1,4},?\s+(?:Calle|Avenida|Via|Viale|Rua|Carrer)\s+[A-Z][\w'’\-]*(?:\s+(?:de|del|la|di)?\s*[A-Z][\w'’\-]*){0,3}"
    r")"
    rf"(?:,?\s+(?:{_EU_PC}|\d{{3}}\s\d{{2}}|\d{{4}}-\d{{3}}|\d{{2}}-\d{{3}}|\d{{3}}-\d{{4}})?[ \t]*{_CITY}(?:[/,][ \t]*{_CITY})?)?"
    rf"(?:[ \t,]+(?:\d{{5,6}}|\d{{3}}-\d{{4}})\b)?"
)
_CN = re.compile(
    r"[\u4e00-\u9fff]{2,12}(?:路|街|道|大道|巷|胡同)[\u4e00-\u9fff\d]{0,8}\d+号(?:[\u4e00-\u9fff\d]{0,8}(?:室|楼|层))?"
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
                start = m.start()
                unit = _UNIT_BEFORE.search(text, max(0, start - 24), start)
                if unit is not None:
                    start = unit.start()  # "Flat 2, 17 Victoria Road"
                out.append(Span(self.entity, start, _rstrip(text, start, m.end()), score))

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
        for m in _INTL.finditer(text):
            add(m, self.score)
        if "号" in text:
            for m in _CN.finditer(text):
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
