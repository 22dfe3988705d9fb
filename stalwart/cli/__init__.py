"""The ``stalwart`` command."""

from __future__ import annotations

import typer

from stalwart.cli._alerts import alerts
from stalwart.cli._demo import demo
from stalwart.cli._doctor import doctor
from stalwart.cli._events import events_cli
from stalwart.cli._governance import audit_cli, compliance_cli, inventory, kill_cli, review_cli
from stalwart.cli._keys import keys_cli
from stalwart.cli._mcp import mcp_cli
from stalwart.cli._options import StalwartGroup
from stalwart.cli._policy import policy_cli, prompt_cli
from stalwart.cli._runs import dlq_cli, run_cli
from stalwart.cli._schedules import schedule_cli
from stalwart.cli._worker import migrate, worker

__all__ = ["cli", "main"]

cli = typer.Typer(
    name="stalwart",
    help="Stalwart: durable, observable, bounded AI agent workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    cls=StalwartGroup,  # adds --db/--app/--config to every command, one-line errors
)


@cli.callback()
def _root() -> None:
    """Stalwart: durable, observable, bounded AI agent workflows.

    --db, --app and --config work before or after any subcommand.
    """


cli.command("demo")(demo)
cli.command("worker")(worker)
cli.command("migrate")(migrate)
cli.command("doctor")(doctor)
cli.add_typer(run_cli, name="run")
cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(schedule_cli, name="schedule")
cli.add_typer(review_cli, name="review")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(kill_cli, name="kill-switch")
cli.add_typer(compliance_cli, name="compliance")
cli.command("inventory")(inventory)
cli.command("alerts")(alerts)
cli.add_typer(events_cli, name="events")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(mcp_cli, name="mcp")
cli.add_typer(policy_cli, name="policy")
cli.add_typer(prompt_cli, name="prompt")


def _register_late() -> None:
    """Commands whose modules import heavier layers (FastAPI, evals) register here."""
    from stalwart.api._cli import server
    from stalwart.evals._cli import eval_cli

    cli.command("server")(server)
    cli.add_typer(eval_cli, name="eval")


_register_late()


def main() -> None:
    """Entry point of the ``stalwart`` command (errors are reported by :class:`StalwartGroup`)."""
    cli()
