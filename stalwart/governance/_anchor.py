"""External anchors for checkpoints: write-once copies outside the database that a DB owner
cannot rewrite, at a URL (``[governance] anchor_url``): ``file:DIR`` or ``s3://bucket/prefix``.

Anchors are keyed by the audit log's identity: checkpoint ``N`` of log ``L`` is the object
``<anchor_url>/L/checkpoint-<N>.json``, so two databases never share or confuse their anchors.

Write-once: a directory gets ``O_EXCL`` files with mode 0444 (mount it append-only or on WORM
storage in production); S3 gets a conditional put (``If-None-Match: *``), and where the bucket has
object lock enabled, COMPLIANCE-mode retention until ``retention_s`` from now, so nobody (the
bucket's root included) can delete the anchored version before then. A plain put by someone with
write access still adds a newer version on a versioned bucket: anchors are read from each key's
*first* version, so that cannot shadow them.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Protocol

from stalwart.errors import StoreError
from stalwart.governance._checkpoint import Checkpoint
from stalwart.store import Blobs, FileBlobs, open_blobs

__all__ = ["BlobAnchor", "CheckpointAnchor", "DirectoryAnchor", "open_anchor"]

_LOG_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAME = re.compile(r"^checkpoint-(\d{12})\.json$")
DAY = 86_400.0


class CheckpointAnchor(Protocol):
    """Where signed checkpoints are copied, write-once, keyed by the audit log's id."""

    where: str
    """Human-readable location (a directory, ``s3://bucket/prefix``), for messages."""

    async def put(self, cp: Checkpoint) -> bool:
        """Anchor ``cp`` under its ``log_id``; False when that checkpoint was anchored already."""
        ...

    async def list(self, log_id: str) -> list[tuple[str, Checkpoint]]:
        """``(object name, checkpoint)`` for everything anchored under ``log_id``, by tree size.
        A checkpoint's own ``log_id`` may differ (a copied or misplaced file): callers check."""
        ...


def _check_log_id(log_id: str) -> str:
    if not _LOG_ID.match(log_id):
        raise ValueError(f"invalid audit log id {log_id!r}")
    return log_id


class BlobAnchor:
    """Checkpoints as write-once JSON objects in a :class:`~stalwart.store.Blobs` backend."""

    def __init__(
        self,
        blobs: Blobs,
        *,
        retention_s: float | None = None,
        clock: Callable[[], float] = time.time,
        where: str | None = None,
    ) -> None:
        self.blobs = blobs
        self.retention_s = retention_s
        self.clock = clock
        self.where = where or repr(blobs)

    def __repr__(self) -> str:
        return f"BlobAnchor({self.where})"

    @staticmethod
    def name(log_id: str, tree_size: int) -> str:
        """The object name of checkpoint ``tree_size`` of log ``log_id``."""
        return f"{_check_log_id(log_id)}/checkpoint-{tree_size:012d}.json"

    async def put(self, cp: Checkpoint) -> bool:
        if not cp.log_id:
            raise ValueError("only checkpoints that carry their audit log's id can be anchored")
        data = json.dumps(cp.to_json(), sort_keys=True).encode()
        until = self.clock() + self.retention_s if self.retention_s else None
        # write-once: a second writer of the same size keeps the first copy
        return await self.blobs.put_new(self.name(cp.log_id, cp.tree_size), data, retain_until=until)

    async def list(self, log_id: str) -> list[tuple[str, Checkpoint]]:
        found = []
        for name in await self.blobs.names(_check_log_id(log_id)):
            if not _NAME.match(name.rsplit("/", 1)[-1]):
                continue
            raw = await self.blobs.get_first(name)  # a later overwrite never shadows what was anchored
            if raw is None:
                continue
            try:
                found.append((name, Checkpoint.from_json(json.loads(raw))))
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"the anchored checkpoint {self.where}/{name} is unreadable: {exc}") from None
        return sorted(found, key=lambda nc: nc[1].tree_size)

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self.blobs.aclose()


class DirectoryAnchor(BlobAnchor):
    """Write-once checkpoint files ``<log id>/checkpoint-<size>.json`` under ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(FileBlobs(path), where=os.fspath(path))


def open_anchor(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    retention_days: float | None = None,
    clock: Callable[[], float] = time.time,
) -> BlobAnchor:
    """The anchor a URL names (``file:DIR`` or ``s3://bucket/prefix``); ``retention_days`` sets
    object-lock retention on buckets that have object lock. Credentials: the standard ``AWS_*``."""
    blobs = open_blobs(url, endpoint_url=s3_endpoint_url, setting="governance.anchor_url")
    where = url.rstrip("/") + (f" at {s3_endpoint_url}" if s3_endpoint_url and url.startswith("s3:") else "")
    return BlobAnchor(blobs, retention_s=retention_days * DAY if retention_days else None, clock=clock, where=where)
