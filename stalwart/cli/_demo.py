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
    _ensure_master_key(app)
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
        (f"demo-{nonce}-4", {"email": "mallory@example.com", "message": "Refund order A-1004, thanks."},
         "the order record carries a prompt injection: the guard blocks the tool output before any model sees it"),
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
                pii = {k: v for e in journal for k, v in ((e.meta or {}).get("pii") or {}).items()}
                if pii:
                    seen = [e.result_json for e in journal if e.kind == "llm" and e.name == "reply"]
                    line = f"[magenta]guard:[/magenta] PII redacted before the model saw the ticket: {pii}"
                    if any(seen):
                        line += (f"; the model addressed its reply to {_email_of(seen)} and the vault re-hydrated "
                                 "the real address for send_email only")
                    console.print(line)
                for e in journal:
                    for g in (e.meta or {}).get("guard") or []:
                        console.print(f"[magenta]guard:[/magenta] {g['action'].upper()} in {g['where']} "
                                      f"(score {g['score']}; {', '.join(g['reasons'][:2])})")
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
            console.rule("mail actually sent (real addresses, re-hydrated from the vault)")
            for m in example.SENT_MAIL:
                console.print(f"  to {m['to']}: {m['subject']}")
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


def _email_of(results: list[str | None]) -> str:
    import json

    for r in results:
        if r:
            return str(json.loads(r).get("value", {}).get("email"))
    return "(no reply drafted)"


def _ensure_master_key(app: Any) -> None:
    """The demo's vault key: a 0600 file beside the demo database, unless one is configured."""
    import base64
    import os
    from pathlib import Path

    g = app.settings.guard
    if os.environ.get(g.master_key_env) or g.master_key_file:
        return
    path = Path(".stalwart/master.key")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(os.urandom(32)).decode())
    app.settings = app.settings.model_copy(update={"guard": g.model_copy(update={"master_key_file": str(path)})})
