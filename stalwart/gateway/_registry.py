"""The model registry: pinned entries and task routes, resolved from ``Settings``.

With no ``[models]`` configured the registry holds one built-in entry, ``local`` (the offline
scripted model), and the default route is ``["local"]``. Every misconfiguration is a
``ConfigError`` that names the setting to fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from stalwart.errors import ConfigError
from stalwart.gateway._providers._base import Provider
from stalwart.gateway._providers.local import LOCAL_MODEL_ID, LocalProvider, LocalRule
from stalwart.settings import ModelEntry, Settings

__all__ = ["LOCAL_ENTRY", "Model", "Registry"]

LOCAL_ENTRY = ModelEntry.model_validate(
    {
        "provider": "local",
        "model": LOCAL_MODEL_ID,
        "price_in_per_mtok": 0.0,
        "price_out_per_mtok": 0.0,
        "context_window": 128_000,
        "latency_slo_ms": 1_000,
        "pii_allowed": True,
    }
)
_FLOATING = re.compile(r"(?:^|[:/@_-])latest(?:$|[:/@_-])", re.IGNORECASE)
_FREE = ("local", "embedded")


@dataclass(frozen=True, slots=True)
class Model:
    """A registry entry with its name."""

    name: str
    entry: ModelEntry

    @property
    def provider(self) -> str:
        return self.entry.provider

    @property
    def price_known(self) -> bool:
        """Whether this entry's cost can be computed: both prices set, or a free in-process model."""
        e = self.entry
        return e.provider in _FREE or {"price_in_per_mtok", "price_out_per_mtok"} <= e.model_fields_set

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD for this usage at the entry's prices (0 when the prices are unknown)."""
        e = self.entry
        return (tokens_in * e.price_in_per_mtok + tokens_out * e.price_out_per_mtok) / 1_000_000


class Registry:
    """Entries by name, routes by task, and one provider adapter per entry (built on first use)."""

    def __init__(self, settings: Settings, *, local_rules: list[LocalRule] | None = None) -> None:
        models = dict(settings.models)
        if "local" not in models:
            models["local"] = LOCAL_ENTRY
        self.models = {name: Model(name, e) for name, e in models.items()}
        self.routes = {task: list(r.models) for task, r in settings.routes.items()}
        self.routes.setdefault("default", ["local"] if not settings.models else [next(iter(settings.models))])
        for task, names in self.routes.items():
            for name in names:
                if name not in self.models:
                    raise ConfigError(
                        f"routes.{task}.models names {name!r}, which is not a [models.{name}] entry "
                        f"(known: {', '.join(sorted(self.models))})"
                    )
        self._local_rules = local_rules
        self._providers: dict[str, Provider] = {}

    def route(self, task: str, override: str | None = None) -> list[Model]:
        """Candidates for a task, in order: the override alone, the task's route, else ``default``."""
        if override is not None:
            return [self.get(override)]
        return [self.models[n] for n in self.routes.get(task) or self.routes["default"]]

    def get(self, name: str) -> Model:
        """The entry named ``name``; unknown names raise ``ConfigError`` naming ``[models.NAME]``."""
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(
                f"unknown model {name!r}: add a [models.{name}] entry to the settings "
                f"(known: {', '.join(sorted(self.models))})"
            ) from None

    def check(self, model: Model) -> None:
        """Raise ``ConfigError`` if ``model`` cannot be used as configured (prices, key, pinning)."""
        e, n = model.entry, model.name
        if e.provider == "local":
            return
        if {"price_in_per_mtok", "price_out_per_mtok"} & e.model_fields_set and not model.price_known:
            raise ConfigError(
                f"models.{n}: set both models.{n}.price_in_per_mtok and models.{n}.price_out_per_mtok, "
                "or neither (cost then reported as unknown)"
            )
        if e.api_key_env and not os.environ.get(e.api_key_env):
            raise ConfigError(
                f"models.{n}.api_key_env names the environment variable {e.api_key_env}, which is not set"
            )
        if _FLOATING.search(e.model) and not e.pinned:
            raise ConfigError(
                f"models.{n}.model is {e.model!r}, a floating alias: pin an exact model version, "
                f"or set models.{n}.pinned = true if you pin that tag on the server yourself"
            )

    def provider(self, model: Model) -> Provider:
        """The adapter for ``model`` (checked and built once)."""
        p = self._providers.get(model.name)
        if p is not None:
            return p
        self.check(model)
        e = model.entry
        key = os.environ.get(e.api_key_env) if e.api_key_env else None
        if e.provider == "local":
            p = LocalProvider(self._local_rules)
        elif e.provider == "embedded":
            from stalwart.gateway._providers.embedded import EmbeddedProvider

            p = EmbeddedProvider(model.name, e.model, e.context_window)
        elif e.provider == "openai":
            from stalwart.gateway._providers.openai import OpenAIProvider

            p = OpenAIProvider(
                model.name,
                base_url=e.base_url,
                api_key=key,
                timeout_s=e.timeout_s,
                developer_role=e.developer_role,
            )
        else:
            from stalwart.gateway._providers.anthropic import AnthropicProvider

            p = AnthropicProvider(model.name, base_url=e.base_url, api_key=key, timeout_s=e.timeout_s)
        self._providers[model.name] = p
        return p

    async def aclose(self) -> None:
        for p in self._providers.values():
            await p.aclose()
        self._providers.clear()
