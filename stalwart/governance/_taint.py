"""Provenance of the values a run handles: which tool arguments derive from untrusted content.

Pure logic, no I/O. A :class:`ProvenanceIndex` holds two sets of normalized values:

- *trusted*: the run's input from its authenticated caller, text the developer wrote (system and
  developer prompts, template text) and values a tool declares trusted;
- *untrusted*: what came back from the world (tool and MCP results, model outputs including
  structured fields and tool-call arguments, retrieved memory, signals), each with the step that
  first produced it.

An argument is *tainted* when one of its values derives from untrusted content (it equals an
untrusted value or token, or is a long enough substring of untrusted text) and does not appear in
the trusted set. A value in neither set (a constant the workflow computed) is not tainted: it did
not come from anything an attacker could write.

Normalization: Unicode NFKC, case-folded, whitespace collapsed; numbers in one canonical form, so
``"12000"`` and ``12000`` are the same value, and a money amount written ``$120.00`` also stands for
``12000`` (cents). Strings are also split into tokens (emails, URLs, ids, words without the
punctuation around them), so an address the workflow extracted from free text is still traced.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_TOKEN", "MIN_SUBSTRING", "ProvenanceIndex", "TaintSource", "digest", "normalize_value", "value_tokens"]

MIN_SUBSTRING = 6
"""An argument at least this long (normalized) that occurs inside untrusted text derives from it."""

MAX_TOKEN = 256
"""Longer runs without a separator are not indexed as tokens (they stay searchable as text): the
token patterns then never scan more than this many characters from one start, whatever a tool
returns."""

_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_GROUPED = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_MONEY = re.compile(r"[$€£]\s?(\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?)(?![\d.])")
_GROUPED_IN = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])")
_TOKEN = re.compile(r"[^\s\"'<>()\[\]{},;|`]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'<>()\[\]{}`|]+", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{[A-Z][A-Z0-9_]*_\d+\}\}")
_EDGE = ".,:;!?*_-'\"`"


@dataclass(frozen=True, order=True)
class TaintSource:
    """The journaled step that first produced an untrusted value."""

    seq: int
    kind: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "name": self.name}


def _canon_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def normalize_value(value: Any) -> str | None:
    """One scalar in its comparison form (``None`` for booleans, ``None`` and empty strings: they
    carry no identity an attacker could choose)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _canon_number(value)
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", str(value))).strip().casefold()
    if not text:
        return None
    if _NUMBER.fullmatch(text) or _GROUPED.fullmatch(text):
        return _canon_number(float(text.replace(",", "")))
    return text


def value_tokens(text: str) -> set[str]:
    """The identifiers inside a normalized string: emails, URLs, numbers (and a money amount's
    cents) and each whitespace-separated token with the punctuation around it trimmed."""
    out: set[str] = set()
    for m in _MONEY.finditer(text):
        amount = float(m.group(1).replace(",", ""))
        out.add(_canon_number(amount))
        out.add(_canon_number(round(amount * 100)))
    out.update(_canon_number(float(m.group(0).replace(",", ""))) for m in _GROUPED_IN.finditer(text))
    for raw in _TOKEN.findall(text):
        if len(raw) > MAX_TOKEN:  # an attacker's megabyte without a space is no identifier
            continue
        if "@" in raw:
            out.update(m.group(0).rstrip(_EDGE) for m in _EMAIL.finditer(raw))
        if "://" in raw:
            out.update(m.group(0).rstrip(_EDGE) for m in _URL.finditer(raw))
        tok = raw.strip(_EDGE).lstrip("$€£")
        if not tok:
            continue
        norm = normalize_value(tok)
        if norm:
            out.add(norm)
    out.discard("")
    return out


def digest(norm: str) -> str:
    """A normalized value's short digest: how trusted prompt tokens are kept in a journal without
    keeping the values themselves (a system prompt may hold an address)."""
    return hashlib.sha256(norm.encode()).hexdigest()[:24]


_IDENT = re.compile(r"[\d@/:.]")
_MAX_PROMPT_DIGESTS = 512


def prompt_digests(texts: list[str]) -> list[str]:
    """The digests of the identifier-like tokens (with a digit, ``@``, ``/``, ``:`` or ``.``) of
    developer-written prompt text: what the developer told the model is trusted. Digests, so that no
    value a prompt holds is copied into the journal."""
    out: set[str] = set()
    for text in texts:
        norm = normalize_value(text)
        if norm:
            out.update(digest(t) for t in value_tokens(norm) if _IDENT.search(t))
    return sorted(out)[:_MAX_PROMPT_DIGESTS]


def _scalars(value: Any, depth: int = 0) -> Iterator[Any]:
    """Every scalar inside a JSON-like value (keys included); a string that holds a JSON document
    (a tool message, a tool call's arguments) is read as that document too."""
    if depth > 32:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield k
            yield from _scalars(v, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _scalars(v, depth + 1)
    else:
        yield value
        if isinstance(value, str) and value[:1] in ("{", "[") and len(value) < 4_000_000:
            try:
                inner = json.loads(value)
            except ValueError:
                return
            yield from _scalars(inner, depth + 1)


class ProvenanceIndex:
    """Trusted and untrusted values seen by one run (rebuilt from its journal on replay)."""

    def __init__(self, min_substring: int = MIN_SUBSTRING) -> None:
        self.min_substring = min_substring
        self._trusted: set[str] = set()
        self._trusted_digests: set[str] = set()
        self._untrusted: dict[str, TaintSource] = {}
        self._texts: list[tuple[str, TaintSource]] = []

    def __repr__(self) -> str:
        return f"ProvenanceIndex({len(self._trusted)} trusted, {len(self._untrusted)} untrusted values)"

    # -- recording -------------------------------------------------------------------------------
    def trust(self, value: Any, *, except_: Iterable[str] = ()) -> None:
        """Add every scalar (and every token of every string) of ``value`` to the trusted set, but
        for the scalars whose normalized form is in ``except_`` (values a parent run passed on from
        untrusted content: see :meth:`untrusted_scalars`)."""
        skip = set(except_)
        for s in _scalars(value):
            norm = normalize_value(s)
            if norm is None or norm in skip:
                continue
            self._trusted.add(norm)
            if isinstance(s, str):
                self._trusted.update(value_tokens(norm))

    def trust_digests(self, digests: Iterable[str]) -> None:
        """Trust the values whose :func:`digest` is given (tokens of developer-written prompts)."""
        self._trusted_digests.update(str(d) for d in digests)

    def observe(self, value: Any, source: TaintSource) -> None:
        """Add every scalar, token and text of ``value`` as untrusted, produced by ``source``
        (the earliest source is kept, so the index is the same whatever order steps are read in)."""
        for s in _scalars(value):
            norm = normalize_value(s)
            if norm is None:
                continue
            self._mark(norm, source)
            if isinstance(s, str):
                for tok in value_tokens(norm):
                    self._mark(tok, source)
                if len(norm) >= self.min_substring:
                    self._texts.append((norm, source))

    def _mark(self, norm: str, source: TaintSource) -> None:
        prior = self._untrusted.get(norm)
        if prior is None or source < prior:
            self._untrusted[norm] = source

    # -- questions -------------------------------------------------------------------------------
    def untrusted_scalars(self, value: Any) -> dict[str, TaintSource]:
        """The scalars of ``value`` (normalized) that are tainted here, each with its source: what a
        run hands a child run as input must not become trusted there."""
        out: dict[str, TaintSource] = {}
        for s in _scalars(value):
            if isinstance(s, Mapping | list):
                continue
            norm = normalize_value(s)
            if norm is None or norm in out:
                continue
            found = self._scalar_taint(s, None)
            if found is not None:
                out[norm] = found
        return out

    def is_trusted(self, value: Any) -> bool:
        norm = normalize_value(value)
        if norm is None:
            return False
        return norm in self._trusted or (bool(self._trusted_digests) and digest(norm) in self._trusted_digests)

    def origin(self, value: Any) -> TaintSource | None:
        """The earliest untrusted step ``value`` derives from, or ``None``."""
        norm = normalize_value(value)
        if norm is None:
            return None
        found = self._untrusted.get(norm)
        if len(norm) >= self.min_substring:
            for text, source in self._texts:
                if (found is None or source < found) and norm in text:
                    found = source
        return found

    def taint_of(self, value: Any, resolve: Callable[[str], str | None] | None = None) -> TaintSource | None:
        """Why ``value`` (any JSON-like value) is tainted: the untrusted step one of its scalars
        derives from, or ``None`` when every scalar is trusted or derives from nothing untrusted.

        ``resolve`` maps a ``{{EMAIL_1}}``-style placeholder to the raw value it stands for: a
        placeholder is trusted when its value is, and tainted when either form is untrusted."""
        worst: TaintSource | None = None
        for s in _scalars(value):
            if isinstance(s, Mapping | list):
                continue
            found = self._scalar_taint(s, resolve)
            if found is not None and (worst is None or found < worst):
                worst = found
        return worst

    def _scalar_taint(self, s: Any, resolve: Callable[[str], str | None] | None) -> TaintSource | None:
        forms = [s]
        if isinstance(s, str) and resolve is not None and _PLACEHOLDER.search(s):
            raw = _PLACEHOLDER.sub(lambda m: resolve(m.group(0)) or m.group(0), s)
            if raw != s:
                forms.append(raw)
        if any(self.is_trusted(f) for f in forms):
            return None
        found = [o for o in (self.origin(f) for f in forms) if o is not None]
        return min(found) if found else None

    def tainted(
        self,
        args: Mapping[str, Any],
        guarded: Iterable[str],
        *,
        allowed: Mapping[str, Iterable[Any]] | None = None,
        resolve: Callable[[str], str | None] | None = None,
    ) -> dict[str, TaintSource]:
        """The guarded arguments of a call that are tainted, each with its untrusted source.

        ``allowed`` holds, per argument, values the developer declared trusted for it."""
        out: dict[str, TaintSource] = {}
        for name in guarded:
            if name not in args:
                continue
            ok = {normalize_value(v) for v in (allowed or {}).get(name, ())}
            value = args[name]
            if normalize_value(value) in ok - {None}:
                continue
            found = self.taint_of(value, resolve)
            if found is not None:
                out[name] = found
        return out
