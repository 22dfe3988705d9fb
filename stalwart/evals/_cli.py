"""``stalwart eval …``: run suites with gates, compare reports, and the shadow-evaluation queue.

Registered by the main CLI with ``cli.add_typer(eval_cli, name="eval")``. Exit codes: 0 passed,
1 a gate (or the regression gate, or a drift alert) failed, 2 a usage or configuration error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stalwart.errors import ConfigError, InvalidInput, RunNotFound, StalwartError, UnknownWorkflow

__all__ = ["eval_cli"]

T = TypeVar("T")
eval_cli = typer.Typer(
    help="Evaluation as CI: golden and adversarial suites, gates, A/B, shadow sampling.", no_args_is_help=True
)
queue_cli = typer.Typer(help="The annotation queue of sampled production runs.", no_args_is_help=True)
eval_cli.add_typer(queue_cli, name="queue")
out = Console()
err = Console(stderr=True)
for _c in (out, err):
    if not _c.is_terminal:
        _c.width = 120


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except (ConfigError, InvalidInput, RunNotFound, UnknownWorkflow) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except StalwartError as exc:
        err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}")
        raise typer.Exit(2) from None


def _settings(db: str | None = None, app: str | None = None) -> Any:
    """Settings with the main CLI's global ``--db/--app/--config`` when it set them."""
    import os

    from stalwart.settings import load_settings

    state: Any = None
    try:
        from stalwart.cli import _common  # the main CLI's global options, if it parsed any

        state = _common.state
    except ImportError:
        pass
    if getattr(state, "config", None):
        os.environ["STALWART_CONFIG"] = str(state.config)
    return load_settings(db=db or getattr(state, "db", None), app=app or getattr(state, "app", None))


def _production_app(db: str | None, app: str | None) -> Any:
    from stalwart.evals._runner import load_app

    s = _settings(db, app)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    the_app = load_app(s.app or "stalwart.examples.refund:app")
    the_app.settings = the_app.settings.model_copy(update={"db": s.db})
    return the_app


def _target_model(suite: Any, settings: Any, model: str) -> tuple[Any, Any]:
    """The suite and settings with every model call routed to the entry ``model``."""
    from stalwart.settings import ModelEntry

    models = dict(settings.models)
    if model == "embedded" and model not in models:
        models[model] = ModelEntry(provider="embedded", model="SmolLM2-135M-Instruct")
    if model not in models and model != "local":
        known = ", ".join(sorted({*models, "local", "embedded"}))
        raise InvalidInput(
            f"--model {model!r} is not a [models.{model}] entry of the settings (known: {known})"
        )
    settings = settings.model_copy(update={"models": models})
    kind = models[model].provider if model in models else "local"
    update: dict[str, Any] = {"provider": "settings", "route": [model], "name": f"{suite.name}@{model}"}
    if kind == "embedded":
        # A CPU model answers one call at a time at tens of tokens/s: give each case room.
        update["timeout_s"] = max(suite.timeout_s, 600.0)
    suite = suite.model_copy(update=update)
    err.print(f"eval: every model call of suite {suite.name!r} goes to {model!r} ({kind})")
    return suite, settings


def _print_report(report: Any, paths: dict[str, Path] | None) -> None:
    m = report.metrics
    table = Table(
        title=f"{report.suite} ({report.kind}, provider {report.provider}, {len(report.cases)} cases, "
        f"{report.duration_s:.1f} s)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    from stalwart.evals._report import _fmt

    for k, v in m.items():
        if v is not None:
            table.add_row(k, _fmt(k, v))
    out.print(table)
    for k, why in report.unavailable.items():
        out.print(f"[yellow]not computed[/yellow] {k}: {escape(why)}")
    if report.gates is not None:
        for c in report.gates.checks:
            mark = "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]"
            value = "missing" if c.value is None else _fmt(c.metric, c.value)
            out.print(f"{mark} {escape(c.text)}  (value {value}){'  ' + escape(c.error) if c.error else ''}")
    for r in report.regression or []:
        if r.regressed:
            mark = "[yellow]ALLOWED[/yellow]" if r.allowed else "[red]REGRESSED[/red]"
            out.print(f"{mark} {r.metric}: {r.baseline:.6g} -> {r.current:.6g} ({r.change:+.1%})")
    failing = [c for c in report.cases if not c.passed]
    for c in failing[:15]:
        out.print(f"[red]case {escape(c.id)}[/red]: {escape('; '.join(c.failures)[:200])}")
    if len(failing) > 15:
        out.print(f"... and {len(failing) - 15} more failing cases (see the report)")
    for kind, p in (paths or {}).items():
        out.print(f"{kind}: {p}")
    verdict = "[green]PASSED[/green]" if report.passed else "[red]FAILED[/red]"
    out.print(f"{report.suite}: {verdict}")


@eval_cli.command("run")
def run_cmd(
    suite: str = typer.Argument(
        ..., help="Suite directory (suite.yaml + cases.jsonl) or a bundled suite's name."
    ),
    gate: bool = typer.Option(False, "--gate", help="Exit 1 when a gate or the regression gate fails."),
    baseline: Path | None = typer.Option(  # noqa: B008
        None, "--baseline", help="A previous report.json (or its directory)."
    ),
    report: Path | None = typer.Option(  # noqa: B008
        None, "--report", help="Directory for report.json, junit.xml, report.html."
    ),
    tag: list[str] = typer.Option([], "--tag", help="Only cases with this tag (repeatable)."),  # noqa: B008
    limit: int | None = typer.Option(None, "--limit", help="At most this many cases."),
    sample: int | None = typer.Option(
        None, "--sample", help="About this many cases, spread evenly over the (tag-filtered) suite."
    ),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Override the suite's concurrency."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Answer every model call with this registry entry instead of the suite's provider "
        "('embedded': the in-process SmolLM2-135M, configured or not). Its real pass rate is "
        "reported; the bundled gates are calibrated on the scripted model.",
    ),
) -> None:
    """Run a suite through the real engine; write reports; with --gate, exit 1 if a gate fails."""
    from stalwart.evals._report import write_report
    from stalwart.evals._runner import load_report, run_suite
    from stalwart.evals._suite import load_suite

    async def go() -> Any:
        s = load_suite(suite).select(tag or None, limit, sample=sample)
        if not s.cases:
            raise InvalidInput(f"no case of suite {s.name!r} has the tags {', '.join(tag)}")
        if concurrency:
            s = s.model_copy(update={"concurrency": concurrency})
        base = load_report(baseline) if baseline else None
        settings = _settings()
        if model:
            s, settings = _target_model(s, settings, model)
        return await run_suite(
            s,
            settings=settings,
            baseline=base,
            baseline_name=str(baseline) if baseline else None,
            progress=progress and err.is_terminal,
        )

    result = _run(go)
    paths = write_report(result, report) if report else None
    _print_report(result, paths)
    if gate and not result.passed:
        raise typer.Exit(1)


@eval_cli.command("compare")
def compare_cmd(
    a: Path = typer.Argument(..., help="Report A (report.json or its directory)."),  # noqa: B008
    b: Path = typer.Argument(..., help="Report B."),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """A/B: Welch's t-test on per-case costs, latencies, tokens and scores; two-proportion z or
    Fisher's exact test on rates; p-values, effect sizes, 95% CIs and a verdict at p < 0.05."""
    from stalwart.evals._runner import load_report
    from stalwart.evals._stats import compare_reports

    try:
        ra, rb = load_report(a), load_report(b)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    cmp = compare_reports(ra, rb, a_name=f"A ({a})", b_name=f"B ({b})")
    if as_json:
        out.print_json(json.dumps(cmp.to_json()))
        return
    table = Table(title="A/B comparison (B − A)")
    for col in ("metric", "test", "A", "B", "diff", "95% CI", "p", "effect", "better"):
        table.add_column(col, justify="left" if col in ("metric", "test", "better") else "right")
    for m in cmp.metrics:
        table.add_row(
            m.metric,
            m.test,
            f"{m.a:.4g}",
            f"{m.b:.4g}",
            f"{m.diff:+.4g}",
            f"[{m.ci_low:+.3g}, {m.ci_high:+.3g}]",
            f"{m.p_value:.3g}",
            f"{m.effect_name[6:]}={m.effect_size:+.2f}",
            m.better,
        )
    out.print(table)
    out.print(f"verdict: {cmp.verdict}")


@eval_cli.command("harvest")
def harvest_cmd(
    cases: Path = typer.Option(..., "--cases", help="cases.jsonl to append to."),  # noqa: B008
    label: list[str] = typer.Option(["success"], "--label", help="Labels to harvest (repeatable)."),  # noqa: B008
    remove: bool = typer.Option(False, "--remove", help="Remove harvested items from the queue."),
    db: str | None = typer.Option(None, "--db", help="Production database URL (default: settings)."),
) -> None:
    """Turn labelled production runs into golden cases."""
    from stalwart.evals._shadow import LABELS, AnnotationQueue, harvest

    for lab in label:
        if lab not in LABELS:
            err.print(f"[red]error:[/red] --label must be one of {', '.join(LABELS)}")
            raise typer.Exit(2)

    async def go() -> list[dict[str, Any]]:
        from stalwart.store import open_store

        store = await open_store(_settings(db).db, migrate=True)
        try:
            return await harvest(AnnotationQueue(store), cases, labels=tuple(label), remove=remove)
        finally:
            await store.close()

    written = _run(go)
    out.print(f"harvested {len(written)} case(s) into {cases}")


@eval_cli.command("shadow")
def shadow_cmd(
    fraction: float = typer.Option(0.05, "--fraction", min=0.0, max=1.0, help="Fraction of runs sampled."),
    limit: int = typer.Option(1000, "--limit", help="How many of the newest runs to scan."),
    workflow: list[str] = typer.Option([], "--workflow", help="Only these workflows (repeatable)."),  # noqa: B008
    db: str | None = typer.Option(None, "--db"),
    app: str | None = typer.Option(None, "--app"),
) -> None:
    """Sample finished production runs into the annotation queue (idempotent; run it periodically)."""
    from stalwart.evals._shadow import ShadowSampler

    async def go() -> int:
        the_app = _production_app(db, app)
        try:
            return await ShadowSampler(the_app, fraction, workflows=workflow or None).sweep(limit)
        finally:
            await the_app.close()

    n = _run(go)
    out.print(f"queued {n} run(s) for annotation")


@eval_cli.command("drift")
def drift_cmd(
    suite: str = typer.Argument(..., help="The golden suite to compare production inputs with."),
    limit: int = typer.Option(200, "--limit", help="How many recent runs to compare."),
    threshold: float = typer.Option(
        0.35, "--threshold", help="Alert above this mean nearest-neighbour distance."
    ),
    workflow: str | None = typer.Option(None, "--workflow"),
    db: str | None = typer.Option(None, "--db"),
    app: str | None = typer.Option(None, "--app"),
) -> None:
    """Alert (exit 1) when recent production inputs drift away from the golden set."""
    from stalwart.evals._shadow import detect_drift
    from stalwart.evals._suite import load_suite

    async def go() -> Any:
        s = load_suite(suite)
        the_app = _production_app(db, app)
        try:
            runs = await the_app.list_runs(workflow=workflow or s.workflow.split("@")[0], limit=limit)
        finally:
            await the_app.close()
        if not runs:
            raise InvalidInput("no recent runs to compare")
        return await asyncio.to_thread(
            detect_drift,
            [r.input for r in runs],
            [c.input for c in s.cases],
            threshold=threshold,
            package=s.semantic_model,
        )

    rep = _run(go)
    out.print(
        f"drift distance {rep.distance:.3f} (threshold {rep.threshold}) over {rep.recent} recent runs, "
        f"method: {rep.method}"
    )
    if rep.alert:
        err.print("[red]ALERT[/red]: production inputs have drifted from the golden set")
        raise typer.Exit(1)


@queue_cli.command("list")
def queue_list(
    pending: bool = typer.Option(False, "--pending", help="Only unlabelled items."),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = typer.Option(None, "--db"),
) -> None:
    """List the annotation queue."""
    from stalwart.evals._shadow import AnnotationQueue

    async def go() -> list[Any]:
        from stalwart.store import open_store

        store = await open_store(_settings(db).db, migrate=True)
        try:
            return await AnnotationQueue(store).list(labelled=False if pending else None)
        finally:
            await store.close()

    items = _run(go)
    if as_json:
        out.print_json(json.dumps([i.to_json() for i in items], default=str))
        return
    table = Table(title=f"annotation queue ({len(items)})")
    for col in ("run", "workflow", "status", "label", "risk note", "input"):
        table.add_column(col)
    for i in items:
        table.add_row(
            i.run_id,
            f"{i.workflow}@{i.version}",
            i.status,
            i.label or "—",
            i.risk_note,
            json.dumps(i.input, default=str)[:60],
        )
    out.print(table)


@queue_cli.command("label")
def queue_label(
    run_id: str = typer.Argument(...),
    label: str = typer.Argument(..., help="success | partial | failure"),
    risk_note: str = typer.Option("", "--risk-note", help="What could have gone wrong."),
    annotator: str | None = typer.Option(None, "--annotator"),
    db: str | None = typer.Option(None, "--db"),
) -> None:
    """Label a queued run."""
    from stalwart.evals._shadow import AnnotationQueue

    async def go() -> Any:
        from stalwart.store import open_store

        store = await open_store(_settings(db).db, migrate=True)
        try:
            return await AnnotationQueue(store).label(run_id, label, risk_note=risk_note, annotator=annotator)
        finally:
            await store.close()

    item = _run(go)
    out.print(f"labelled {item.run_id}: {item.label}")
