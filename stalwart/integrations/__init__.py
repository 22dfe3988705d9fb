"""stalwart.integrations — agents written with other SDKs, run durably inside a Stalwart workflow.

``stalwart.integrations.pydantic_ai`` runs a ``pydantic_ai.Agent``: its model calls are journaled
gateway steps and its function tools are governed Stalwart tools. Each integration is its own
module and imports its SDK only when imported itself (install the ``integrations`` extra).
"""

__all__: list[str] = []
