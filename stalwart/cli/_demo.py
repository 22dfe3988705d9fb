"""``stalwart demo``: the bundled refund workflow, end to end, on the embedded SQLite store."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.panel import Panel

from stalwart.cli._common import console, load_app, run
from stalwart.cli._runs import steps_table
from stalwart.errors import WorkflowFailed


def demo(
    keep_worker_s: float = typer.Option(0.0, help="Keep the worker running this long after the demo."),
) -> None:
    """Run the customer-support refund workflow on a few tickets and explain what happened."""
    from stalwart.examples import refund as example

    app = load_app(default="stalwart.examples.refund:app")
    nonce = time.strftime("%Y%m%d-%H%M%S")
    tickets: list[tuple[str, dict[str, Any], str]] = [
        (f"demo-{nonce}-1", {"email": "alice@example.com",
                                    "message": "Hi! Order A-1001 arrived broken. Please refund the $49.99."},
         "an ordinary refund: the model triages it, the fraud check times out once and is retried"),
        (f"demo-{nonce}-2", {"email": "bob@bounce.invalid",
                                    "message": "I want my money back for order A-1002."},
         "the refund is paid, then the confirmation bounces for good: the refund is voided"),
        (f"demo-{nonce}-3", {"email": "carol@example.com",
                                    "message": "Refund order A-9999 please, it never came."},
         "the order does not exist: the sandboxed lookup fails without retry"),
    ]

    async def go() -> None:
        await app.connect()
        console.print(Panel.fit(
            f"Stalwart demo · workflow [bold]refund@1[/bold] · store {app.settings.db}\n"
            "Every step is journaled; the payment ledger is keyed by each call's idempotency key.",
            title="stalwart demo"))
        async with app.worker(concurrency=8):
            ids = []
            for key, ticket, _ in tickets:
                ids.append(await app.start("refund", ticket, idempotency_key=key, org="acme", user="agent-demo"))
            again = await app.start("refund", tickets[0][1], idempotency_key=tickets[0][0], org="acme")
            for (key, ticket, story), run_id in zip(tickets, ids, strict=True):
                try:
                    await app.result(run_id, timeout=60)
                except WorkflowFailed:
                    pass
                info = await app.get_run(run_id)
                journal = await app.journal(run_id)
                colour = "green" if info.status.value == "COMPLETED" else "red"
                console.rule(f"ticket {key}")
                console.print(f"[dim]{story}[/dim]")
                console.print(f"run [bold]{run_id}[/bold] → [{colour}]{info.status.value}[/{colour}]")
                console.print(steps_table(journal, title=""))
                if info.output:
                    console.print(f"result: {info.output}")
                if info.error:
                    console.print(f"[red]failed at step {info.error.get('step_seq')} ({info.error.get('step')}):"
                                  f"[/red] {info.error.get('message')}")
                    for c in info.error.get("compensation") or []:
                        console.print(f"  compensation for {c['tool']} (step {c['seq']}): {c['status']}")
            console.rule("idempotency")
            console.print(f"re-submitting ticket {tickets[0][0]} returned the same run: "
                          f"[bold]{again == ids[0]}[/bold] ({again})")
            rows = [r for r in example.ledger_rows() if r[0].split(":")[0] in ids]
            console.rule("payment ledger (this demo)")
            for key, order_id, cents, kind in rows:
                console.print(f"  {kind:<6} {order_id}  {cents / 100:>8.2f} USD   key {key}")
            dlq = [d for d in await app.dead_letters() if d.run_id in ids]
            console.rule("dead-letter queue")
            for d in dlq:
                console.print(f"  {d.run_id}  {d.reason[:90]}")
            console.print("\nNext: [bold]stalwart run get ID --json[/bold] · [bold]stalwart run list[/bold] · "
                          "[bold]stalwart dlq list[/bold] · [bold]stalwart dlq retry ID[/bold]")
            if keep_worker_s:
                import asyncio

                await asyncio.sleep(keep_worker_s)
        await app.close()

    run(go)
