"""Verifying the audit log: the chain, every signed checkpoint, and optionally the Merkle roots.

What each check catches: a changed entry fails its own hash; a deleted or inserted entry breaks
the seq run or the prev-hash link; a reordered pair fails both; a consistently rewritten chain
(triggers dropped, hashes recomputed) no longer matches the signed head at the next checkpoint;
a truncated tail is shorter than the largest signed checkpoint (kept outside the database too).
Entries after the last checkpoint are protected by the chain only until the next checkpoint.

Anchors are read only under this log's own id. A checkpoint found there that names another log
(a copied or misplaced file) is reported as such in ``warnings`` and ignored: it says nothing
about this log, and it is not this log's tampering. A checkpoint *in this database* that names
another log is a failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stalwart.governance._anchor import CheckpointAnchor, DirectoryAnchor
from stalwart.governance._checkpoint import Checkpoint, checkpoint_valid, key_id, load_public_key
from stalwart.governance._db import gov_db
from stalwart.governance._merkle import Frontier, leaf_hash
from stalwart.governance._signing_key import stored_public_key

__all__ = ["VerifyReport", "verify_chain"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """``ok`` or the first bad entry (its ``event_id`` when it still exists, and its ``seq``)."""

    ok: bool
    checked: int
    first_bad_event_id: str | None = None
    reason: str = ""
    first_bad_seq: int | None = None
    checkpoints: int = 0
    tree_size: int = 0
    log_id: str = ""
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_bad_event_id": self.first_bad_event_id,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "checkpoints": self.checkpoints,
            "tree_size": self.tree_size,
            "log_id": self.log_id,
            "warnings": list(self.warnings),
        }


def _event_id(body: str) -> str | None:
    try:
        value = json.loads(body).get("event_id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


def _foreign(
    log_id: str, db_cps: list[Checkpoint], anchored: list[tuple[str, Checkpoint]], where: str
) -> tuple[list[Checkpoint], list[str], str]:
    """Split off checkpoints of other logs: anchored ones become warnings, stored ones a failure."""
    for cp in db_cps:
        if cp.log_id and cp.log_id != log_id:
            return [], [], (
                f"checkpoint at size {cp.tree_size} in this database belongs to audit log {cp.log_id},"
                f" not to this log ({log_id})"
            )
    own, warnings = [], []
    for name, cp in anchored:
        if cp.log_id == log_id:
            own.append(cp)
        else:
            warnings.append(
                f"the anchored checkpoint {where}/{name} belongs to audit log {cp.log_id or '(none: legacy)'},"
                f" not to this log ({log_id}): a copied or misplaced anchor, ignored"
            )
    return own, warnings, ""


def _merge(db_cps: list[Checkpoint], anchored: list[Checkpoint]) -> tuple[dict[int, Checkpoint], str]:
    merged = {cp.tree_size: cp for cp in db_cps}
    for cp in anchored:
        mine = merged.get(cp.tree_size)
        if mine is None:
            merged[cp.tree_size] = cp  # deleted from the database: the anchored copy still binds
        elif not mine.same_as(cp):
            return merged, f"checkpoint at size {cp.tree_size} differs between the database and the anchor"
    return merged, ""


async def verify_chain(
    store: Any,
    public_key: Any = None,
    *,
    checkpoint_dir: str | Path | None = None,
    anchor: CheckpointAnchor | None = None,
    merkle: bool = False,
    chunk: int = 20_000,
) -> VerifyReport:
    """Check the whole log. ``public_key`` (Ed25519: raw, hex or PEM) verifies every checkpoint;
    ``None`` uses the store-kept key, which only proves integrity against someone without database
    access. ``merkle=True`` also recomputes each checkpoint's Merkle root (about half the speed)."""
    db = gov_db(store)
    if public_key is None:
        public_key = await stored_public_key(store)
    key = load_public_key(public_key) if public_key is not None else None
    anchor = anchor or (DirectoryAnchor(checkpoint_dir) if checkpoint_dir else None)
    log_id = await db.log_id()
    db_cps = await db.checkpoints()
    anchored = await anchor.list(log_id) if anchor else []
    own, warnings, foreign = _foreign(log_id, db_cps, anchored, anchor.where if anchor else "")
    if foreign:
        return VerifyReport(False, 0, reason=foreign, checkpoints=len(db_cps), log_id=log_id)
    merged, conflict = _merge(db_cps, own)
    n_cps = len(merged)

    def report(*args: Any, **kw: Any) -> VerifyReport:
        return dataclasses.replace(VerifyReport(*args, **kw), log_id=log_id, warnings=tuple(warnings))

    if conflict:
        return report(False, 0, reason=conflict, checkpoints=n_cps)
    if merged and key is None:
        return report(
            False, 0, reason="no public key to check the signed checkpoints", checkpoints=n_cps
        )
    kid = key_id(key) if key is not None else ""
    for size in sorted(merged):
        cp = merged[size]
        if cp.key_id != kid or not checkpoint_valid(cp, key):
            return report(
                False, 0, reason=f"checkpoint at size {size} has an invalid signature", checkpoints=n_cps
            )

    head_size, _ = await db.head()
    start, prev = await db.start()
    sizes = sorted(s for s in merged if s > start)
    if start in merged and merged[start].head_hash != prev:
        return report(
            False,
            0,
            reason=f"the retention purge anchor disagrees with checkpoint {start}",
            first_bad_seq=start,
            checkpoints=n_cps,
        )
    frontier: Frontier | None = None
    if merkle:
        if start:
            return report(
                False,
                0,
                reason="Merkle roots cannot be recomputed after a retention purge",
                checkpoints=n_cps,
            )
        frontier = Frontier()
    cp_iter = iter(sizes)
    next_cp = next(cp_iter, -1)
    last_cp = start
    expected = start
    sha = hashlib.sha256

    def bad(seq: int, body: str | None, reason: str) -> VerifyReport:
        return report(
            False, expected - start, _event_id(body) if body else None, reason, seq, n_cps, expected
        )

    async for rows in db.scan(start, chunk):
        for seq, body, prev_hash, stored in rows:
            if seq != expected:
                return bad(
                    expected, body, f"entries {expected}..{seq - 1} are missing (the log jumps to {seq})"
                )
            if prev_hash != prev:
                return bad(seq, body, f"entry {seq} does not link to entry {seq - 1} (inserted or reordered)")
            calc = sha(prev + seq.to_bytes(8, "big") + body.encode()).digest()
            if calc != stored:
                return bad(seq, body, f"entry {seq} does not match its hash (changed)")
            prev = calc
            expected += 1
            if frontier is not None:
                frontier.append(leaf_hash(calc))
            if expected == next_cp:
                cp = merged[next_cp]
                if cp.head_hash != calc:
                    return bad(
                        seq,
                        body,
                        f"the chain was rewritten between entries {last_cp} and {seq}: it no"
                        f" longer matches the checkpoint signed at size {next_cp}",
                    )
                if frontier is not None and frontier.root() != cp.root_hash:
                    return bad(seq, body, f"the Merkle root at size {next_cp} does not match its checkpoint")
                last_cp = next_cp
                next_cp = next(cp_iter, -1)
    if next_cp != -1:
        missing = max(sizes)
        return report(
            False,
            expected - start,
            None,
            f"the log ends after {expected} entries but a checkpoint signed at size {missing}"
            " covers more: its tail was truncated",
            expected,
            n_cps,
            expected,
        )
    if expected < head_size:
        return report(
            False,
            expected - start,
            None,
            f"the log ends after {expected} entries but its head records {head_size}: its tail was truncated",
            expected,
            n_cps,
            expected,
        )
    return report(True, expected - start, None, "intact", None, n_cps, expected)
