"""``stalwart demo``: the bundled refund workflow, end to end, on the embedded SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import typer
from rich.panel import Panel

from stalwart.cli._common import console, load_app, run, state
from stalwart.cli._demo_models import demo_settings, model_banner, model_calls
from stalwart.cli._runs import steps_table
from stalwart.errors import ConfigError, WorkflowFailed

TICKETS: list[tuple[str, dict[str, Any], str]] = [
    ("1", {"email": "alice@example.com", "message": "Hi! Order A-1001 arrived broken. Please refund the $49.99."},
     ("an ordinary refund: the model triages it (it sees only placeholders for the email), order and history are "
     "looked up in parallel sandboxes, the fraud check times out once and is retried")),
    ("2", {"email": "bob@example.com", "message": "I want my money back for order A-1002."},
     "a $125 refund: policy sends it to a human review; the demo approves it from the CLI"),
    ("3", {"email": "dave@example.com", "message": "Refund order A-1003 please."},
     "order A-1003 belongs to another org: the order service refuses the run's org-scoped credential"),
    ("4", {"email": "mallory@example.com", "message": "Refund order A-1004, thanks."},
     "the order record carries a prompt injection: the guard blocks the tool output before any model sees it"),
    ("5", {"email": "frank@example.com", "message": "Refund my order A-1005 of $750."},
     "a $750 refund: policy forbids automated refunds over $500"),
    ("6", {"email": "grace@bounce.invalid", "message": "Refund order A-1006 please, $30."},
     "the refund is paid, then the confirmation bounces for good: the refund is voided (saga compensation)"),
]


def demo(
    model: str = typer.Option(
        "embedded", "--model", "-m",
        help="Who answers the model steps: 'embedded' (a real small model in-process, SmolLM2-135M; the "
        "scripted 'local' model takes over where it fails), 'local' (scripted, not a real LLM) or the name of "
        "a models entry of your settings (also with 'local' as its fallback).",
    ),
) -> None:
    """Run the customer-support refund workflow on a few tickets and explain what happened."""
    from stalwart.examples import refund as example

    app = load_app(default="stalwart.examples.refund:app")
    app.settings = demo_settings(app.settings, model)
    route = app.settings.routes["default"].models
    # A CPU model answers one call at a time (the runs queue for it): give each run room to finish.
    wait_s = 120.0 if route == ["local"] else 900.0
    _ensure_master_key(app)
    nonce = time.strftime("%Y%m%d-%H%M%S")

    async def go() -> None:
        await app.connect()
        await asyncio.to_thread(app.guard().load)  # PII models load once, up front (about a second)
        console.print(Panel.fit(
            f"Stalwart demo · workflow [bold]refund@1[/bold] · store {app.settings.db}\n"
            f"{model_banner(app.settings)}\n"
            "Every step is journaled, audited in the same transaction, and replayable.",
            title="stalwart demo"))
        async with app.worker(concurrency=8, poll_interval_s=0.2) as worker:
            _show_prewarm(worker.prewarm)
            ids: dict[str, str] = {}
            for n, ticket, _ in TICKETS:
                customer = "customer:" + ticket["email"].split("@")[0]
                ids[n] = await app.start("refund", ticket, idempotency_key=f"demo-{nonce}-{n}", org="acme",
                                         user=customer)
            again = await app.start("refund", TICKETS[0][1], idempotency_key=f"demo-{nonce}-1", org="acme")
            with console.status(f"the model steps are running on {route[0]}, one call at a time…"):
                await _approve_from_cli(app, ids["2"], wait_s)
            for n, _ticket, story in TICKETS:
                await _show(app, n, ids[n], story, wait_s)
            console.rule("episodic memory")
            follow_up = {"email": "alice@example.com", "message": "Hello again, order A-1006 is missing a part, "
                         "please refund $30."}
            again_id = await app.start("refund", follow_up, idempotency_key=f"demo-{nonce}-7", org="acme",
                                       user="customer:alice")
            try:
                follow_out = await app.result(again_id, timeout=wait_s)
            except WorkflowFailed as exc:
                follow_out = {"error": str(exc)}
            _sandbox_lines(await app.journal(again_id), f"run {again_id}")
            recalled = (follow_out or {}).get("previous_runs") or []
            console.print(f"alice writes again (run {again_id}): the workflow recalled her earlier ticket from "
                          f"episodic memory: {recalled} {'(ticket 1)' if ids['1'] in recalled else ''}")
            console.rule("sandboxed tool calls")
            await _sandbox_summary(app, [*ids.values(), again_id])
            console.rule("idempotency")
            console.print(f"re-submitting ticket 1 with its idempotency key returned the same run: "
                          f"[bold]{again == ids['1']}[/bold]")
            console.rule("payment ledger (keyed by idempotency key: never paid twice)")
            for key, order_id, cents, kind in example.ledger_rows():
                if key.split(":")[0] in ids.values():
                    console.print(f"  {kind:<6} {order_id}  {cents / 100:>8.2f} USD   key {key}")
            console.rule("mail actually sent (real addresses, re-hydrated from the vault for send_email only)")
            for m in example.SENT_MAIL:
                console.print(f"  to {m['to']}: {m['subject']}")
            console.rule("audit log")
            await _verify_audit(app)
            console.rule("event stream")
            await _publish_events(app)
            console.print("\nNext: [bold]stalwart run get ID --json[/bold] · [bold]stalwart run explain ID[/bold] · "
                          "[bold]stalwart run replay ID[/bold] · [bold]stalwart dlq list[/bold] · "
                          "[bold]stalwart audit verify[/bold] · [bold]stalwart review list[/bold]")
        await app.close()

    try:
        run(go)
    except ConfigError as exc:
        if "provider 'embedded'" not in str(exc):
            raise
        raise ConfigError(f"{exc}; or run the demo on the scripted model: stalwart demo --model local") from None


async def _approve_from_cli(app: Any, run_id: str, wait_s: float) -> None:
    """Wait until the run asks for a review, then approve it with the real ``stalwart`` CLI."""
    gov = await app.governance()
    review = None
    for _ in range(int(wait_s * 10)):
        pending = [r for r in await gov.reviews.list("pending") if r.run_id == run_id]
        if pending:
            review = pending[0]
            break
        info = await app.get_run(run_id)
        if info.status.value in ("COMPLETED", "FAILED", "DEAD_LETTER", "CANCELLED"):
            return
        await asyncio.sleep(0.1)
    if review is None:
        return
    risk = (review.risk or {}).get("score")
    console.rule("human review")
    console.print(f"run {run_id} is WAITING (holding no worker) for review {review.id}: "
                  f"{review.proposed_action.get('tool')} {json.dumps(review.proposed_action.get('args'))}, "
                  f"risk {risk}, policy {', '.join((review.policy or {}).get('reasons') or [])}")
    cmd = [sys.executable, "-m", "stalwart.cli", "--db", app.settings.db]
    if state.app:
        cmd += ["--app", state.app]
    cmd += ["review", "approve", review.id, "--as", "user:lead-reviewer", "--note", "within goodwill policy"]
    console.print(f"$ stalwart review approve {review.id} --as user:lead-reviewer")
    out = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, env=os.environ.copy())
    console.print((out.stdout or out.stderr).strip())


async def _show(app: Any, n: str, run_id: str, story: str, wait_s: float) -> None:
    try:
        with console.status(f"ticket {n}: waiting for run {run_id}…"):
            await app.result(run_id, timeout=wait_s)
    except WorkflowFailed:
        pass
    info = await app.get_run(run_id)
    journal = await app.journal(run_id)
    colour = "green" if info.status.value == "COMPLETED" else "red"
    console.rule(f"ticket {n}")
    console.print(f"[dim]{story}[/dim]")
    console.print(f"run [bold]{run_id}[/bold] → [{colour}]{info.status.value}[/{colour}]")
    console.print(steps_table(journal, title=""))
    _sandbox_lines(journal)
    for line in model_calls(journal, app.settings):
        console.print(f"[cyan]model:[/cyan] {line}")
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
        if e.kind == "policy" and e.result_json:
            verdict = json.loads(e.result_json)
            if verdict.get("action") != "allow":
                console.print(f"[yellow]policy:[/yellow] {e.name}: {verdict['action'].upper()} "
                              f"({', '.join(verdict.get('reasons') or [])}; risk {verdict['risk']['score']:.0f}; "
                              f"policy {verdict.get('policy_version')})")
    if info.error:
        console.print(f"[red]{info.error.get('type')} at step {info.error.get('step_seq')} "
                      f"({info.error.get('step')}):[/red] {info.error.get('message')}")
        for c in info.error.get("compensation") or []:
            console.print(f"  compensation for {c['tool']} (step {c['seq']}): {c['status']}")


WARM_TARGET_MS = 50.0
"""What a sandboxed call of the demo should take at most (issue 16): a warm pool makes it so."""


def _show_prewarm(report: dict[str, Any] | None) -> None:
    """What the worker warmed before it began claiming runs."""
    if not report:
        return
    asked = ", ".join(f"{n} for {m}" for m, n in report.get("asked", {}).items()) or "nothing"
    if report.get("error"):
        console.print(f"[yellow]sandbox pool:[/yellow] no pre-warm ({report['error']}); tool calls start cold")
        return
    bounds = report.get("bounds") or {}
    state = "ready" if report.get("complete") else (
        f"ready, within the pool's bounds ({bounds.get('processes')} processes, {bounds.get('memory_mb')} MiB) "
        "or still warming")
    console.print(f"[cyan]sandbox pool:[/cyan] the worker pre-warmed single-use sandboxes ({asked}): "
                  f"{report.get('ready', 0)} {state} after {report.get('seconds', 0):.1f}s, before its first claim")


def _sandbox_calls(journal: list[Any]) -> list[tuple[str, float, bool]]:
    """(tool, milliseconds in the sandbox, served warm from the pool) for each sandboxed call."""
    return [(e.name, float(e.meta["sandbox_ms"]), bool(e.meta.get("sandbox_pooled")))
            for e in journal if e.kind == "tool" and (e.meta or {}).get("sandbox_ms") is not None]


def _sandbox_lines(journal: list[Any], where: str = "") -> None:
    for name, ms, warm in _sandbox_calls(journal):
        how = "[green]warm[/green] (pooled: started before the call, used once)" if warm else \
            "[yellow]cold[/yellow] (started for this call)"
        console.print(f"[cyan]sandbox:[/cyan] {name}{' in ' + where if where else ''}: {ms:.1f} ms, {how}")


async def _sandbox_summary(app: Any, run_ids: list[str]) -> None:
    calls = [c for rid in run_ids for c in _sandbox_calls(await app.journal(rid))]
    if not calls:
        return
    warm = sum(1 for _n, _ms, w in calls if w)
    times = sorted(ms for _n, ms, _w in calls)
    slowest = times[-1]
    verdict = "[green]all within[/green]" if slowest <= WARM_TARGET_MS else "[yellow]not all within[/yellow]"
    console.print(f"{len(calls)} sandboxed calls, {warm} served warm from the pool, {len(calls) - warm} cold; "
                  f"median {times[len(times) // 2]:.1f} ms, slowest {slowest:.1f} ms: {verdict} "
                  f"{WARM_TARGET_MS:.0f} ms (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
                  "the tickets' calls arrive together and share one event loop)")


async def _publish_events(app: Any) -> None:
    """Publish the outbox (every state change and step, written in each step's transaction) to NATS
    JetStream when a server is reachable; the embedded store's outbox table is the log otherwise."""
    from stalwart.store import OutboxPublisher

    url = os.environ.get("STALWART_NATS_URL", "nats://127.0.0.1:4222")
    try:
        n = await asyncio.wait_for(OutboxPublisher(app.store, url).publish_pending(), 30)
    except Exception as exc:  # noqa: BLE001 - the demo works without a bus: say so, don't fail
        console.print(f"no NATS JetStream at {url} ({type(exc).__name__}); the outbox table is the event log: "
                      "[bold]stalwart events tail[/bold]")
        return
    console.print(f"{n} events published to JetStream stream STALWART at {url} (deduplicated by event id): "
                  f"[bold]stalwart events tail --nats {url}[/bold]")


async def _verify_audit(app: Any) -> None:
    gov = await app.governance()
    await gov.audit.checkpoint()
    report = await gov.audit.verify()  # the app's one audit log: its key and its anchor
    status = "[green]intact[/green]" if report.ok else f"[red]TAMPERED[/red] ({report.reason})"
    console.print(f"hash chain {status}: {report.checked} entries, {report.checkpoints} signed checkpoints "
                  f"anchored in {gov.audit.anchor.where}/{report.log_id}")


def _email_of(results: list[str | None]) -> str:
    for r in results:
        if r:
            return str(json.loads(r).get("value", {}).get("email"))
    return "(no reply drafted)"


def _ensure_master_key(app: Any) -> None:
    """The demo's vault key: a 0600 file beside the demo database, unless one is configured."""
    import base64
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
    os.environ[g.master_key_env] = path.read_text().strip()  # the CLI reviewer process needs it too
