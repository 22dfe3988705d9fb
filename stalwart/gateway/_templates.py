"""Versioned prompt templates: ``NAME@VERSION.toml`` files with system, developer and user parts.

A template declares its slots with a type and the part they belong to. Values supplied with the
call (``vars``) may fill only ``part = "user"`` slots; system and developer slots take their
template-defined ``default`` only, and the system and developer parts may reference no user slot.
Rendering uses Jinja2's ``SandboxedEnvironment`` with ``StrictUndefined``. The template hash
(SHA-256 of the file) is recorded with every call::

    system = "You triage support tickets for {{ shop }}."
    user = "Ticket: {{ ticket | tojson }}"

    [slots.shop]
    type = "str"
    part = "system"
    default = "Acme"

    [slots.ticket]
    type = "object"
    part = "user"

A template changed at run time lives in the store: the governance layer records an approved
version under the flag ``prompt_active:NAME@VERSION`` (its TOML source and hash), and
:class:`TemplateStore` prefers it to the files, checking each reference at most every
``refresh_s``. Files (the app's ``prompts/``, ``prompts_dir``, the bundled examples) are the
defaults, used only when the store holds none for that ``NAME@VERSION``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from stalwart.errors import ConfigError, InvalidInput, PolicyDenied

__all__ = ["BUNDLED_PROMPTS", "PROMPT_FLAG_PREFIX", "PromptTemplate", "TemplateStore", "parse_template", "split_ref"]

PROMPT_FLAG_PREFIX = "prompt_active:"
"""Flag ``prompt_active:NAME@VERSION`` = ``{"source", "hash", "version"}``: the approved template in force."""

BUNDLED_PROMPTS = Path(__file__).resolve().parent.parent / "examples" / "prompts"
"""Templates shipped with Stalwart's bundled examples (searched last)."""

_PARTS = ("system", "developer", "user")
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (dict,),
    "list": (list, tuple),
    "any": (object,),
}
_REF = re.compile(r"^([A-Za-z0-9_.\-]+)@([A-Za-z0-9_.\-]+)$")
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@functools.lru_cache(maxsize=512)
def _compiled(source: str) -> Any:
    """A part's source compiled once (compiling costs ~100x rendering; an agent renders every turn)."""
    return _env.from_string(source)


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    type: str
    part: str
    default: Any = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """One loaded template. ``hash`` is ``sha256:`` + the hex digest of the file's bytes.

    ``path`` is the file it came from; ``None`` for a version stored at run time."""

    name: str
    version: str
    path: Path | None
    hash: str
    parts: dict[str, str]
    slots: dict[str, Slot]

    def render(self, values: dict[str, Any]) -> list[dict[str, str]]:
        """Messages for ``values`` (caller-supplied, so they may fill user slots only)."""
        ref = f"{self.name}@{self.version}"
        ctx: dict[str, Any] = {}
        for key, value in values.items():
            slot = self.slots.get(key)
            if slot is None:
                raise InvalidInput(f"template {ref} has no slot {key!r} (slots: {', '.join(self.slots)})")
            if slot.part != "user":
                raise PolicyDenied(
                    f"template {ref}: slot {key!r} belongs to the {slot.part} part; "
                    "caller-supplied values may fill user-part slots only"
                )
            if not isinstance(value, _TYPES[slot.type]) or (
                slot.type in ("int", "float") and isinstance(value, bool)
            ):
                raise InvalidInput(
                    f"template {ref}: slot {key!r} must be {slot.type}, got {type(value).__name__}"
                )
            ctx[key] = value
        for slot in self.slots.values():
            if slot.name not in ctx:
                if slot.required and slot.part == "user":
                    raise InvalidInput(f"template {ref} needs a value for slot {slot.name!r}")
                ctx[slot.name] = slot.default
        trusted = {k: v for k, v in ctx.items() if self.slots[k].part != "user"}
        messages = []
        for part in _PARTS:
            source = self.parts.get(part)
            if not source:
                continue
            try:
                text = _compiled(source).render(ctx if part == "user" else trusted)
            except TemplateError as exc:
                raise InvalidInput(f"template {ref}, {part} part: {exc}") from None
            messages.append({"role": part, "content": text})
        return messages


def _load(path: Path, name: str, version: str) -> PromptTemplate:
    return parse_template(path.read_bytes(), name, version, where=f"prompt template {path}", path=path)


def parse_template(
    raw: bytes, name: str, version: str, *, where: str | None = None, path: Path | None = None
) -> PromptTemplate:
    """Parse and check one template's TOML source; a ``ConfigError`` names what is wrong."""
    where = where or f"prompt template {name}@{version}"
    try:
        doc = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    parts = {p: str(doc[p]) for p in _PARTS if doc.get(p)}
    if "user" not in parts and "system" not in parts:
        raise ConfigError(f"{where}: needs a system or user part")
    slots: dict[str, Slot] = {}
    for sname, spec in (doc.get("slots") or {}).items():
        stype, part = spec.get("type", "str"), spec.get("part", "user")
        if stype not in _TYPES:
            raise ConfigError(f"{where}: slots.{sname}.type must be one of {', '.join(_TYPES)}")
        if part not in _PARTS:
            raise ConfigError(f"{where}: slots.{sname}.part must be one of {', '.join(_PARTS)}")
        if part != "user" and "default" not in spec:
            raise ConfigError(
                f"{where}: slots.{sname} is a {part} slot and needs a default (callers cannot fill it)"
            )
        slots[sname] = Slot(sname, stype, part, spec.get("default"), "default" not in spec)
    for part, source in parts.items():
        try:
            used = meta.find_undeclared_variables(_env.parse(source))
        except TemplateError as exc:
            raise ConfigError(f"{where}, {part} part: {exc}") from None
        for var in used:
            if var not in slots:
                raise ConfigError(f"{where}, {part} part uses {{{{ {var} }}}} but declares no slots.{var}")
            if part != "user" and slots[var].part == "user":
                raise ConfigError(f"{where}: the {part} part may not use the user slot {var!r}")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return PromptTemplate(name, version, path, digest, parts, slots)


def split_ref(ref: str) -> tuple[str, str]:
    """``("name", "version")`` of ``"name@version"``; a ``ConfigError`` otherwise."""
    m = _REF.match(ref)
    if not m:
        raise ConfigError(f"template {ref!r} must be written NAME@VERSION, e.g. 'triage@1'")
    return m.group(1), m.group(2)


class _Flags(Protocol):
    async def get_flag(self, name: str) -> dict[str, Any] | None: ...


class TemplateStore:
    """Templates by ``NAME@VERSION``: the store's approved version if it holds one, else the first
    ``NAME@VERSION.toml`` in ``dirs`` (cached)."""

    def __init__(
        self,
        dirs: list[Path],
        store: _Flags | None = None,
        *,
        refresh_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dirs = dirs
        self.store = store
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._cache: dict[str, PromptTemplate] = {}
        self._stored: dict[str, tuple[float, PromptTemplate | None]] = {}

    async def refresh(self, ref: str) -> None:
        """Look ``ref`` up in the store if its last look is ``refresh_s`` old (one flag read)."""
        if self.store is None:
            return
        now = self._monotonic()
        seen = self._stored.get(ref)
        if seen is not None and now - seen[0] < self.refresh_s:
            return
        flag = await self.store.get_flag(PROMPT_FLAG_PREFIX + ref)
        tpl = None
        if flag:
            prev = seen[1] if seen is not None else None
            if prev is not None and prev.hash == flag.get("hash"):
                tpl = prev
            else:
                name, version = split_ref(ref)
                tpl = parse_template(str(flag["source"]).encode(), name, version,
                                     where=f"prompt template {ref} (stored {flag.get('hash', '')[:19]})")
        self._stored[ref] = (now, tpl)

    def get(self, ref: str) -> PromptTemplate:
        """The template for ``"name@version"``; a ``ConfigError`` says where it was looked for."""
        stored = self._stored.get(ref)
        if stored is not None and stored[1] is not None:
            return stored[1]
        hit = self._cache.get(ref)
        if hit is not None:
            return hit
        name, version = split_ref(ref)
        for d in self.dirs:
            path = d / f"{ref}.toml"
            if path.is_file():
                tpl = _load(path, name, version)
                self._cache[ref] = tpl
                return tpl
        raise ConfigError(
            f"prompt template {ref!r} not found: looked in the store and for {ref}.toml in "
            + ", ".join(str(d) for d in self.dirs)
            + " (set prompts_dir / STALWART_PROMPTS_DIR)"
        )
