#!/usr/bin/env python3
"""Refuse dependency versions known to be compromised.

Checks the lock file(s) given with ``--lock`` (default ``requirements.lock``) and the packages
installed in the running interpreter against ``supply-chain/compromised.txt``. Exit status 0 when
clean, 1 when any match (each is named), 2 on a usage error. Standard library only, so it can run
before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#\\]+)")


def normalize(name: str) -> str:
    """PEP 503 name normalisation (``LiteLLM`` and ``lite_llm`` compare as in an index)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_denylist(path: Path) -> dict[str, set[str]]:
    deny: dict[str, set[str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = _PIN.match(line)
        if not m:
            raise ValueError(f"{path}:{lineno}: expected name==version, got {line!r}")
        deny.setdefault(normalize(m.group(1)), set()).add(m.group(2))
    return deny


def locked_versions(path: Path) -> list[tuple[str, str]]:
    """``name==version`` pins of a requirements/lock file (hash continuation lines are skipped)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def installed_versions() -> list[tuple[str, str]]:
    return [(d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"]]


def find(pins: list[tuple[str, str]], deny: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted({(n, v) for n, v in pins if v in deny.get(normalize(n), ())})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--denylist", type=Path, default=ROOT / "supply-chain" / "compromised.txt")
    ap.add_argument("--lock", type=Path, action="append", help="lock file to check (repeatable)")
    ap.add_argument("--no-installed", action="store_true", help="do not check the running environment")
    args = ap.parse_args(argv)
    try:
        deny = load_denylist(args.denylist)
    except (OSError, ValueError) as exc:
        print(f"check_compromised: {exc}", file=sys.stderr)
        return 2
    bad: list[str] = []
    locks = args.lock if args.lock is not None else [p for p in [ROOT / "requirements.lock"] if p.exists()]
    for lock in locks:
        try:
            pins = locked_versions(lock)
        except OSError as exc:
            print(f"check_compromised: {exc}", file=sys.stderr)
            return 2
        bad += [f"{lock.name}: {n}=={v}" for n, v in find(pins, deny)]
    if not args.no_installed:
        bad += [f"installed in {sys.prefix}: {n}=={v}" for n, v in find(installed_versions(), deny)]
    if bad:
        print("COMPROMISED dependency versions found (see supply-chain/compromised.txt):", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        return 1
    n = sum(len(v) for v in deny.values())
    print(f"check_compromised: clean ({n} known-bad versions checked against {len(locks)} lock file(s)"
          f"{'' if args.no_installed else ' and the installed packages'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
