"""The artifact store: large payloads (model outputs, big tool results, files from tools) kept out
of the database, encrypted with the org's (or the data subject's) data key.

Rows keep only what identifies and checks a payload: ``(org, key_id, sha256, size)``. The journal
holds an :class:`ArtifactRef` (``{"$artifact": ..., "sha256": ..., "size": ...}``) in place of the
value. Objects are named ``{org}/{key_id}/{sha256}``, so identical payloads of one owner are kept
once. Objects live in a :class:`~stalwart.store._blobs.Blobs` backend opened from the
``[artifacts] url`` setting (:func:`~stalwart.store._blobs.open_blobs`): a directory (``file:``,
the default) or any S3-compatible bucket (``s3://``), so a run taken over by another host reads
the same artifacts.

Retention: each artifact has an expiry (the latest of its writers'); :meth:`ArtifactStore.sweep`
deletes expired ones. Erasure: :meth:`ArtifactStore.erase_subject` deletes a subject's objects and
shreds their key.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stalwart.errors import StoreError
from stalwart.store._blobs import Blobs, FileBlobs, S3Blobs
from stalwart.store._keys import Keyring
from stalwart.store._sql import SqlRunner

__all__ = [
    "ArtifactMissing",
    "ArtifactRef",
    "ArtifactStore",
    "Blobs",
    "FileBlobs",
    "S3Blobs",
    "is_artifact_ref",
]

_SAFE = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_TTL_S = 90 * 86400.0


class ArtifactMissing(StoreError):
    """The artifact does not exist any more (expired, erased) or its object was lost."""

    code = "artifact_missing"


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """What the journal keeps instead of a payload."""

    org: str
    key_id: str
    sha256: str
    size: int
    media_type: str = "application/octet-stream"

    @property
    def name(self) -> str:
        return f"{self.org}/{self.key_id}/{self.sha256}"

    def to_json(self) -> dict[str, Any]:
        return {"$artifact": self.name, "sha256": self.sha256, "size": self.size, "media_type": self.media_type}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ArtifactRef:
        try:
            org, key_id, sha = str(value["$artifact"]).split("/")
            size = int(value["size"])
        except (KeyError, ValueError, TypeError):
            raise StoreError("not a valid artifact reference") from None
        if not (_SAFE.match(org) and _SAFE.match(key_id) and _HEX.match(sha)) or sha != value.get("sha256", sha):
            raise StoreError("not a valid artifact reference")
        return cls(org, key_id, sha, size, str(value.get("media_type", "application/octet-stream")))


def is_artifact_ref(value: Any) -> bool:
    """True for the JSON form of an :class:`ArtifactRef` (a journal value kept out of the row)."""
    return isinstance(value, dict) and "$artifact" in value and "sha256" in value


# -- the store ---------------------------------------------------------------------------------
class ArtifactStore:
    """Encrypted, content-addressed payloads with retention and erasure.

    ``store``: the :class:`~stalwart.store.Store` holding the ``artifacts`` index and the wrapped
    data keys. ``blobs``: where objects go. ``keyring``: data keys (built from ``master_key`` when
    not given). ``inline_limit``: :meth:`externalize` keeps smaller JSON values inline.
    """

    def __init__(
        self,
        store: Any,
        blobs: Blobs,
        *,
        keyring: Keyring | None = None,
        master_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
        default_ttl_s: float = DEFAULT_TTL_S,
        inline_limit: int = 64 * 1024,
    ) -> None:
        if keyring is None:
            if master_key is None:
                from stalwart.errors import ConfigError

                raise ConfigError(
                    "the artifact store encrypts payloads at rest and needs the master key "
                    "(guard.master_key_env / guard.master_key_file)"
                )
            keyring = Keyring(store, master_key, purpose="artifacts")
        self.store = store
        self.blobs = blobs
        self.keys = keyring
        self.clock = clock
        self.default_ttl_s = default_ttl_s
        self.inline_limit = inline_limit
        self._sql = SqlRunner(store)

    async def put(
        self,
        org: str,
        data: bytes,
        *,
        subject: str | None = None,
        run_id: str | None = None,
        media_type: str = "application/octet-stream",
        ttl_s: float | None = None,
    ) -> ArtifactRef:
        """Encrypt and store ``data`` for ``org`` (under ``subject``'s own key when given, so that
        erasing the subject shreds it). Returns the reference to keep in the journal."""
        if not _SAFE.match(org):
            raise StoreError("invalid org id for an artifact")
        key_id = self.keys.key_id(org, subject)
        dek = await self.keys.get(org, key_id, create=True)
        assert dek is not None
        ref = ArtifactRef(org, key_id, hashlib.sha256(data).hexdigest(), len(data), media_type)
        now = self.clock()
        expires = now + (self.default_ttl_s if ttl_s is None else ttl_s)
        existing = await self._sql.fetch(
            "SELECT expires_at FROM artifacts WHERE org=? AND key_id=? AND sha256=?", (org, key_id, ref.sha256)
        )
        if not existing or await self.blobs.get(ref.name) is None:
            await self.blobs.put(ref.name, self.keys.seal(dek, data, ref.name))
        await self._sql.execute(
            "INSERT INTO artifacts (org, key_id, sha256, size, media_type, run_id, created_at, expires_at) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (org, key_id, sha256) DO UPDATE SET "
            "expires_at = CASE WHEN artifacts.expires_at IS NULL OR excluded.expires_at > artifacts.expires_at "
            "THEN excluded.expires_at ELSE artifacts.expires_at END",
            (org, key_id, ref.sha256, ref.size, media_type, run_id, now, expires),
        )
        return ref

    async def get(self, ref: ArtifactRef | dict[str, Any]) -> bytes:
        """The payload behind ``ref``, decrypted and checked against its hash.

        Raises :class:`ArtifactMissing` when it expired, was erased or its object is gone.
        """
        if isinstance(ref, dict):
            ref = ArtifactRef.from_json(ref)
        rows = await self._sql.fetch(
            "SELECT expires_at FROM artifacts WHERE org=? AND key_id=? AND sha256=?",
            (ref.org, ref.key_id, ref.sha256),
        )
        if not rows or (rows[0][0] is not None and rows[0][0] <= self.clock()):
            raise ArtifactMissing(f"artifact {ref.sha256[:12]}… of org {ref.org} is expired or erased")
        dek = await self.keys.get(ref.org, ref.key_id)
        blob = await self.blobs.get(ref.name)
        if dek is None or blob is None:
            raise ArtifactMissing(f"artifact {ref.sha256[:12]}… of org {ref.org} is erased or its object is lost")
        data = self.keys.open(dek, blob, ref.name)
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise StoreError(f"artifact {ref.sha256[:12]}… does not match its content hash")
        return data

    async def externalize(self, org: str, value: Any, *, limit: int | None = None, **kw: Any) -> Any:
        """``value`` itself when its JSON is at most ``limit`` bytes (default ``inline_limit``),
        else the JSON form of the :class:`ArtifactRef` that now holds it. ``kw`` go to :meth:`put`."""
        raw = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str).encode()
        if len(raw) <= (self.inline_limit if limit is None else limit):
            return value
        ref = await self.put(org, raw, media_type="application/json", **kw)
        return ref.to_json()

    async def internalize(self, value: Any) -> Any:
        """The inverse of :meth:`externalize`: a reference is fetched and decoded, anything else
        returned as it is."""
        if is_artifact_ref(value):
            return json.loads(await self.get(value))
        return value

    async def _delete(self, rows: list[tuple[Any, ...]]) -> int:
        n = 0
        for org, key_id, sha in rows:
            await self.blobs.delete(f"{org}/{key_id}/{sha}")
            n += (
                await self._sql.execute(
                    "DELETE FROM artifacts WHERE org=? AND key_id=? AND sha256=?", (org, key_id, sha)
                )
            )
        return n

    async def erase_subject(self, org: str, subject: str) -> int:
        """GDPR erasure: delete the subject's artifacts and shred their key. Returns how many."""
        key_id = self.keys.key_id(org, subject)
        rows = await self._sql.fetch("SELECT org, key_id, sha256 FROM artifacts WHERE org=? AND key_id=?", (org, key_id))
        n = await self._delete(rows)
        await self.keys.shred(org, subject)
        return n

    @staticmethod
    async def held(store: Any) -> int:
        """How many artifacts ``store`` indexes (needs no master key: used to refuse an erasure that
        could not reach them)."""
        rows = await SqlRunner(store).fetch("SELECT COUNT(*) FROM artifacts")
        return int(rows[0][0])

    async def subject_orgs(self, subject: str) -> list[str]:
        """GDPR reach: the orgs holding artifacts sealed under ``subject``'s own key."""
        orgs = [str(r[0]) for r in await self._sql.fetch("SELECT DISTINCT org FROM artifacts")]
        found = []
        for org in orgs:
            key_id = self.keys.key_id(org, subject)
            rows = await self._sql.fetch("SELECT 1 FROM artifacts WHERE org=? AND key_id=? LIMIT 1", (org, key_id))
            if rows:
                found.append(org)
        return sorted(found)

    async def subject_refs(
        self, org: str, subject: str, *, run_ids: list[str] | tuple[str, ...] = ()
    ) -> list[tuple[ArtifactRef, str | None]]:
        """GDPR export: ``(reference, run id)`` of every artifact of ``subject`` in ``org``: those
        under the subject's key and those written by ``run_ids``."""
        cols = "SELECT org, key_id, sha256, size, media_type, run_id FROM artifacts "
        rows = list(
            await self._sql.fetch(cols + "WHERE org=? AND key_id=?", (org, self.keys.key_id(org, subject)))
        )
        for run_id in run_ids:
            rows += await self._sql.fetch(cols + "WHERE org=? AND run_id=?", (org, run_id))
        seen: dict[str, tuple[ArtifactRef, str | None]] = {}
        for o, key_id, sha, size, media_type, run_id in rows:
            ref = ArtifactRef(o, key_id, sha, int(size), media_type)
            seen.setdefault(ref.name, (ref, run_id))
        return list(seen.values())

    async def erase_runs(self, org: str, run_ids: list[str]) -> int:
        """Delete the artifacts first written by these runs (a run's retention ended)."""
        n = 0
        for run_id in run_ids:
            rows = await self._sql.fetch(
                "SELECT org, key_id, sha256 FROM artifacts WHERE org=? AND run_id=?", (org, run_id)
            )
            n += await self._delete(rows)
        return n

    async def sweep(self, now: float | None = None, limit: int = 1000) -> int:
        """Retention: delete artifacts whose expiry passed. Returns how many were deleted."""
        at = self.clock() if now is None else now
        rows = await self._sql.fetch(
            "SELECT org, key_id, sha256 FROM artifacts WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
            (at, limit),
        )
        return await self._delete(rows)

    async def usage(self, org: str | None = None) -> tuple[int, int]:
        """``(count, bytes)`` of live artifacts, for one org or all."""
        if org is None:
            rows = await self._sql.fetch("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM artifacts")
        else:
            rows = await self._sql.fetch("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM artifacts WHERE org=?", (org,))
        return int(rows[0][0]), int(rows[0][1])
