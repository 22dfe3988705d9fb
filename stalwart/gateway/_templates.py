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
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from stalwart.errors import ConfigError, InvalidInput, PolicyDenied

__all__ = ["BUNDLED_PROMPTS", "PromptTemplate", "TemplateStore"]

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


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    type: str
    part: str
    default: Any = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """One loaded template. ``hash`` is ``sha256:`` + the hex digest of the file's bytes."""

    name: str
    version: str
    path: Path
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
                text = _env.from_string(source).render(ctx if part == "user" else trusted)
            except TemplateError as exc:
                raise InvalidInput(f"template {ref}, {part} part: {exc}") from None
            messages.append({"role": part, "content": text})
        return messages


def _load(path: Path, name: str, version: str) -> PromptTemplate:
    raw = path.read_bytes()
    where = f"prompt template {path}"
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


class TemplateStore:
    """Finds ``NAME@VERSION.toml`` in the given directories (first match wins) and caches it."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self._cache: dict[str, PromptTemplate] = {}

    def get(self, ref: str) -> PromptTemplate:
        """The template for ``"name@version"``; a ``ConfigError`` says where it was looked for."""
        hit = self._cache.get(ref)
        if hit is not None:
            return hit
        m = _REF.match(ref)
        if not m:
            raise ConfigError(f"template {ref!r} must be written NAME@VERSION, e.g. 'triage@1'")
        for d in self.dirs:
            path = d / f"{ref}.toml"
            if path.is_file():
                tpl = _load(path, m.group(1), m.group(2))
                self._cache[ref] = tpl
                return tpl
        raise ConfigError(
            f"prompt template {ref!r} not found: looked for {ref}.toml in "
            + ", ".join(str(d) for d in self.dirs)
            + " (set prompts_dir / STALWART_PROMPTS_DIR)"
        )
