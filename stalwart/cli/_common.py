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

DEFAULT_APP = "stalwart.examples.refund:app"
USER_ERRORS = (ConfigError, InvalidInput, RunNotFound, UnknownWorkflow)


class State:
    """Options given before the sub-command (``--db``, ``--app``, ``--config``)."""

    db: str | None = None
    app: str | None = None
    config: str | None = None


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
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigError(f"app: {spec!r} is not a stalwart.App (got {type(app).__name__})")
    app.settings = app.settings.model_copy(update={"db": s.db})
    return app


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning Stalwart errors into a clear message and an exit code."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    except USER_ERRORS as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}")
        raise typer.Exit(2) from None
    except StalwartError as exc:
        err_console.print(f"[bold red]error ({exc.code}):[/bold red] {exc}")
        raise typer.Exit(1) from None


def parse_json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def print_json(data: Any) -> None:
    """Plain JSON on stdout, for scripts (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
