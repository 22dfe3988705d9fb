"""``stalwart keys create|list|revoke``: API keys of any org, administered by the local platform operator.

Whoever can run this command against the database is the platform operator (they hold the database
itself), so it may create, list and revoke keys in every org, e.g. an org's first admin key. Every
creation and revocation is recorded in the audit log under the operator's identity (``--as``).
The key logic is :class:`stalwart.governance.KeyStore`, the same as ``/admin/keys``.
"""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from stalwart.cli._common import console, err_console, load_app, print_json, run
from stalwart.errors import InvalidInput

__all__ = ["keys_cli"]

keys_cli = typer.Typer(help="API keys of every org (you act as the platform operator).", no_args_is_help=True)

_ME = typer.Option(None, "--as", help="Your identity (default: the OS user). Recorded in the audit log.")


def _who(given: str | None) -> str:
    return given or f"user:{getpass.getuser()}"


def _ts(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _with_keys(fn: Any) -> Any:
    from stalwart.governance import KeyStore

    app = load_app(default=None)

    async def go() -> Any:
        try:
            gov = await app.governance()
            return await fn(KeyStore(app.store, audit=gov.audit))
        finally:
            await app.close()

    return run(go)


@keys_cli.command("create")
def keys_create(
    org: str = typer.Option(..., "--org", help="The org the key belongs to."),
    role: list[str] = typer.Option(  # noqa: B008
        ..., "--role", help="viewer, operator, reviewer, admin or auditor (repeat for several)."
    ),
    name: str = typer.Option("", "--name", help="A label for people (e.g. 'ci deploys')."),
    subject: str | None = typer.Option(None, "--subject", help="Who the key acts as (default: key:KID)."),
    expires_in: float | None = typer.Option(
        None, "--expires-in", min=1, help="Seconds until the key expires (default: never)."
    ),
    who: str | None = _ME,
    json_out: bool = typer.Option(False, "--json", help="Print the key and its record as JSON."),
) -> None:
    """Create a key in ORG and print it once (only its hash is stored): KEY=$(stalwart keys create ...)."""
    if subject is not None and not 1 <= len(subject) <= 200:
        raise InvalidInput("--subject must hold 1 to 200 characters")
    if len(name) > 100:
        raise InvalidInput("--name must hold at most 100 characters")
    actor = _who(who)

    async def go(keys: Any) -> Any:
        return await keys.create(
            org=org,
            roles=role,
            name=name,
            subject=subject,
            expires_at=time.time() + expires_in if expires_in else None,
            created_by=actor,
            actor=actor,
        )

    token, rec = _with_keys(go)
    if json_out:
        print_json({**rec.public(), "key": token})
        return
    err_console.print(
        f"created key {rec.kid} in org {rec.org} ({', '.join(rec.roles)}) as {rec.subject}; "
        "it is shown once, store it now:",
        highlight=False,
    )
    typer.echo(token)


@keys_cli.command("list")
def keys_list(
    org: str | None = typer.Option(None, "--org", help="Only this org's keys (default: every org)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (never the keys themselves)."),
) -> None:
    """Every org's keys (or ORG's), revoked and expired ones included; the keys themselves are never shown."""
    if org is not None:
        from stalwart.governance import check_org

        check_org(org)

    async def go(keys: Any) -> Any:
        return await keys.list(org=org)

    recs = _with_keys(go)
    if json_out:
        print_json([r.public() for r in recs])
        return
    now = time.time()
    t = Table(title=f"{len(recs)} keys" + (f" of org {org}" if org else ""), title_justify="left")
    for col in ("kid", "org", "roles", "subject", "name", "created", "state"):
        t.add_column(col)
    for r in recs:
        state = "active" if r.active(now) else ("revoked" if r.revoked_at else "expired")
        t.add_row(r.kid, r.org, ",".join(r.roles), r.subject, r.name, _ts(r.created_at), state)
    console.print(t)


@keys_cli.command("revoke")
def keys_revoke(
    kid: str = typer.Argument(..., help="The key's id (the KID column of `keys list`)."),
    who: str | None = _ME,
) -> None:
    """Revoke a key at once (idempotent); requests made with it are refused from now on."""
    actor = _who(who)

    async def go(keys: Any) -> Any:
        return await keys.revoke(kid, actor=actor, user_id=actor)

    rec = _with_keys(go)
    if rec is None:
        raise InvalidInput(f"no key {kid!r} (see `stalwart keys list`)")
    console.print(f"key {rec.kid} of org {rec.org} revoked at {_ts(rec.revoked_at)} UTC", highlight=False)
