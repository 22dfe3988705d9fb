"""``--db``, ``--app`` and ``--config`` on every command, before or after the subcommand.

The root group of ``stalwart`` is a :class:`StalwartGroup`. When Typer builds the click tree
(on every invocation, after every ``cli.command(...)`` and ``cli.add_typer(...)`` has run), the
root walks the whole tree and appends the three options to every group and command that does not
declare a flag of the same name itself. A command or sub-app added later by anyone therefore gets
them with no code of its own: it reads them through ``stalwart.cli._common.settings()`` /
``load_app()`` (or ``state.db`` / ``state.app`` / ``state.config``).

Precedence and conflicts:

- a value on the command line beats the environment (``STALWART_DB``, ``STALWART_APP``,
  ``STALWART_CONFIG``), which beats ``stalwart.toml`` and the defaults;
- the same option at several levels with the same value is fine
  (``stalwart --db X run list --db X``); with different values it is a usage error (exit 2) that
  names both, because silently picking one would run against the wrong database;
- a command that declares its own ``--db`` / ``--app`` (``eval harvest|shadow|drift|queue``)
  keeps it (its function receives the value), but the value is validated and recorded the same
  way, so the conflict rule holds there too; such a command falls back on ``state`` when its own
  is not given.

The root group also turns every usage error and every :class:`~stalwart.errors.StalwartError`
into one line on stderr (exit 2 for the user's mistakes, 1 for the system's), never a traceback,
whichever way the command was invoked (``stalwart``, ``python -m stalwart.cli``, ``CliRunner``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from stalwart.cli._common import err_console, report_error, state
from stalwart.errors import ConfigError, StalwartError

__all__ = ["GLOBAL_FLAGS", "StalwartGroup", "add_global_options", "walk"]

GLOBAL_FLAGS = ("--db", "--app", "--config")
_PANEL = "Global options (before or after the subcommand)"


def _check_db(value: str) -> str | None:
    from stalwart.store import parse_db_url

    try:
        parse_db_url(value)
    except ConfigError as exc:
        return str(exc).removeprefix("db: ")
    return None


def _check_app(value: str) -> str | None:
    module, sep, attr = value.partition(":")
    if not sep or not module.strip() or not attr.strip():
        return f"{value!r} is not of the form module:attribute (e.g. myapp:app)"
    return None


def _check_config(value: str) -> str | None:
    path = Path(value)
    if not path.is_file():
        return f"{value!r} is not a readable file"
    try:
        tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        return f"{value!r} cannot be read: {exc}"
    except tomllib.TOMLDecodeError as exc:
        return f"{value!r} is not valid TOML: {exc}"
    return None


_CHECKS = {"db": _check_db, "app": _check_app, "config": _check_config}


def _merge(ctx: typer.Context, param: Any, value: str | None) -> None:
    """Validate one occurrence of a global option and record it in the CLI state."""
    _record(ctx, param, param.name, value)


def _validate_own(ctx: Any, param: Any, value: Any) -> Any:
    """For a command's own ``--db``/``--app``/``--config``: validated and recorded the same way, kept as given."""
    if isinstance(value, str):
        _record(ctx, param, next(f for f in GLOBAL_FLAGS if f in param.opts)[2:], value)
    return value


def _record(ctx: Any, param: Any, name: str, value: str | None) -> None:
    if value is None:
        return
    source = ctx.get_parameter_source(param.name)
    from_env = source is not None and source.name == "ENVIRONMENT"
    hint = f"${param.envvar}" if from_env else f"'--{name}'"
    problem = _CHECKS[name](value)
    if problem is not None:
        raise typer.BadParameter(problem, ctx=ctx, param_hint=hint)
    seen = state.sources.get(name)
    if from_env:
        if seen is None:  # the environment only fills what no command line gave
            state.set(name, value, "environment", ctx.command_path)
        return
    if seen is not None and seen[0] == "command line" and state.get(name) != value:
        raise typer.BadParameter(
            f"given twice with different values: {state.get(name)!r} (on '{seen[1]}') and {value!r} "
            f"(on '{ctx.command_path}'); give it once", ctx=ctx, param_hint=hint,
        )
    state.set(name, value, "command line", ctx.command_path)


def _template_params() -> list[Any]:
    """The three options as Typer builds them (so help, env vars and types match Typer's own)."""

    def options(
        db: str | None = typer.Option(None, "--db", envvar="STALWART_DB", callback=_merge, expose_value=False,
                                      rich_help_panel=_PANEL,
                                      help="Database URL (sqlite:///PATH or postgresql://...)."),
        app: str | None = typer.Option(None, "--app", envvar="STALWART_APP", callback=_merge, expose_value=False,
                                       rich_help_panel=_PANEL, help="Application as module:attribute."),
        config: str | None = typer.Option(None, "--config", envvar="STALWART_CONFIG", callback=_merge,
                                          expose_value=False, rich_help_panel=_PANEL,
                                          help="Settings file (TOML)."),
    ) -> None:
        """Template."""

    holder = typer.Typer(add_completion=False)
    holder.command()(options)
    return [p for p in typer.main.get_command(holder).params if set(GLOBAL_FLAGS).intersection(p.opts)]


_TEMPLATES: list[Any] | None = None


def walk(command: Any) -> Iterator[Any]:
    """``command`` and every group and command below it."""
    yield command
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from walk(sub)


def add_global_options(command: Any) -> None:
    """Give ``command`` and everything below it ``--db/--app/--config`` (those it lacks)."""
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _template_params()
    for cmd in walk(command):
        taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        for template in _TEMPLATES:
            if not taken.intersection(template.opts):
                cmd.params.append(template)
        for own in cmd.params:  # a command's own --db etc.: same checks, same conflict rule
            if own not in _TEMPLATES and set(GLOBAL_FLAGS).intersection(getattr(own, "opts", [])) \
                    and own.callback is None:
                own.callback = _validate_own


class StalwartGroup(TyperGroup):
    """The root ``stalwart`` group: global options everywhere, one-line errors."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        add_global_options(self)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        finally:
            state.reset()  # one process may run several invocations (tests, CliRunner): none leaks

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        if parent is None:
            state.reset()
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except (typer.TyperException, StalwartError) as exc:
            if _passes_through(exc):
                raise
            raise _one_line(exc) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, StalwartError) as exc:
            if _passes_through(exc):
                raise
            raise _one_line(exc) from None


def _passes_through(exc: BaseException) -> bool:
    """``Exit``, "no arguments: here is the help" (already printed) and Typer errors without a message."""
    if isinstance(exc, StalwartError):
        return False
    return (isinstance(exc, typer.Exit) or type(exc).__name__ == "NoArgsIsHelpError"
            or not hasattr(exc, "format_message"))


def _one_line(exc: typer.TyperException | StalwartError) -> typer.Exit:
    """Print ``exc`` as one line on stderr; return the ``Exit`` carrying its exit code."""
    if isinstance(exc, StalwartError):
        return typer.Exit(report_error(exc))
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = escape(" ".join(exc.format_message().split()) + hint)  # type: ignore[attr-defined]
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(getattr(exc, "exit_code", 2))
