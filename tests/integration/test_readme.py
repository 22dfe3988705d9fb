"""README.md, executed: every ``bash``/``sh``/``console``/``python`` block runs verbatim and must pass.

One test per ``##`` section of README.md. A section's blocks run in order in one fresh, empty
folder of its own (so a block may use a file an earlier block of its section saved, e.g.
``myapp.py``), with the services up and a new user's environment:

- the virtualenv's ``bin`` first on ``PATH`` (``stalwart`` and ``python`` are the installed ones)
  and ``PYTHONPATH`` set to this checkout, so the code under test is the one that runs;
- no ``STALWART_*`` variable from the caller's environment;
- ``DATABASE_URL``: a throwaway PostgreSQL database of the section's own, for blocks that show
  the scale-out store (the README says it stands for the reader's PostgreSQL URL).

Markers (``<!-- doctest: ... -->`` before a fence) start servers and workers in the background
and stop them when the section ends, save a block as a named file, or skip a block with a written
reason; see ``tests/readme_doctest.py``. ``tests/unit/test_readme_harness.py`` shows the harness
fails on a failing block.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import create_pg_database, drop_pg_database, pg_available
from tests.readme_doctest import Section, parse_sections, run_section

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SECTIONS = parse_sections(README.read_text())


def readme_env() -> dict[str, str]:
    """A new user's environment: the installed command first on PATH, no STALWART_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_") and k != "DATABASE_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    return env


def test_the_readme_has_runnable_blocks_and_few_skips() -> None:
    blocks = [b for s in SECTIONS for b in s.blocks]
    assert len(blocks) >= 5
    skipped = [b for b in blocks if b.skip is not None]
    assert len(skipped) <= 1, [f"README.md:{b.line}: {b.skip}" for b in skipped]


@pytest.fixture
def fresh_folder(request: pytest.FixtureRequest) -> Iterator[Path]:
    """An empty folder as ``mkdir`` makes it (0755 under /tmp): pytest's own tmp_path lives under a
    0700 directory, which the sandbox's unprivileged uid cannot enter to read a user's tool code."""
    folder = Path(tempfile.mkdtemp(prefix="stalwart-readme-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("section", SECTIONS, ids=[s.slug for s in SECTIONS])
def test_readme_section(section: Section, fresh_folder: Path) -> None:
    cwd = fresh_folder / section.slug
    cwd.mkdir(mode=0o755)
    env = readme_env()
    database = None
    if any("DATABASE_URL" in b.code for b in section.blocks):
        if not pg_available():
            pytest.fail("this README section needs PostgreSQL at 127.0.0.1:5432 (the services must be up)")
        database = env["DATABASE_URL"] = create_pg_database()
    try:
        ran = run_section(section, cwd, env)
    finally:
        if database is not None:
            drop_pg_database(database)
    assert ran, f"section {section.title!r}: every block was skipped"
