"""``stalwart review|audit|kill-switch|compliance|inventory``: governance from the command line."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from stalwart.cli._common import console, err_console, load_app, print_json, run
from stalwart.errors import InvalidInput

review_cli = typer.Typer(help="The human review queue.", no_args_is_help=True)
audit_cli = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
kill_cli = typer.Typer(help="Stop every agent in seconds; release needs two operators.", no_args_is_help=True)
compliance_cli = typer.Typer(help="GDPR export and erasure, audit evidence.", no_args_is_help=True)

_ME = typer.Option(None, "--as", help="Your identity (default: the OS user). Recorded in the audit log.")


def _who(given: str | None) -> str:
    return given or f"user:{getpass.getuser()}"


def _ts(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _with_gov(fn: Any) -> Any:
    app = load_app()

    async def go() -> Any:
        try:
            gov = await app.governance()
            return await fn(app, gov)
        finally:
            await app.close()

    return run(go)


@review_cli.command("list")
def review_list(
    status: str = typer.Option("pending", help="pending, approved, rejected, auto_approved or all."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Reviews waiting for a decision, with their risk, policy result and SLA."""

    async def go(app: Any, gov: Any) -> list[Any]:
        await gov.reviews.escalate_overdue()
        return await gov.reviews.list(None if status == "all" else status)

    reviews = _with_gov(go)
    if json_out:
        print_json([r.to_json() for r in reviews])
        return
    t = Table(title=f"{len(reviews)} reviews ({status})", title_justify="left")
    for col in ("id", "run", "action", "risk", "severity", "due", "requester"):
        t.add_column(col)
    for r in reviews:
        action = r.proposed_action.get("tool") or r.proposed_action.get("reason", "")
        args = r.proposed_action.get("args")
        risk = (r.risk or {}).get("score")
        t.add_row(r.id, r.run_id, f"{action} {json.dumps(args) if args else ''}"[:60],
                  "" if risk is None else f"{risk:.0f}", r.severity, _ts(r.due_at), r.requester)
    console.print(t)


def _decide(review_id: str, decision: str, who: str | None, note: str, args: str | None = None) -> None:
    parsed = None
    if args is not None:
        from stalwart.cli._common import parse_json_arg

        parsed = parse_json_arg(args, "--args")

    async def go(app: Any, gov: Any) -> Any:
        return await gov.reviews.decide(review_id, _who(who), decision, parsed, note=note)

    review = _with_gov(go)
    console.print(f"review {review.id}: {decision} by {_who(who)} → {review.status} (run {review.run_id})")


@review_cli.command("approve")
def review_approve(review_id: str, who: str | None = _ME, note: str = typer.Option("", help="A note.")) -> None:
    """Approve the proposed action; the run continues."""
    _decide(review_id, "approve", who, note)


@review_cli.command("reject")
def review_reject(review_id: str, who: str | None = _ME, note: str = typer.Option("", help="Why.")) -> None:
    """Reject it; the run fails and its completed mutating steps are compensated."""
    _decide(review_id, "reject", who, note)


@review_cli.command("modify")
def review_modify(
    review_id: str,
    args: str = typer.Option(..., help="Replacement tool arguments, as JSON (validated)."),
    who: str | None = _ME,
    note: str = typer.Option("", help="Why."),
) -> None:
    """Approve with modified arguments."""
    _decide(review_id, "modify", who, note, args)


@review_cli.command("escalate")
def review_escalate(review_id: str, who: str | None = _ME, note: str = typer.Option("", help="Why.")) -> None:
    """Escalate to the next tier."""
    _decide(review_id, "escalate", who, note)


@audit_cli.command("verify")
def audit_verify(
    anchor_url: str | None = typer.Option(
        None, help="Where signed checkpoints are anchored (file:DIR or s3://bucket/prefix); default: "
        "governance.anchor_url."),
    checkpoint_dir: Path | None = typer.Option(None, help="Deprecated: same as --anchor-url file:DIR."),  # noqa: B008
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check the whole chain and every signed checkpoint. Exit 0 intact, 1 tampered (names the first bad entry)."""
    url = anchor_url or (f"file:{checkpoint_dir}" if checkpoint_dir else None)

    async def go(app: Any, gov: Any) -> Any:
        # The app's one audit log: its signing key's public half and its own anchor, as the API uses.
        if url is None:
            return await gov.audit.verify()
        from stalwart.governance import open_anchor

        s = app.settings
        return await gov.audit.verify(anchor=open_anchor(
            url, s3_endpoint_url=s.governance.anchor_s3_endpoint_url or s.artifacts.s3_endpoint_url))

    report = _with_gov(go)
    if json_out:
        print_json({"ok": report.ok, "checked": report.checked, "first_bad_event_id": report.first_bad_event_id,
                    "first_bad_seq": report.first_bad_seq, "reason": report.reason,
                    "checkpoints": report.checkpoints, "log_id": report.log_id, "warnings": list(report.warnings)})
    else:
        for warning in report.warnings:  # a misplaced anchor of another log: said, never this log's tampering
            err_console.print(f"[yellow]warning[/yellow]: {warning}")
    if not json_out and report.ok:
        console.print(f"[green]audit log intact[/green]: {report.checked} entries, {report.checkpoints} signed "
                      f"checkpoints verified (audit log {report.log_id})")
    elif not json_out:
        err_console.print(f"[bold red]audit log TAMPERED[/bold red]: first bad entry {report.first_bad_event_id} "
                          f"(seq {report.first_bad_seq}): {report.reason}")
    if not report.ok:
        raise typer.Exit(1)


@audit_cli.command("prove")
def audit_prove(event_id: str = typer.Argument(..., help="The audit event id.")) -> None:
    """An RFC 6962 inclusion proof of one entry against the latest signed checkpoint."""

    async def go(app: Any, gov: Any) -> Any:
        try:
            proof = await gov.audit.prove(event_id)
        except KeyError:  # the audit log's "no such entry"
            raise InvalidInput(f"no audit entry with event id {event_id!r}") from None
        return proof, proof.verify(await gov.audit.public_key())

    proof, ok = _with_gov(go)
    print_json({"verified": bool(ok), **proof.to_json()})


@kill_cli.command("engage")
def kill_engage(reason: str = typer.Option(..., "--reason", help="Why (recorded)."), who: str | None = _ME) -> None:
    """Stop new runs and new steps everywhere, revoke every agent credential, alert."""

    async def go(app: Any, gov: Any) -> Any:
        return await gov.kill_switch.engage(reason, _who(who))  # holds the app's credential broker

    rec = _with_gov(go)
    console.print(f"[bold red]kill switch ENGAGED[/bold red] by {rec.get('operator')}: {rec.get('reason')}")


@kill_cli.command("release")
def kill_release(who: str | None = _ME) -> None:
    """Release the switch. Needs two distinct operators: the first call records, the second releases."""

    async def go(app: Any, gov: Any) -> str:
        return str(await gov.kill_switch.release(_who(who)))

    outcome = _with_gov(go)
    messages = {"pending": "release recorded; a second, different operator must confirm",
                "released": "[green]kill switch released[/green]", "not_engaged": "the kill switch is not engaged"}
    console.print(messages.get(outcome, outcome))


@kill_cli.command("status")
def kill_status() -> None:
    """Whether the kill switch is engaged."""

    async def go(app: Any, gov: Any) -> Any:
        return await gov.kill_switch.status()

    rec = _with_gov(go)
    console.print("not engaged" if rec is None else f"ENGAGED by {rec.get('operator')}: {rec.get('reason')}")


@compliance_cli.command("export")
def compliance_export(subject: str, who: str | None = _ME) -> None:
    """GDPR Art. 15: everything held about a data subject, as JSON (vault values decrypted)."""

    async def go(app: Any, gov: Any) -> Any:
        return await (await gov.compliance()).export(subject, requester=_who(who))

    print_json(_with_gov(go))


@compliance_cli.command("erase")
def compliance_erase(subject: str, who: str | None = _ME) -> None:
    """GDPR Art. 17: delete the subject's memory and artifacts, crypto-shred their keys, scrub stored
    payloads of their runs (audited; the audit chain still verifies)."""

    async def go(app: Any, gov: Any) -> Any:
        return await (await gov.compliance()).erase(subject, requester=_who(who))

    print_json(_with_gov(go))


@compliance_cli.command("report")
def compliance_report(json_out: bool = typer.Option(False, "--json", help="Print the JSON evidence.")) -> None:
    """SOC 2 style evidence: access summary, policy versions, kill-switch drills, incidents, review SLAs."""

    async def go(app: Any, gov: Any) -> Any:
        return await (await gov.compliance()).report()

    markdown, data = _with_gov(go)
    if json_out:
        print_json(data)
    else:
        console.print(markdown, markup=False)


def inventory(json_out: bool = typer.Option(True, "--json/--text", help="JSON (default) or text.")) -> None:
    """The AI system inventory (ISO 42001): workflows, models, tools with scopes and risk."""

    async def go(app: Any, gov: Any) -> Any:
        models = [{"name": n, **m.model_dump(exclude={"api_key_env"})} for n, m in app.settings.models.items()]
        return (await gov.compliance()).inventory(app, models=models, scorer=gov.risk)

    data = _with_gov(go)
    print_json(data)
