"""External anchors for checkpoints: copies outside the database that a DB owner cannot rewrite.

:class:`DirectoryAnchor` writes one file per checkpoint with ``O_EXCL`` and mode 0444 (mount the
directory append-only or on WORM storage in production). An S3 bucket with object lock would be
another implementation of the same two methods.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from stalwart.governance._checkpoint import Checkpoint

__all__ = ["CheckpointAnchor", "DirectoryAnchor"]


class CheckpointAnchor(Protocol):
    def put(self, cp: Checkpoint) -> None: ...

    def list(self) -> list[Checkpoint]: ...


class DirectoryAnchor:
    """Write-once checkpoint files ``checkpoint-<size>.json`` in ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def put(self, cp: Checkpoint) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"checkpoint-{cp.tree_size:012d}.json"
        data = json.dumps(cp.to_json(), sort_keys=True).encode()
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return  # write-once: a second writer of the same size keeps the first copy
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def list(self) -> list[Checkpoint]:
        if not self.path.is_dir():
            return []
        found = []
        for f in sorted(self.path.glob("checkpoint-*.json")):
            found.append(Checkpoint.from_json(json.loads(f.read_text())))
        return found
