"""``stalwart run …`` and ``stalwart dlq …``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from stalwart.cli._common import console, load_app, parse_json_arg, print_json, run
from stalwart.engine import RunInfo
from stalwart.store import JournalEntry

run_cli = typer.Typer(help="Start, inspect and list runs.", no_args_is_help=True)
dlq_cli = typer.Typer(help="The dead-letter queue: runs parked after their last attempt.", no_args_is_help=True)


def _ts(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def journal_dicts(entries: list[JournalEntry]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        d: dict[str, Any] = {
            "seq": e.seq,
            "kind": e.kind,
            "name": e.name,
            "status": e.status,
            "attempts": e.attempts,
            "started_at": e.started_at,
            "finished_at": e.finished_at,
            "duration_ms": None if e.started_at is None or e.finished_at is None
            else round((e.finished_at - e.started_at) * 1000, 3),
        }
        if e.error:
            d["error"] = {k: v for k, v in e.error.items() if k != "traceback"}
        if e.meta:
            d["meta"] = e.meta
        out.append(d)
    return out


def steps_table(entries: list[JournalEntry], title: str = "steps") -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for col in ("#", "kind", "name", "status", "tries", "ms", "notes"):
        t.add_column(col, justify="right" if col in ("#", "tries", "ms") else "left")
    for d in journal_dicts(entries):
        notes = []
        meta = d.get("meta") or {}
        if meta.get("idempotency_key"):
            notes.append(f"key {meta['idempotency_key'][-10:]}")
        if meta.get("credential_id"):
            notes.append(f"credential {str(meta['credential_id'])[:8]}")
        if meta.get("sandbox") == "process":
            ms = meta.get("sandbox_ms")
            how = "" if ms is None else f" ({'warm' if meta.get('sandbox_pooled') else 'cold'} {ms:.0f} ms)"
            notes.append("sandboxed" + how)
        if meta.get("compensates") is not None:
            notes.append(f"undoes step {meta['compensates']}")
        if meta.get("model"):
            notes.append(f"model {meta['model']}")
        if meta.get("tokens_in") is not None:
            notes.append(f"{meta.get('tokens_in', 0)}+{meta.get('tokens_out', 0)} tok ${meta.get('cost_usd', 0):.5f}")
        if d.get("error"):
            notes.append(str(d["error"].get("message", ""))[:60])
        style = {"completed": "green", "failed": "red", "retrying": "yellow", "waiting": "cyan"}.get(d["status"], "")
        t.add_row(str(d["seq"]), d["kind"], d["name"], f"[{style}]{d['status']}[/{style}]", str(d["attempts"]),
                  "" if d["duration_ms"] is None else f"{d['duration_ms']:.1f}", "; ".join(notes))
    return t


def run_dict(info: RunInfo, journal: list[JournalEntry] | None = None) -> dict[str, Any]:
    d = info.to_dict()
    if journal is not None:
        d["steps"] = journal_dicts(journal)
    return d


@run_cli.command("start")
def start(
    workflow: str = typer.Argument(..., help="Workflow name (its newest version unless --version)."),
    input: str = typer.Option("null", "--input", "-i", help="The workflow input, as JSON."),
    key: str | None = typer.Option(None, "--key", "-k", help="Idempotency key: reusing it returns the same run."),
    org: str = typer.Option("", help="Organisation the run belongs to."),
    user: str = typer.Option("", help="User on whose behalf it runs."),
    version: str | None = typer.Option(None, help="Pin a workflow version."),
    wait: float | None = typer.Option(None, help="Also run an in-process worker and wait up to this many seconds."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Start a run (validated against the workflow's type hints) and print its id."""
    app = load_app()
    payload = parse_json_arg(input, "--input")

    async def go() -> dict[str, Any]:
        try:
            run_id = await app.start(workflow, payload, idempotency_key=key, org=org, user=user, version=version)
            out: dict[str, Any] = {"id": run_id}
            if wait is not None:
                async with app.worker():
                    try:
                        out["output"] = await app.result(run_id, timeout=wait)
                    except Exception as exc:  # noqa: BLE001 - reported, with the run's state below
                        out["error"] = str(exc)
                out["status"] = (await app.get_run(run_id)).status.value
            return out
        finally:
            await app.close()

    out = run(go)
    if json_out:
        print_json(out)
    else:
        console.print(out["id"])
        if "status" in out:
            console.print(f"status: {out['status']}")


@run_cli.command("get")
def get(
    run_id: str = typer.Argument(..., help="The run id."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (status, input, output, error, steps)."),
) -> None:
    """Show one run and its journal."""
    app = load_app(default=None)

    async def go() -> tuple[RunInfo, list[JournalEntry]]:
        try:
            return await app.get_run(run_id), await app.journal(run_id)
        finally:
            await app.close()

    info, journal = run(go)
    if json_out:
        print_json(run_dict(info, journal))
        return
    show_run(info, journal)


def show_run(info: RunInfo, journal: list[JournalEntry]) -> None:
    colour = {"COMPLETED": "green", "FAILED": "red", "DEAD_LETTER": "red", "CANCELLED": "yellow"}.get(
        info.status.value, "cyan")
    console.print(f"[bold]run {info.id}[/bold]  {info.workflow}@{info.version}  "
                  f"[{colour}]{info.status.value}[/{colour}]  org={info.org or '-'}  started {_ts(info.created_at)}")
    console.print(steps_table(journal))
    if info.output is not None:
        console.print(f"output: {info.output}")
    if info.error:
        console.print(f"[red]error:[/red] {info.error.get('type')}: {info.error.get('message')}")
        comp = info.error.get("compensation")
        if comp:
            console.print(f"compensation: {comp}")


@run_cli.command("list")
def list_runs(
    status: str | None = typer.Option(None, help="Only runs in this status."),
    workflow: str | None = typer.Option(None, help="Only runs of this workflow."),
    org: str | None = typer.Option(None, help="Only runs of this organisation."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many (newest first)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List runs, newest first."""
    app = load_app(default=None)

    async def go() -> list[RunInfo]:
        try:
            return await app.list_runs(status=status, workflow=workflow, org=org, limit=limit)
        finally:
            await app.close()

    runs = run(go)
    if json_out:
        print_json([r.to_dict() for r in runs])
        return
    t = Table(title=f"{len(runs)} runs", title_justify="left")
    for col in ("id", "workflow", "status", "org", "created"):
        t.add_column(col)
    for r in runs:
        t.add_row(r.id, f"{r.workflow}@{r.version}", r.status.value, r.org, _ts(r.created_at))
    console.print(t)


@run_cli.command("cancel")
def cancel(run_id: str = typer.Argument(..., help="The run id.")) -> None:
    """Request cancellation; compensations run at the next step boundary."""
    app = load_app(default=None)

    async def go() -> RunInfo:
        try:
            return await app.cancel(run_id)
        finally:
            await app.close()

    info = run(go)
    console.print(f"cancellation requested for {info.id} (status {info.status.value})")


@run_cli.command("follow")
def follow(
    run_id: str = typer.Argument(..., help="The run id."),
    after: int = typer.Option(0, "--after", min=0, help="Start after this event offset (resume a broken follow)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line: each event, then the end."),
) -> None:
    """Print the run's event stream as it is written (ctx.emit, streamed model text) until the run ends.

    Exit code: 0 if the run completed, 1 if it failed, was cancelled or dead-lettered."""
    app = load_app(default=None)

    async def go() -> RunInfo:
        try:
            await app.get_run(run_id)  # an unknown id fails before anything is printed
            mid_line = False
            async for ev in app.events(run_id, after=after):
                if json_out:
                    sys.stdout.write(json.dumps(ev.to_dict(), default=str) + "\n")
                elif ev.kind == "llm.delta":
                    sys.stdout.write(str(ev.data.get("text", "")))
                    mid_line = True
                else:
                    if mid_line:
                        sys.stdout.write("\n")
                        mid_line = False
                    sys.stdout.write(f"[{ev.offset}] {ev.kind} {json.dumps(ev.data, default=str)}\n")
                sys.stdout.flush()
            if mid_line:
                sys.stdout.write("\n")
            return await app.get_run(run_id)
        finally:
            await app.close()

    info = run(go)
    if json_out:
        sys.stdout.write(json.dumps({"kind": "end", "run_id": info.id, "status": info.status.value}) + "\n")
    else:
        console.print(f"run {info.id} ended {info.status.value}")
    raise typer.Exit(0 if info.status.value == "COMPLETED" else 1)


@run_cli.command("signal")
def signal(
    run_id: str = typer.Argument(..., help="The run id."),
    name: str = typer.Argument(..., help="Signal name the run waits for."),
    payload: str = typer.Option("null", help="Payload, as JSON."),
) -> None:
    """Send a signal to a run waiting in ``ctx.wait_signal``."""
    app = load_app(default=None)
    value = parse_json_arg(payload, "--payload")

    async def go() -> None:
        try:
            await app.signal(run_id, name, value)
        finally:
            await app.close()

    run(go)
    console.print(f"signal {name!r} sent to {run_id}")


@dlq_cli.command("list")
def dlq_list(
    limit: int = typer.Option(100, min=1, help="At most this many."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Runs parked in the dead-letter queue, with their error."""
    app = load_app(default=None)

    async def go() -> list[Any]:
        try:
            return await app.dead_letters(limit)
        finally:
            await app.close()

    items = run(go)
    if json_out:
        print_json([{"run_id": d.run_id, "workflow": d.workflow, "version": d.version, "reason": d.reason,
                     "error": d.error, "created_at": d.created_at, "retries": d.retries} for d in items])
        return
    t = Table(title=f"{len(items)} dead-lettered runs", title_justify="left")
    for col in ("run", "workflow", "reason", "since", "retries"):
        t.add_column(col)
    for d in items:
        t.add_row(d.run_id, f"{d.workflow}@{d.version}", d.reason[:80], _ts(d.created_at), str(d.retries))
    console.print(t)


@dlq_cli.command("retry")
def dlq_retry(run_id: str = typer.Argument(..., help="The dead-lettered run's id.")) -> None:
    """Put a dead-lettered run back in the queue (a worker will pick it up)."""
    app = load_app(default=None)

    async def go() -> RunInfo:
        try:
            return await app.retry_dead_letter(run_id)
        finally:
            await app.close()

    info = run(go)
    how = "starts over (its effects were compensated)" if info.generation else "resumes from its failed step"
    console.print(f"run {info.id} is {info.status.value} again and {how}")




@run_cli.command("replay")
def replay(
    run_id: str = typer.Argument(..., help="The run to replay."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-execute a run's workflow code against its journal: zero provider calls, zero cost.

    Reports whether today's code takes the same path (exit 0) or diverges (exit 1).
    """
    app = load_app()

    async def go() -> Any:
        try:
            return await app.replay(run_id)
        finally:
            await app.close()

    report = run(go)
    if json_out:
        print_json(report.to_dict())
    else:
        colour = {"identical": "green", "incomplete": "yellow"}.get(report.outcome, "red")
        console.print(f"replay of run {report.run_id} ({report.workflow}@{report.version}, recorded "
                      f"{report.recorded_status}): [{colour}]{report.outcome}[/{colour}]")
        console.print(f"{report.steps_replayed} steps answered from the journal; "
                      f"{report.provider_calls} provider calls; cost $0.00")
        console.print(report.detail)
    if report.outcome == "diverged":
        raise typer.Exit(1)


@run_cli.command("fork")
def fork(
    run_id: str = typer.Argument(..., help="The run to fork."),
    from_step: int = typer.Option(..., "--from-step", min=0, help="Reuse the journal before this position."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Start a new run with the same input that reuses the recorded steps before --from-step."""
    app = load_app()

    async def go() -> str:
        try:
            return await app.fork(run_id, from_step)
        finally:
            await app.close()

    new = run(go)
    if json_out:
        print_json({"id": new, "forked_from": run_id, "from_step": from_step})
    else:
        console.print(f"{new} (forked from {run_id} at step {from_step}; a worker will run the rest)")


@run_cli.command("explain")
def explain_run(
    run_id: str = typer.Argument(..., help="The run to explain."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Why did this run cost what it cost and take as long as it took? Per-step table, critical
    path, and the top cost and time contributors in plain sentences."""
    from stalwart.telemetry import explain

    app = load_app(default=None)

    async def go() -> Any:
        try:
            return explain(await app.get_run(run_id), await app.journal(run_id))
        finally:
            await app.close()

    expl = run(go)
    if json_out:
        print_json(expl.to_dict())
    else:
        console.print(expl)
