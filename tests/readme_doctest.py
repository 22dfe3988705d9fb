"""Execute the fenced code blocks of a Markdown file verbatim, as a new user would.

Blocks: every fenced block whose language is ``bash``, ``sh``, ``console`` or ``python`` is
executed; other languages (``toml``, ``yaml``, ...) are left alone.

Grouping: the blocks of one ``##`` section (its ``###`` subsections included) run in order in
one fresh, empty folder of their own, so a later block may use what an earlier one created (the
``myapp.py`` a Python block saved, the database a command wrote). Sections are independent:
they can run in any order.

How each block runs:

- ``bash`` / ``sh``: ``bash -euo pipefail`` on the block's text, so any failing command fails it.
- ``console``: the lines starting with ``$ `` (and their ``\\`` continuations) are the commands,
  run as one ``bash -euo pipefail`` script; the other lines are sample output and are not compared.
- ``python``: ``python -`` with the block on stdin, so the folder is on ``sys.path`` (as for
  ``python snippet.py`` run in that folder) and nothing is written there.

A block passes when it exits 0 within :data:`BLOCK_TIMEOUT_S`.

Markers: an HTML comment on the line right before the fence (blank lines allowed between) changes
how the block runs. Several may be combined in one comment, separated by ``;``.

- ``<!-- doctest: file=NAME -->``: save the block as ``NAME`` in the folder first (then run it
  as usual), for the files later blocks use, e.g. ``myapp.py`` for ``--app myapp:app``.
- ``<!-- doctest: background ready=port:9464 -->`` (or ``ready=output:REGEX``): start the block
  and go on once the port accepts connections (or the output matches); it fails if the process
  exits first. It is stopped (SIGTERM to its process group, SIGKILL after a grace period) when
  its section ends, and fails then if it had already died or does not exit 0 on SIGTERM.
- ``<!-- doctest: skip REASON -->``: not run; the reason is mandatory and must say why the block
  cannot run inside a test (e.g. ``make test`` cannot run inside the suite). A skip without a
  reason, or an unknown marker, is an error. ``skip`` takes the whole comment (combine nothing with it).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BLOCK_TIMEOUT_S", "Block", "DocTestError", "Section", "parse_sections", "run_section"]

BLOCK_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0
RUNNABLE = {"bash", "sh", "console", "python"}

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*doctest:(?P<body>.*?)-->\s*$")


class DocTestError(AssertionError):
    """A block failed, or the Markdown asks for something the harness cannot do."""


@dataclass
class Block:
    """One fenced block: where it is, its language, its text and its marker options."""

    line: int
    lang: str
    code: str
    section: str
    skip: str | None = None
    file: str | None = None
    background: bool = False
    ready: str | None = None

    def label(self, source: str) -> str:
        """``README.md:117 (bash)``, for messages."""
        return f"{source}:{self.line} ({self.lang})"


@dataclass
class Section:
    """A ``##`` section and its runnable blocks, in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def slug(self) -> str:
        """A file-system and test-id friendly name."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "intro"


def _apply_marker(block: Block, body: str, source: str) -> None:
    word, _, reason = body.strip().partition(" ")
    if word == "skip":  # the reason is the rest of the comment, semicolons included
        if not reason.strip():
            raise DocTestError(f"{block.label(source)}: 'doctest: skip' needs a written reason")
        block.skip = reason.strip()
        return
    for part in (p.strip() for p in body.split(";")):
        if not part:
            continue
        word, _, rest = part.partition(" ")
        if word.startswith("file="):
            block.file = word.removeprefix("file=")
            if not block.file or "/" in block.file:
                raise DocTestError(f"{block.label(source)}: file= needs a plain file name")
        elif word == "background":
            block.background = True
            ready = rest.strip()
            if not ready.startswith(("ready=port:", "ready=output:")):
                raise DocTestError(f"{block.label(source)}: 'background' needs ready=port:N or ready=output:REGEX")
            block.ready = ready.removeprefix("ready=")
        else:
            raise DocTestError(f"{block.label(source)}: unknown doctest marker {part!r}")


def parse_sections(markdown: str, source: str = "README.md") -> list[Section]:
    """The ``##`` sections of ``markdown`` that hold runnable blocks, with those blocks."""
    sections: list[Section] = [Section("intro")]
    lines = markdown.splitlines()
    marker: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if m is None:
            if line.startswith("## "):
                sections.append(Section(line[3:].strip()))
                marker = None
            elif (mm := _MARKER.match(line)) is not None:
                marker = mm.group("body")
            elif line.strip():
                marker = None  # a marker applies only to the fence right after it
            i += 1
            continue
        fence, start = m.group("fence"), i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and not lines[i].strip().strip(fence[0])):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        lang = (m.group("info").split() or [""])[0].lower()
        if lang not in RUNNABLE:
            if marker is not None:
                raise DocTestError(f"{source}:{start}: a doctest marker on a {lang or 'plain'} block, which never runs")
            marker = None
            continue
        block = Block(start, lang, "\n".join(body) + "\n", sections[-1].title)
        if marker is not None:
            _apply_marker(block, marker, source)
            marker = None
        sections[-1].blocks.append(block)
    return [s for s in sections if s.blocks]


def console_commands(code: str) -> str:
    """The commands of a ``console`` block (``$ `` lines and their continuations) as a script."""
    out: list[str] = []
    continuing = False
    for line in code.splitlines():
        if continuing:
            out.append(line)
        elif line.startswith("$ "):
            out.append(line[2:])
        else:
            continue
        continuing = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


def _argv(block: Block) -> tuple[list[str], str]:
    """The command and the text to feed it on stdin."""
    if block.lang == "python":
        return [sys.executable, "-"], block.code
    script = console_commands(block.code) if block.lang == "console" else block.code
    return ["bash", "-euo", "pipefail", "-s"], script


def _tail(text: str, n: int = 4000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


@dataclass
class _Background:
    block: Block
    proc: subprocess.Popen[str]
    output: list[str]
    reader: threading.Thread


def _start_background(block: Block, cwd: Path, env: dict[str, str], source: str) -> _Background:
    argv, stdin_text = _argv(block)
    if block.lang != "python":  # bash reads the script from a file so that stdin stays free for the command
        script = cwd.parent / f".{cwd.name}-block-{block.line}.sh"
        script.write_text(stdin_text)
        argv = ["bash", "-euo", "pipefail", str(script)]
        stdin_text = ""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(stdin_text)
    proc.stdin.close()
    output: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        output.extend(proc.stdout)  # line by line, as the process writes

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    bg = _Background(block, proc, output, reader)
    kind, _, what = (block.ready or "").partition(":")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            reader.join(5)
            raise DocTestError(f"{block.label(source)}: the background command exited {proc.returncode} before it "
                               f"was ready ({block.ready}):\n{block.code}\n--- output ---\n{_tail(''.join(output))}")
        if kind == "port" and _port_open(int(what)) or kind == "output" and re.search(what, "".join(output)):
            return bg
        time.sleep(0.2)
    _stop(bg)
    raise DocTestError(f"{block.label(source)}: not ready ({block.ready}) after {READY_TIMEOUT_S:.0f} s:\n"
                       f"{block.code}\n--- output ---\n{_tail(''.join(output))}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _group_members(pgid: int) -> list[int]:
    """Pids of the processes in process group ``pgid`` (Linux ``/proc``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after "pid (comm)": state, ppid, pgrp
            pids.append(int(stat.parent.name))
    return pids


def _stop(bg: _Background) -> int | None:
    """SIGTERM the block's commands, SIGKILL the group after the grace period; the block's exit code.

    The shell running a bash block is left alone (a non-interactive bash dies of SIGTERM and would
    hide how its command exited): its commands get the signal and the shell exits with their status.
    """
    if bg.proc.poll() is not None:
        return None
    members = [pid for pid in _group_members(bg.proc.pid) if pid != bg.proc.pid] or [bg.proc.pid]
    for pid in members:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        code = bg.proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(bg.proc.pid, signal.SIGKILL)
        bg.proc.wait(10)
        code = -signal.SIGKILL
    bg.reader.join(5)
    return code


def run_section(section: Section, cwd: Path, env: dict[str, str], source: str = "README.md") -> list[Block]:
    """Run ``section``'s blocks in order in ``cwd``; return those that ran. Raise at the first failure."""
    background: list[_Background] = []
    ran: list[Block] = []
    failed = False
    try:
        for block in section.blocks:
            if block.skip is not None:
                continue
            if block.file is not None:
                (cwd / block.file).write_text(block.code)
            if block.background:
                background.append(_start_background(block, cwd, env, source))
            else:
                _run_block(block, section, cwd, env, source)
            ran.append(block)
    except BaseException:
        failed = True
        raise
    finally:
        problems = []
        for bg in background:
            died = bg.proc.poll()
            code = _stop(bg)
            if died is not None:
                problems.append(f"{bg.block.label(source)}: the background command died ({died}) before its "
                                f"section ended:\n{_tail(''.join(bg.output))}")
            elif code != 0:
                problems.append(f"{bg.block.label(source)}: exited {code} on SIGTERM (expected a clean drain, 0):"
                                f"\n{_tail(''.join(bg.output))}")
        if problems and not failed:
            raise DocTestError("\n".join(problems))
    return ran


def _run_block(block: Block, section: Section, cwd: Path, env: dict[str, str], source: str) -> None:
    argv, stdin_text = _argv(block)
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, input=stdin_text, capture_output=True, text=True,
                           timeout=BLOCK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DocTestError(f"{block.label(source)}: still running after {BLOCK_TIMEOUT_S:.0f} s:\n"
                           f"{block.code}") from exc
    if r.returncode != 0:
        raise DocTestError(
            f"{block.label(source)} in section {section.title!r} exited {r.returncode}:\n{block.code}"
            f"--- stdout ---\n{_tail(r.stdout)}\n--- stderr ---\n{_tail(r.stderr)}")
