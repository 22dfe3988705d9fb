"""``--db``, ``--app`` and ``--config`` before or after any subcommand; bad values give one clear line.

The forms are the ones written in DESIGN.md and README.md, run as a user runs them (a subprocess of
``python -m stalwart.cli`` in an empty folder), each checked by its effect on the database it names.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
MASTER_KEY = "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS0="


def _env(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "STALWART_DEMO_LEDGER": str(cwd / "payments.db"), "STALWART_MASTER_KEY": MASTER_KEY}
    for name in ("STALWART_DB", "STALWART_APP", "STALWART_CONFIG"):
        env.pop(name, None)
    return {**env, **(extra or {})}


def stalwart(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], cwd=cwd, env=_env(cwd, env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _db(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


# --- the mechanism: every command of the tree has the options, sub-apps added later included ---------


def _flags(cmd: Any) -> set[str]:
    return {opt for p in cmd.params for opt in getattr(p, "opts", [])}


def test_every_command_and_group_has_the_global_options_even_a_sub_app_added_later() -> None:
    from stalwart.cli import cli
    from stalwart.cli._options import walk

    late = typer.Typer(help="A sub-app another module registers after import.")

    @late.command("show")
    def show() -> None:
        """Print what the global options resolved to."""
        from stalwart.cli._common import state

        print(json.dumps({"db": state.db, "app": state.app}))

    cli.add_typer(late, name="zz-late")
    try:
        root = typer.main.get_command(cli)
        missing = [c.name for c in walk(root) if not {"--db", "--app", "--config"} <= _flags(c)]
        assert missing == []
        # nothing else is added: shell completion stays on the root only
        assert [c.name for c in walk(root) if "--install-completion" in _flags(c)] == [root.name]
        assert {"server", "eval", "zz-late"} <= set(root.commands)  # type: ignore[attr-defined]
        result = CliRunner().invoke(cli, ["zz-late", "show", "--db", "sqlite:///x.db", "--app", "m:a"],
                                    env={"STALWART_DB": "sqlite:///env.db"})
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"db": "sqlite:///x.db", "app": "m:a"}
        # the environment fills what the command line does not give, at any level
        result = CliRunner().invoke(cli, ["zz-late", "show"], env={"STALWART_DB": "sqlite:///env.db"})
        assert json.loads(result.stdout)["db"] == "sqlite:///env.db"
        # the state of one invocation does not leak into the next one in the same process
        result = CliRunner().invoke(cli, ["zz-late", "show"], env={"STALWART_DB": None})
        assert json.loads(result.stdout) == {"db": None, "app": None}
    finally:
        cli.registered_groups.pop()


def _paths(cmd: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = getattr(cmd, "commands", None) or {}
    return [prefix] + [p for name, sub in subs.items() for p in _paths(sub, (*prefix, name))]


def test_every_command_parses_and_validates_the_options_after_its_name() -> None:
    """``stalwart <any command> --db BAD`` is refused by the option itself (not "No such option")."""
    from stalwart.cli import cli

    paths = _paths(typer.main.get_command(cli))
    assert {("worker",), ("server",), ("eval", "run"), ("kill-switch", "engage"), ("run", "list")} <= set(paths)
    runner = CliRunner()
    wrong = []
    for path in paths:
        db = runner.invoke(cli, [*path, "--db", "mysql://x/y"])
        app = runner.invoke(cli, [*path, "--app", "nocolon"])
        config = runner.invoke(cli, [*path, "--config", "/no/such/stalwart.toml"])
        if not (db.exit_code == app.exit_code == config.exit_code == 2
                and "unsupported database scheme" in db.output and "module:attribute" in app.output
                and "not a readable file" in config.output):
            wrong.append((path, db.output, app.output, config.output))
    assert wrong == []


def test_every_numeric_option_of_every_command_refuses_a_non_number_in_one_line() -> None:
    from stalwart.cli import cli

    root = typer.main.get_command(cli)
    runner = CliRunner()
    checked, wrong = 0, []
    for path in _paths(root):
        cmd: Any = root
        for name in path:
            cmd = cmd.commands[name]
        for param in cmd.params:
            kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
            if kind not in (int, float) or getattr(param, "is_flag", False) or param.param_type_name != "option":
                continue
            flag = max(param.opts, key=len)
            result = runner.invoke(cli, [*path, flag, "abc"])
            checked += 1
            lines = result.output.strip().splitlines()
            if result.exit_code != 2 or flag not in result.output or "Traceback" in result.output or len(lines) != 1:
                wrong.append((path, flag, result.exit_code, result.output))
    assert checked >= 10
    assert wrong == []


def test_before_and_after_agree_or_it_is_an_error(tmp_path: Path) -> None:
    from stalwart.cli import cli

    same = CliRunner().invoke(cli, ["--db", _db(tmp_path, "a.db"), "run", "list", "--db", _db(tmp_path, "a.db"),
                                    "--json"], env={"STALWART_DB": None})
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout) == []
    differ = CliRunner().invoke(cli, ["--db", _db(tmp_path, "a.db"), "run", "--db", _db(tmp_path, "b.db"), "list"])
    assert differ.exit_code == 2
    assert "given twice with different values" in differ.output
    assert "a.db" in differ.output and "b.db" in differ.output
    assert not (tmp_path / "b.db").exists()
    from stalwart.cli._common import state

    assert (state.db, state.sources) == (None, {})  # nothing leaks into the next invocation in this process


# --- the documented forms, by their effect --------------------------------------------------------------


def test_demo_run_list_and_audit_verify_with_db_after_the_subcommand(tmp_path: Path) -> None:
    db = _db(tmp_path, "after.db")
    demo = stalwart("demo", "--db", db, "--model", "local", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (tmp_path / "after.db").exists()
    assert not (tmp_path / ".stalwart" / "stalwart.db").exists()  # the default database was not used
    runs = json.loads(stalwart("run", "list", "--db", db, "--json", cwd=tmp_path).stdout)
    assert len(runs) >= 6 and {r["org"] for r in runs} == {"acme"}
    before = json.loads(stalwart("--db", db, "run", "list", "--json", cwd=tmp_path).stdout)
    assert [r["id"] for r in before] == [r["id"] for r in runs]
    verify = stalwart("audit", "verify", "--db", db, cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr
    assert "audit log intact" in verify.stdout
    got = stalwart("run", "get", runs[0]["id"], "--json", "--db", db, "--app", "stalwart.examples.refund:app",
                   cwd=tmp_path)
    assert json.loads(got.stdout)["id"] == runs[0]["id"]


def test_kill_switch_engage_with_db_after_reaches_that_database_only(tmp_path: Path) -> None:
    db = _db(tmp_path, "ks.db")
    engaged = stalwart("kill-switch", "engage", "--reason", "drill", "--as", "user:ann", "--db", db, cwd=tmp_path)
    assert engaged.returncode == 0, engaged.stderr
    assert "ENGAGED" in stalwart("kill-switch", "status", "--db", db, cwd=tmp_path).stdout
    assert "not engaged" in stalwart("--db", _db(tmp_path, "other.db"), "kill-switch", "status", cwd=tmp_path).stdout


def test_eval_run_accepts_db_and_app_after_the_subcommand(tmp_path: Path) -> None:
    suite = str(REPO / "evals" / "suites" / "refund-golden")
    r = stalwart("eval", "run", suite, "--limit", "2", "--gate", "--report", str(tmp_path / "rep"), "--no-progress",
                 "--db", _db(tmp_path, "ev.db"), "--app", "stalwart.examples.refund:app", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (tmp_path / "rep" / "report.json").exists()
    bad = stalwart("eval", "run", suite, "--gate", "--db", "mysql://x/y", cwd=tmp_path)
    assert bad.returncode == 2 and "unsupported database scheme" in bad.stderr


@pytest.mark.parametrize("form", ["after", "before"])
def test_worker_takes_app_and_db_on_either_side(tmp_path: Path, form: str) -> None:
    db = _db(tmp_path, "w.db")
    opts = ["--app", "stalwart.examples.refund:app", "--db", db]
    args = ["worker", *opts, "--concurrency", "8"] if form == "after" else [*opts, "worker", "--concurrency", "8"]
    proc = subprocess.Popen([sys.executable, "-m", "stalwart.cli", *args], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    serving = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if " serving " in line:
                serving.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert serving.wait(90), "".join(lines)[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        reader.join(10)
    assert "(concurrency 8)" in "".join(lines)
    assert (tmp_path / "w.db").exists() and not (tmp_path / ".stalwart" / "stalwart.db").exists()
    assert proc.returncode == 0, "".join(lines)[-2000:]


# --- bad values: one line, names the problem, exit 2, never a traceback ---------------------------------

BAD_TOML = "db = [\n"
UNKNOWN_KEY_TOML = "no_such_setting = 1\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--db", "mysql://x/y"], "unsupported database scheme 'mysql'"),
        (["worker", "--db", "sqlite://relative.db"], "three slashes"),
        (["run", "list", "--db", "postgresql://host-only"], "names no database"),
        (["demo", "--db", "not a url"], "is not a database URL"),
        (["worker", "--app", "myapp"], "'myapp' is not of the form module:attribute"),
        (["worker", "--app", "no_such_module:app", "--db", "sqlite:///w.db"], "cannot import module 'no_such_module'"),
        (["run", "start", "refund", "--app", "json:dumps"], "is not a stalwart.App"),
        (["run", "start", "refund", "--app", "json:no_such_app"], "module 'json' has no attribute 'no_such_app'"),
        (["worker", "--app", "broken:app"], "module 'broken' has a syntax error"),
        (["run", "list", "--config", "missing.toml"], "'missing.toml' is not a readable file"),
        (["demo", "--config", "bad.toml"], "'bad.toml' is not valid TOML"),
        (["demo", "--model", "nope"], "demo --model 'nope' is not a [models.nope] entry"),
        (["run", "list", "--config", "unknown.toml"], "no_such_setting"),
        (["worker", "--concurrency", "0"], "--concurrency"),
        (["worker", "--concurrency", "abc"], "--concurrency"),
        (["server", "--port", "70000"], "--port"),
        (["server", "--port", "abc"], "--port"),
        (["run", "list", "--limit", "0"], "--limit"),
        (["run", "list", "--status", "BOGUS"], "unknown status 'BOGUS'"),
        (["run", "start", "refund", "--input", "{not json"], "--input is not valid JSON"),
        (["run", "signal", "nosuch", "go", "--payload", "{x"], "--payload is not valid JSON"),
        (["run", "get", "nosuch"], "no run with id 'nosuch'"),
        (["run", "explain", "nosuch"], "no run with id 'nosuch'"),
        (["run", "replay", "nosuch"], "no run with id 'nosuch'"),
        (["dlq", "retry", "nosuch"], "'nosuch' is not in the dead-letter queue"),
        (["review", "approve", "nosuch"], "no review with id 'nosuch'"),
        (["review", "modify", "nosuch", "--args", "[oops"], "--args is not valid JSON"),
        (["audit", "prove", "nosuch"], "no audit entry with event id 'nosuch'"),
        (["kill-switch", "engage"], "Missing option '--reason'"),
        (["eval", "run", "no-such-suite"], "no suite at 'no-such-suite'"),
        (["worker", "--no-such-flag"], "No such option: --no-such-flag"),
        (["--db", "sqlite:///a.db", "run", "list", "--db", "sqlite:///b.db"], "given twice with different values"),
    ],
)
def test_bad_values_give_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.toml").write_text(BAD_TOML)
    (tmp_path / "unknown.toml").write_text(UNKNOWN_KEY_TOML)
    (tmp_path / "broken.py").write_text("import stalwart as sw\napp = sw.App('x'\n")
    r = stalwart(*args, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert message in r.stderr, r.stderr
    assert "Traceback" not in out
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("STALWART_DB", "mysql://x/y", "$STALWART_DB: unsupported database scheme"),
     ("STALWART_APP", "nocolon", "$STALWART_APP: 'nocolon' is not of the form module:attribute"),
     ("STALWART_CONFIG", "missing.toml", "$STALWART_CONFIG: 'missing.toml' is not a readable file")],
)
def test_bad_environment_values_name_the_variable(tmp_path: Path, name: str, value: str, message: str) -> None:
    r = stalwart("run", "list", cwd=tmp_path, env={name: value})
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stdout + r.stderr
