"""stalwart.integrations — agents written with other SDKs, run durably inside a Stalwart workflow.

``stalwart.integrations.pydantic_ai.run(ctx, agent, prompt)`` runs a ``pydantic_ai.Agent`` and
``stalwart.integrations.openai_agents.run(ctx, agent, input)`` an OpenAI Agents SDK
``agents.Agent``: in both, every model call is a journaled gateway step and every function tool a
governed Stalwart tool. Each integration is its own module and imports its SDK only when it is
imported itself.
"""

__all__: list[str] = []
