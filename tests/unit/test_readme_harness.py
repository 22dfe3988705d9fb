"""The README doc-test harness can fail: tiny Markdown files with failing blocks are caught."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.readme_doctest import DocTestError, parse_sections, run_section

FENCE = "```"


def md(*parts: str) -> str:
    return "\n".join(parts) + "\n"


def block(lang: str, code: str, marker: str | None = None) -> str:
    head = f"<!-- doctest: {marker} -->\n" if marker else ""
    return f"{head}{FENCE}{lang}\n{code.rstrip()}\n{FENCE}\n"


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_all(markdown: str, cwd: Path) -> list[int]:
    ran = []
    for section in parse_sections(markdown, "T.md"):
        ran += [b.line for b in run_section(section, cwd, env(), "T.md")]
    return ran


def test_sections_blocks_and_languages_are_found() -> None:
    sections = parse_sections(md(
        block("bash", "echo intro"),
        "## One", block("python", "print(1)"), "### Sub", block("console", "$ echo 2\n2"),
        block("toml", "a = 1"),
        "## Two", block("sh", "true"), "## Three (prose only)",
    ))
    assert [(s.title, [b.lang for b in s.blocks]) for s in sections] == [
        ("intro", ["bash"]), ("One", ["python", "console"]), ("Two", ["sh"])]
    assert sections[1].slug == "one"


def test_a_passing_file_runs_every_block_in_order_in_one_folder(tmp_path: Path) -> None:
    text = md("## S",
              block("python", "VALUE = 41\n", "file=helper.py"),
              block("python", "from helper import VALUE\nopen('out.txt', 'w').write(str(VALUE + 1))"),
              block("console", "$ test \"$(cat out.txt)\" = 42 && \\\n  echo same\nsame"),
              block("bash", "grep -q 42 out.txt"))
    assert len(run_all(text, tmp_path)) == 4


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("bash", "echo before\nfalse\necho after"),  # -e: a failing command in the middle fails the block
        ("bash", "false | cat"),  # pipefail
        ("bash", "echo $UNSET_VARIABLE_FOR_THE_TEST"),  # -u
        ("sh", "stalwart-no-such-command --db x"),
        ("console", "$ echo fine\nfine\n$ exit 3"),
        ("python", "raise SystemExit('the snippet is broken')"),
        ("python", "import no_such_module_for_the_test"),
    ],
)
def test_a_failing_block_fails_names_its_line_and_stops_its_section(tmp_path: Path, lang: str, code: str) -> None:
    text = md("## S", block(lang, code), block("bash", "touch later-block-ran"))
    with pytest.raises(DocTestError, match=r"T\.md:2 \(" + lang + r"\) in section 'S' exited [1-9]"):
        run_all(text, tmp_path)
    assert not (tmp_path / "later-block-ran").exists()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("skip", "needs a written reason"),
        ("skipit because", "unknown doctest marker"),
        ("background", "needs ready=port:N or ready=output:REGEX"),
        ("file=a/b.py", "plain file name"),
    ],
)
def test_bad_markers_are_errors_not_silent_skips(marker: str, message: str) -> None:
    with pytest.raises(DocTestError, match=message):
        parse_sections(md("## S", block("bash", "true", marker)))


def test_a_marker_on_a_block_that_never_runs_is_an_error() -> None:
    with pytest.raises(DocTestError, match="never runs"):
        parse_sections(md("## S", block("toml", "a = 1", "skip reasons")))


def test_a_skip_with_a_reason_is_not_run(tmp_path: Path) -> None:
    text = md("## S", block("bash", "false", "skip it needs a cluster; really"), block("bash", "true"))
    sections = parse_sections(text)
    assert sections[0].blocks[0].skip == "it needs a cluster; really"
    assert run_all(text, tmp_path) == [7]


SERVE = ("import signal, sys, time\n"
         "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
         "open('up.txt', 'w').write('up')\n"
         "print('listening', flush=True)\n"
         "while True: time.sleep(0.1)\n")


def test_a_background_block_runs_while_its_section_does_and_is_stopped_cleanly(tmp_path: Path) -> None:
    (tmp_path / "serve.py").write_text(SERVE)
    text = md("## S", block("bash", "python serve.py", "background ready=output:listening"),
              block("bash", "grep -q up up.txt"))
    assert len(run_all(text, tmp_path)) == 2


def test_a_background_block_that_dies_early_or_does_not_drain_fails(tmp_path: Path) -> None:
    early = md("## S", block("bash", "echo crashing; exit 4", "background ready=output:never printed"))
    with pytest.raises(DocTestError, match="exited 4 before it was ready"):
        run_all(early, tmp_path)
    stubborn = md("## S", block("python", "import time\nprint('up', flush=True)\ntime.sleep(600)",
                                "background ready=output:up"), block("bash", "true"))
    with pytest.raises(DocTestError, match="exited -15 on SIGTERM"):
        run_all(stubborn, tmp_path)
