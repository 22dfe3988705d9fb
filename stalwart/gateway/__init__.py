"""stalwart.gateway — the model gateway (providers, routing, budgets, cache, templates)."""

from stalwart.gateway._budget import Budget

__all__ = ["Budget"]
