"""``stalwart eval run --model``: a suite aimed at one registry entry; a wrong name is a user error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_model_is_a_one_line_user_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stalwart.cli",
            "--db",
            f"sqlite:///{tmp_path}/e.db",
            "eval",
            "run",
            str(ROOT / "evals/suites/refund-golden"),
            "--model",
            "nope",
            "--limit",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ},
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--model 'nope' is not a [models.nope] entry" in proc.stderr
    assert "embedded" in proc.stderr and "Traceback" not in proc.stderr


def test_the_suite_is_routed_to_the_named_entry() -> None:
    from stalwart.evals._cli import _target_model
    from stalwart.evals._suite import load_suite
    from stalwart.settings import Settings

    suite, settings = _target_model(
        load_suite(str(ROOT / "evals/suites/refund-golden")), Settings(), "embedded"
    )
    assert suite.provider == "settings" and suite.route == ["embedded"] and suite.name.endswith("@embedded")
    assert settings.models["embedded"].provider == "embedded" and suite.timeout_s >= 600
