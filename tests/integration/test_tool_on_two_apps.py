"""One function registered as a tool on two apps: each app's workflows call their own registration.

The bundled refund workflow and support agent both register ``stalwart.examples.orders.lookup_order``;
importing the second used to take the function over, and the first app's runs then dead-lettered
with "tool 'lookup_order' is not in the tools of workflow".
"""

from __future__ import annotations

from pathlib import Path

import pytest

import stalwart as sw

pytestmark = pytest.mark.asyncio


def shared_lookup(order_id: str) -> dict:
    return {"order_id": order_id}


async def test_each_app_resolves_its_own_registration_of_a_shared_function(tmp_path: Path) -> None:
    apps = []
    for n, timeout in enumerate((5.0, 7.0)):
        app = sw.App(f"a{n}", db=f"sqlite:///{tmp_path}/a{n}.db")
        tool = app.tool(sandbox="none", timeout_s=timeout)(shared_lookup)

        @app.workflow(name="w", version="1", tools=[tool])
        async def w(ctx: sw.Context, order_id: str) -> dict:
            return await ctx.tool(shared_lookup, order_id=order_id)

        apps.append(app)
    first, second = apps
    assert first.tool_for(shared_lookup).timeout_s == 5.0
    assert second.tool_for(shared_lookup).timeout_s == 7.0
    for app in apps:  # the first app, registered before the second took the same function, included
        async with app.worker():
            rid = await app.start("w", "A-1")
            assert await app.result(rid, timeout=30) == {"order_id": "A-1"}
        await app.close()


async def test_the_refund_example_still_runs_after_the_support_agent_is_imported() -> None:
    from stalwart.examples import refund, support_agent

    lookup = refund.lookup_order
    assert refund.app.tool_for(lookup) is refund.app.tool_def("lookup_order")
    assert support_agent.app.tool_for(lookup) is support_agent.app.tool_def("lookup_order")
    assert refund.app.tool_for(lookup) is not support_agent.app.tool_for(lookup)
