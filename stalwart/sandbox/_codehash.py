"""The code hash of a tool module: SHA-256 of its source file, re-read only when the file changes."""

from __future__ import annotations

import hashlib
import os

__all__ = ["code_hash", "module_file"]

_CACHE: dict[str, tuple[tuple[int, int, int], str]] = {}


def module_file(code_root: str, module: str) -> str:
    """The source file of ``module`` under ``code_root`` (a module file or a package ``__init__``)."""
    base = os.path.join(code_root, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    raise ValueError(f"module {module!r} is not under code_root {code_root!r}")


def code_hash(code_root: str, module: str) -> str:
    """SHA-256 of the module's source; a stat per call, a read only when size, mtime or inode moved."""
    path = module_file(code_root, module)
    st = os.stat(path)
    sig = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _CACHE.get(path)
    if hit is not None and hit[0] == sig:
        return hit[1]
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    _CACHE[path] = (sig, digest)
    return digest
