"""Signed checkpoints: an Ed25519 signature over (audit log id, tree size, chain head, Merkle root,
time).

The log id (see :func:`~stalwart.governance._identity.audit_log_id`) binds a checkpoint to the one
database it was signed for; checkpoints signed before logs had ids carry ``log_id=""`` and keep
their original (v1) signed message.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Checkpoint",
    "checkpoint_valid",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_checkpoint",
]

_DOMAIN = b"stalwart-audit-checkpoint-v1\n"
_DOMAIN_V2 = b"stalwart-audit-checkpoint-v2\n"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's state at ``tree_size`` entries of the audit log ``log_id``, signed by the key
    named ``key_id``."""

    tree_size: int
    head_hash: bytes
    root_hash: bytes
    signed_at: float
    key_id: str
    signature: bytes
    frontier: bytes = b""
    log_id: str = ""

    def message(self) -> bytes:
        return _message(self.tree_size, self.head_hash, self.root_hash, self.signed_at, self.key_id, self.log_id)

    def to_json(self) -> dict[str, Any]:
        """The form written to an external anchor (no frontier: it is derivable)."""
        return {
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "head_hash": self.head_hash.hex(),
            "root_hash": self.root_hash.hex(),
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            tree_size=int(data["tree_size"]),
            head_hash=bytes.fromhex(data["head_hash"]),
            root_hash=bytes.fromhex(data["root_hash"]),
            signed_at=float(data["signed_at"]),
            key_id=str(data["key_id"]),
            signature=base64.b64decode(data["signature"]),
            log_id=str(data.get("log_id", "")),
        )

    def same_as(self, other: Checkpoint) -> bool:
        return self.to_json() == other.to_json()


def _message(size: int, head: bytes, root: bytes, at: float, kid: str, log_id: str = "") -> bytes:
    body = f"{size}\n{head.hex()}\n{root.hex()}\n{at!r}\n{kid}"
    if not log_id:
        return _DOMAIN + body.encode()
    return _DOMAIN_V2 + f"{log_id}\n{body}".encode()


def load_private_key(value: Any) -> Any:
    """An ``Ed25519PrivateKey`` from itself, 32 raw bytes, or PEM (bytes or str)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if isinstance(value, Ed25519PrivateKey):
        return value
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) == 32:
        return Ed25519PrivateKey.from_private_bytes(raw)
    key = load_pem_private_key(raw, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("the audit signing key must be an Ed25519 key")
    return key


def load_public_key(value: Any) -> Any:
    """An ``Ed25519PublicKey`` from itself, a private key, 32 raw bytes, hex, or PEM."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, Ed25519PrivateKey):
        return value.public_key()
    if isinstance(value, str) and len(value) == 64:
        value = bytes.fromhex(value)
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) == 32:
        return Ed25519PublicKey.from_public_bytes(raw)
    key = load_pem_public_key(raw)
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError("the audit public key must be an Ed25519 key")
    return key


def public_bytes(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def key_id(public_key: Any) -> str:
    """A short, stable name for a public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_bytes(load_public_key(public_key))).hexdigest()[:16]


def sign_checkpoint(
    private_key: Any,
    tree_size: int,
    head: bytes,
    root: bytes,
    at: float,
    frontier: bytes = b"",
    *,
    log_id: str = "",
) -> Checkpoint:
    """Sign the chain's state at ``tree_size`` for the audit log ``log_id``."""
    kid = key_id(private_key.public_key())
    sig = private_key.sign(_message(tree_size, head, root, at, kid, log_id))
    return Checkpoint(tree_size, head, root, at, kid, sig, frontier, log_id)


def checkpoint_valid(cp: Checkpoint, public_key: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(cp.signature, cp.message())
    except InvalidSignature:
        return False
    return True
