"""A read-only, precompiled snapshot of the ``stalwart`` package for the sandbox.

The sandbox runs ``python -I -S -B``: it never writes bytecode, so without a cache every sandbox
would compile each framework module it imports from source (a user's app module imports the
engine). Once per worker process the host copies the package into a private
directory, compiles them there (``UNCHECKED_HASH`` pycs: the snapshot never changes after it is
built), and binds that directory read-only in place of the package. The snapshot also pins what
the sandbox runs to the bytes the worker started with.
"""

from __future__ import annotations

import atexit
import compileall
import os
import py_compile
import shutil
import tempfile
import threading
from pathlib import Path

__all__ = ["framework_snapshot"]

_LOCK = threading.Lock()
_SNAPSHOTS: dict[str, str] = {}


def framework_snapshot(pkg_dir: str | Path) -> str:
    """Path of the compiled snapshot of ``pkg_dir`` (built on first use, removed at exit).

    The directory is created by ``mkdtemp`` (a name nobody could have planted), then opened to
    everyone for reading only, so the sandbox uid can import from it and nobody can change it.
    """
    key = str(Path(pkg_dir).resolve())
    with _LOCK:
        found = _SNAPSHOTS.get(key)
        if found is not None and os.path.isdir(found):
            return found
        top = tempfile.mkdtemp(prefix="stalwart-sandbox-lib-")
        atexit.register(shutil.rmtree, top, True)
        dst = Path(top) / "stalwart"
        shutil.copytree(key, dst, ignore=shutil.ignore_patterns("__pycache__", ".*", "*.pyc"))
        compileall.compile_dir(
            str(dst),
            quiet=2,
            workers=1,
            ddir="/opt/stalwart/lib/stalwart",
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        for dirpath, _dirnames, filenames in os.walk(top):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        _SNAPSHOTS[key] = str(dst)
        return str(dst)
