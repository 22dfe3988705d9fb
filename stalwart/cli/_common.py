"""Shared CLI plumbing: resolving settings and the app, running coroutines, reporting errors."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from stalwart.engine import App
from stalwart.errors import (
    ConfigError,
    InvalidInput,
    RunNotFound,
    StalwartError,
    UnknownWorkflow,
)
from stalwart.settings import Settings, load_settings

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)
for _c in (console, err_console):
    if not _c.is_terminal:
        _c.width = 120  # readable logs and CI output instead of rich's 80-column default

DEFAULT_APP = "stalwart.examples.refund:app"
USER_ERRORS = (ConfigError, InvalidInput, RunNotFound, UnknownWorkflow)


class State:
    """The global options ``--db``, ``--app``, ``--config`` of this invocation, wherever they were given.

    Filled by :mod:`stalwart.cli._options` while the command line is parsed; ``sources`` says where
    each value came from (``"command line"`` or ``"environment"``, and the command path).
    """

    def __init__(self) -> None:
        self.db: str | None = None
        self.app: str | None = None
        self.config: str | None = None
        self.sources: dict[str, tuple[str, str]] = {}

    def reset(self) -> None:
        """Forget the previous invocation's options."""
        self.__init__()  # type: ignore[misc]

    def get(self, name: str) -> str | None:
        """The value of option ``name`` (``db``, ``app`` or ``config``)."""
        return getattr(self, name)  # type: ignore[no-any-return]

    def set(self, name: str, value: str, source: str, where: str) -> None:
        """Record option ``name`` given as ``value`` from ``source`` on command ``where``."""
        setattr(self, name, value)
        self.sources[name] = (source, where)


state = State()


def settings() -> Settings:
    if state.config:
        os.environ["STALWART_CONFIG"] = state.config
    return load_settings(db=state.db, app=state.app)


def load_app(required: bool = True, default: str | None = DEFAULT_APP) -> App:
    """Import ``module:attr`` from ``--app`` / ``STALWART_APP`` / settings, pointed at ``--db``."""
    s = settings()
    spec = s.app or default
    if spec is None:
        return App("stalwart-cli", settings=s)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"app: {spec!r} is not of the form module:attribute (e.g. {DEFAULT_APP})")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"app: cannot import module {module_name!r}: {exc}") from None
    except SyntaxError as exc:
        raise ConfigError(f"app: module {module_name!r} has a syntax error: {exc.msg} "
                          f"({exc.filename}, line {exc.lineno})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"app: module {module_name!r} has no attribute {attr!r}")
    app = getattr(module, attr)
    if not isinstance(app, App):
        raise ConfigError(f"app: {spec!r} is not a stalwart.App (got {type(app).__name__})")
    app.settings = app.settings.model_copy(update={"db": s.db})
    return app


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; errors are reported by :func:`report_errors` around the whole command."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None


def report_error(exc: StalwartError) -> int:
    """Print a Stalwart error without a traceback; return the exit code (2: your input, 1: the system)."""
    if isinstance(exc, USER_ERRORS):
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    err_console.print(f"[bold red]error ({exc.code}):[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return 1


def parse_json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def print_json(data: Any) -> None:
    """Plain JSON on stdout, for scripts (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
