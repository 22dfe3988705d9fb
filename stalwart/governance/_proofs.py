"""Inclusion and consistency proofs, self-contained so that a third party can check them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stalwart.governance._checkpoint import Checkpoint, checkpoint_valid, load_public_key
from stalwart.governance._merkle import leaf_hash, verify_consistency, verify_inclusion

__all__ = ["ConsistencyProof", "InclusionProof"]


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry ``index`` (whose chain hash is ``entry_hash``) is in the tree signed by ``checkpoint``."""

    event_id: str
    index: int
    entry_hash: bytes
    path: list[bytes]
    checkpoint: Checkpoint
    body: str = ""

    def verify(self, public_key: Any) -> bool:
        """Checks the checkpoint's signature and the Merkle path to its root."""
        cp = self.checkpoint
        return checkpoint_valid(cp, load_public_key(public_key)) and verify_inclusion(
            leaf_hash(self.entry_hash), self.index, cp.tree_size, self.path, cp.root_hash
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "leaf_index": self.index,
            "entry_hash": self.entry_hash.hex(),
            "leaf_hash": leaf_hash(self.entry_hash).hex(),
            "audit_path": [p.hex() for p in self.path],
            "checkpoint": self.checkpoint.to_json(),
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The tree signed by ``new`` extends the tree signed by ``old`` (append-only between them)."""

    old: Checkpoint
    new: Checkpoint
    path: list[bytes] = field(default_factory=list)

    def verify(self, public_key: Any) -> bool:
        key = load_public_key(public_key)
        return (
            checkpoint_valid(self.old, key)
            and checkpoint_valid(self.new, key)
            and verify_consistency(
                self.old.tree_size, self.new.tree_size, self.old.root_hash, self.new.root_hash, self.path
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old.to_json(), "new": self.new.to_json(), "proof": [p.hex() for p in self.path]}
