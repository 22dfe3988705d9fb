"""``stalwart policy|prompt list|propose FILE|approve ID|reject ID``: what the store holds in force.

A change takes two operators: one proposes (the bundle is validated before it is stored), another
approves; every process using the store adopts the approved version within
``governance.refresh_s``. The operator is ``--operator``, else ``$STALWART_OPERATOR``, else
the OS user; the proposer can never approve their own change. Prompt templates changed at run
time follow the same rule (``stalwart prompt``).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from stalwart.cli._common import console, load_app, print_json, run
from stalwart.errors import ConfigError

__all__ = ["operator", "policy_cli", "prompt_cli"]

policy_cli = typer.Typer(
    help="Cedar policies versioned in the store; changes need two operators.", no_args_is_help=True
)

_QUIET = typer.Option(False, "--quiet", "-q", help="Print only the change id (for scripts).")
_OPERATOR = typer.Option(
    None,
    "--operator",
    envvar="STALWART_OPERATOR",
    help="Who you are (default: $STALWART_OPERATOR, else the OS user). Recorded in the audit log.",
)


_BUNDLE_PATH = typer.Argument(
    ...,
    help="A .cedar file (replaces the file of that name in the active bundle) or a directory of .cedar "
    "files with schema.cedarschema and an optional VERSION (a whole bundle).",
)


def operator(given: str | None) -> str:
    """The operator's identity: the option/env value, else the OS user."""
    who = (given or "").strip()
    if not who:
        try:
            who = getpass.getuser()
        except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (e.g. a bare container)
            raise ConfigError("cannot tell who you are: pass --operator NAME or set STALWART_OPERATOR") from None
    if any(c.isspace() for c in who):
        raise ConfigError(f"--operator {who!r} must not contain spaces")
    return who


def _ts(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _with_policy(fn: Any) -> Any:
    app = load_app()

    async def go() -> Any:
        try:
            gov = await app.governance()
            await gov.policy.sync()
            return await fn(gov.policy)
        finally:
            await app.close()

    return run(go)


@policy_cli.command("list")
def policy_list(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stored versions (the active one marked) and pending proposals."""

    async def go(policy: Any) -> dict[str, Any]:
        return {"active": policy.version, "versions": await policy.versions(), "pending": await policy.changes()}

    data = _with_policy(go)
    if json_out:
        print_json(data)
        return
    t = Table(title=f"policy versions (active: {data['active']})", title_justify="left")
    for col in ("", "version", "proposed by", "approved by", "stored at"):
        t.add_column(col)
    for v in data["versions"]:
        t.add_row("*" if v["active"] else "", v["version"], v["proposed_by"] or "(seed)", v["approved_by"] or "",
                  _ts(v["created_at"]))
    console.print(t)
    if not data["pending"]:
        console.print("no pending proposals")
        return
    p = Table(title=f"{len(data['pending'])} pending proposals", title_justify="left")
    for col in ("id", "version", "proposer", "proposed at"):
        p.add_column(col)
    for c in data["pending"]:
        p.add_row(c["id"], c["version"], c["proposer"], _ts(c["created_at"]))
    console.print(p)


@policy_cli.command("propose")
def policy_propose(
    path: Path = _BUNDLE_PATH,
    label: str | None = typer.Option(None, "--label", help="Version label (default: the bundle's VERSION file)."),
    who: str | None = _OPERATOR,
    quiet: bool = _QUIET,
) -> None:
    """Validate a bundle and record it as a pending change; a second operator approves it."""
    me = operator(who)

    async def go(policy: Any) -> tuple[str, str]:
        from stalwart.governance import PolicyBundle

        files = PolicyBundle.files_at(path, policy.bundle.files)
        change_id = await policy.propose_change(files, label=label, proposer=me)
        pending = {c["id"]: c for c in await policy.changes()}
        return change_id, pending[change_id]["version"]

    change_id, version = _with_policy(go)
    if quiet:
        print(change_id)
        return
    console.print(f"proposed {version} as change [bold]{change_id}[/bold] by {me}; "
                  f"another operator approves it with: stalwart policy approve {change_id}", highlight=False)


@policy_cli.command("approve")
def policy_approve(change_id: str = typer.Argument(..., help="The change id (see `stalwart policy list`)."),
                   who: str | None = _OPERATOR) -> None:
    """Make a pending change the active version (not by its proposer)."""
    me = operator(who)

    async def go(policy: Any) -> str:
        return str(await policy.approve_change(change_id, approver=me))

    version = _with_policy(go)
    console.print(f"[green]policy version {version} is active[/green] (approved by {me}); "
                  "every process adopts it within seconds", highlight=False)


@policy_cli.command("reject")
def policy_reject(change_id: str = typer.Argument(..., help="The change id (see `stalwart policy list`)."),
                  who: str | None = _OPERATOR) -> None:
    """Reject a pending change."""
    me = operator(who)

    async def go(policy: Any) -> None:
        await policy.reject_change(change_id, reviewer=me)

    _with_policy(go)
    console.print(f"change {change_id} rejected by {me}", highlight=False)


# -- prompt templates --------------------------------------------------------------------------
prompt_cli = typer.Typer(
    help="Prompt templates changed at run time, stored and versioned; changes need two operators.",
    no_args_is_help=True,
)

_TEMPLATE_PATH = typer.Argument(..., help="A template file NAME@VERSION.toml (the name gives the reference).")
_REF = typer.Option(None, "--ref", help="The NAME@VERSION it replaces (default: the file name without .toml).")


def _with_prompts(fn: Any) -> Any:
    app = load_app()

    async def go() -> Any:
        try:
            return await fn((await app.governance()).prompts)
        finally:
            await app.close()

    return run(go)


@prompt_cli.command("list")
def prompt_list(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stored template versions (those in force marked) and pending proposals."""

    async def go(prompts: Any) -> dict[str, Any]:
        return {"versions": await prompts.versions(), "pending": await prompts.changes()}

    data = _with_prompts(go)
    if json_out:
        print_json(data)
        return
    t = Table(title="stored prompt templates (others come from files)", title_justify="left")
    for col in ("", "template", "hash", "proposed by", "approved by", "stored at"):
        t.add_column(col)
    for v in data["versions"]:
        t.add_row("*" if v["active"] else "", v["ref"], v["content_hash"][:19], v["proposed_by"] or "",
                  v["approved_by"] or "", _ts(v["created_at"]))
    console.print(t)
    for c in data["pending"]:
        console.print(f"pending {c['id']}: {c['ref']} {c['content_hash'][:19]} by {c['proposer']}", highlight=False)
    if not data["pending"]:
        console.print("no pending proposals")


@prompt_cli.command("propose")
def prompt_propose(
    path: Path = _TEMPLATE_PATH, ref: str | None = _REF, who: str | None = _OPERATOR, quiet: bool = _QUIET
) -> None:
    """Validate a template and record it as a pending change; a second operator approves it."""
    me = operator(who)
    if not path.is_file():
        raise ConfigError(f"{path} is not a file (give a NAME@VERSION.toml template)")
    if path.suffix != ".toml":
        raise ConfigError(f"{path} is not a .toml template")
    target = ref or path.stem
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None

    async def go(prompts: Any) -> str:
        return str(await prompts.propose(target, source, proposer=me))

    change_id = _with_prompts(go)
    if quiet:
        print(change_id)
        return
    console.print(f"proposed {target} as change [bold]{change_id}[/bold] by {me}; another operator approves "
                  f"it with: stalwart prompt approve {change_id}", highlight=False)


@prompt_cli.command("approve")
def prompt_approve(change_id: str = typer.Argument(..., help="The change id (see `stalwart prompt list`)."),
                   who: str | None = _OPERATOR) -> None:
    """Put a pending template change in force (not by its proposer)."""
    me = operator(who)

    async def go(prompts: Any) -> str:
        return str(await prompts.approve(change_id, approver=me))

    digest = _with_prompts(go)
    console.print(f"[green]template {digest[:19]} is in force[/green] (approved by {me}); "
                  "every process adopts it within seconds", highlight=False)


@prompt_cli.command("reject")
def prompt_reject(change_id: str = typer.Argument(..., help="The change id (see `stalwart prompt list`)."),
                  who: str | None = _OPERATOR) -> None:
    """Reject a pending template change."""
    me = operator(who)
    _with_prompts(lambda prompts: prompts.reject(change_id, reviewer=me))
    console.print(f"change {change_id} rejected by {me}", highlight=False)
