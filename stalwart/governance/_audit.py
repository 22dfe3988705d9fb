"""The audit log: append, checkpoint, prove.

Two ways in. :meth:`AuditLog.append` writes events in a transaction of its own (kill switch,
settings, policy and compliance actions). For steps, :meth:`AuditLog.prepare` turns events into
canonical bodies that the engine hands to ``store.commit_step(..., audit_bodies=...)``, which runs
:func:`chain_insert_sql` inside the step's own transaction: a step is never recorded without its
audit entry, and a rolled-back step leaves none.

Checkpoints are signed every ``checkpoint_every`` entries or ``checkpoint_interval_s`` seconds,
whichever comes first (call :meth:`after_commit` after a commit that carried audit bodies, or run
:meth:`run_checkpointer`). Each carries the log's identity (:meth:`AuditLog.log_id`, created once
with the database) and is copied, write-once, to the ``anchor`` (``open_anchor(anchor_url)``, or
``checkpoint_dir``) under that identity. An anchor that cannot be written (S3 down) is logged and
retried at the next checkpoint; it never fails a run: the database keeps the checkpoint meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stalwart.governance._anchor import CheckpointAnchor, DirectoryAnchor
from stalwart.governance._checkpoint import Checkpoint, load_private_key, public_bytes, sign_checkpoint
from stalwart.governance._db import GovDb, chain_insert_sql, gov_db
from stalwart.governance._events import AuditEvent
from stalwart.governance._merkle import Frontier, consistency_proof, inclusion_proof, leaf_hash
from stalwart.governance._proofs import ConsistencyProof, InclusionProof
from stalwart.governance._signing_key import stored_signing_key

__all__ = ["AuditLog", "PreparedAudit"]

_log = logging.getLogger("stalwart.governance")
DAY = 86_400.0
DEFAULT_RETENTION_DAYS = 7 * 365


@dataclass(frozen=True, slots=True)
class PreparedAudit:
    """Events made ready for a caller's transaction: ``bodies[i]`` is ``events[i]`` canonicalised."""

    events: tuple[AuditEvent, ...]
    bodies: tuple[str, ...]

    def sql(self, dialect: str) -> str:
        return chain_insert_sql(dialect)

    def params(self, dialect: str) -> Any:
        """``executemany`` rows for SQLite, the single array parameter for PostgreSQL."""
        return [(b,) for b in self.bodies] if dialect == "sqlite" else (list(self.bodies),)

    def __len__(self) -> int:
        return len(self.bodies)


class AuditLog:
    """The tamper-evident audit log of one store.

    ``signing_key``: an Ed25519 private key, 32 raw bytes or PEM; ``None`` uses a key generated
    once and kept in the store (fine embedded; see :mod:`._signing_key`). ``anchor``: where
    checkpoints are copied (:func:`open_anchor`); ``checkpoint_dir`` is the older directory form. ``clock`` and ``new_id``
    are injected so that tests and replays are deterministic.
    """

    def __init__(
        self,
        store: Any,
        *,
        signing_key: Any = None,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        checkpoint_dir: str | Path | None = None,
        anchor: CheckpointAnchor | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.store = store
        self.db: GovDb = gov_db(store)
        self.dialect = self.db.dialect
        self.clock = clock
        self.new_id = new_id
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.anchor: CheckpointAnchor | None = anchor or (
            DirectoryAnchor(checkpoint_dir) if checkpoint_dir else None
        )
        self._key = load_private_key(signing_key) if signing_key is not None else None
        self._log_id: str | None = None
        self._unanchored: list[Checkpoint] = []
        self.anchor_failures = 0
        """Anchor writes that failed (each is retried at the next checkpoint)."""
        self._since_checkpoint = 0
        self._last_checkpoint_at = clock()
        self._cp_lock = asyncio.Lock()

    # -- identity and keys ---------------------------------------------------------------------
    async def log_id(self) -> str:
        """This log's identity: a random id created once with the database, never changed."""
        if self._log_id is None:
            self._log_id = await self.db.log_id()
        return self._log_id

    async def signing_key(self) -> Any:
        if self._key is None:
            self._key = await stored_signing_key(self.store, self.clock)
        return self._key

    async def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key that verifies this log's checkpoints."""
        return public_bytes((await self.signing_key()).public_key())

    async def verify(self, *, anchor: CheckpointAnchor | None = None, merkle: bool = False) -> Any:
        """:func:`verify_chain` of this log with its own public key (from ``signing_key`` when one
        was given) and its own anchor (``anchor`` overrides it): every entry point that verifies
        through the app's one log reaches the same verdict."""
        from stalwart.governance._verify import verify_chain

        key = await self.public_key()
        return await verify_chain(self.store, key, anchor=anchor or self.anchor, merkle=merkle)

    # -- writing -------------------------------------------------------------------------------
    def prepare(self, events: Iterable[AuditEvent]) -> PreparedAudit:
        """Fill ids and timestamps, canonicalise: the result goes into the caller's transaction."""
        now = self.clock()
        done = tuple(e.completed(self.new_id(), now) for e in events)
        return PreparedAudit(done, tuple(e.body() for e in done))

    async def append(self, events: Iterable[AuditEvent] | PreparedAudit) -> PreparedAudit:
        """Chain ``events`` in their own transaction; returns them with ids and timestamps."""
        prepared = events if isinstance(events, PreparedAudit) else self.prepare(events)
        if prepared.bodies:
            await self.db.append(prepared.bodies)
            await self.after_commit(len(prepared))
        return prepared

    async def record(self, event_type: str, **fields: Any) -> AuditEvent:
        """Append one event built from keyword fields (see :class:`AuditEvent`)."""
        return (await self.append([AuditEvent(event_type, **fields)])).events[0]

    # -- checkpoints ---------------------------------------------------------------------------
    async def after_commit(self, n: int = 1) -> Checkpoint | None:
        """Note ``n`` entries committed elsewhere; sign a checkpoint when one is due."""
        self._since_checkpoint += n
        due = self._since_checkpoint >= self.checkpoint_every or (
            self.clock() - self._last_checkpoint_at >= self.checkpoint_interval_s
        )
        return await self.checkpoint() if due else None

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the current head (if it moved since the last checkpoint) and anchor it."""
        async with self._cp_lock:
            self._since_checkpoint = 0
            self._last_checkpoint_at = self.clock()
            await self._anchor_pending()
            size, _ = await self.db.head()
            cps = await self.db.checkpoints()
            last = cps[-1] if cps else None
            if size == 0 or (last is not None and last.tree_size >= size):
                return None
            frontier = Frontier.from_bytes(last.tree_size, last.frontier) if last else Frontier()
            hashes = await self.db.entry_hashes(frontier.size, size)
            if len(hashes) != size - frontier.size:
                raise RuntimeError(
                    f"audit log has {len(hashes)} entries between {frontier.size} and {size}: it was purged"
                    " past the last checkpoint or tampered with; run `stalwart audit verify`"
                )
            frontier.extend(leaf_hash(h) for h in hashes)
            cp = sign_checkpoint(
                await self.signing_key(), size, hashes[-1], frontier.root(), self.clock(), frontier.to_bytes(),
                log_id=await self.log_id(),
            )
            await self.db.add_checkpoint(cp)
            if self.anchor is not None:
                self._unanchored.append(cp)
                await self._anchor_pending()
            return cp

    async def _anchor_pending(self) -> None:
        while self._unanchored and self.anchor is not None:
            cp = self._unanchored[0]
            try:
                await self.anchor.put(cp)
            except Exception as exc:  # noqa: BLE001 - the DB holds the checkpoint; retried next time
                self.anchor_failures += 1
                _log.error("audit checkpoint %d not anchored in %s (retried at the next checkpoint): %s",
                           cp.tree_size, self.anchor.where, exc)
                return
            self._unanchored.pop(0)

    async def run_checkpointer(self, interval_s: float | None = None) -> None:
        """Sign a checkpoint every ``interval_s`` seconds (for a worker's background task)."""
        period = interval_s or self.checkpoint_interval_s
        while True:
            await asyncio.sleep(period)
            try:
                await self.checkpoint()
            except Exception:  # noqa: BLE001 - a failed checkpoint is retried next period, never raised into runs
                _log.exception("audit checkpoint failed")

    # -- proofs --------------------------------------------------------------------------------
    async def _covering(self, size: int | None) -> Checkpoint:
        cps = await self.db.checkpoints()
        if size is not None:
            for cp in cps:
                if cp.tree_size == size:
                    return cp
            raise ValueError(f"no signed checkpoint at tree size {size}")
        fresh = await self.checkpoint()
        if fresh is not None:
            return fresh
        cps = await self.db.checkpoints()
        if not cps:
            raise ValueError("the audit log is empty")
        return cps[-1]

    async def _leaves(self, size: int) -> list[bytes]:
        start, _ = await self.db.start()
        if start > 0:
            raise ValueError("proofs need the whole log; entries before a retention purge are gone")
        return [leaf_hash(h) for h in await self.db.entry_hashes(0, size)]

    async def prove(self, event_id: str, tree_size: int | None = None) -> InclusionProof:
        """An RFC 6962 inclusion proof of ``event_id`` against a signed checkpoint (the latest by
        default, signed now if the head moved)."""
        found = await self.db.find_event(event_id)
        if found is None:
            raise KeyError(f"no audit entry with event_id {event_id!r}")
        seq, body, entry_hash = found
        cp = await self._covering(tree_size)
        if seq >= cp.tree_size:
            raise ValueError(f"entry {seq} is not covered by the checkpoint of size {cp.tree_size}")
        leaves = await self._leaves(cp.tree_size)
        return InclusionProof(event_id, seq, entry_hash, inclusion_proof(leaves, seq, cp.tree_size), cp, body)

    async def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """An RFC 6962 consistency proof between two signed checkpoints."""
        old = await self._covering(old_size)
        new = await self._covering(new_size)
        leaves = await self._leaves(new.tree_size)
        return ConsistencyProof(old, new, consistency_proof(leaves, old.tree_size, new.tree_size))

    # -- reading and retention -----------------------------------------------------------------
    async def events(self, *, run_ids: Sequence[str] = (), user_id: str | None = None) -> list[AuditEvent]:
        return [AuditEvent.from_body(b) for _, b in await self.db.bodies(run_ids=run_ids, user_id=user_id)]

    async def purge_expired(
        self,
        *,
        operator: str,
        retention_days: Mapping[str, float] | None = None,
        default_days: float = DEFAULT_RETENTION_DAYS,
    ) -> int:
        """Delete the longest prefix of the log whose entries are all past their org's retention.

        The chain stays verifiable: the purge records the hash the first kept entry links to, a
        checkpoint is signed first, and the purge is itself audited. The newest entry is never purged.
        """
        days = dict(retention_days or {})
        now = self.clock()
        await self.checkpoint()
        start, _ = await self.db.start()
        size, _ = await self.db.head()
        upto, anchor = -1, b""
        async for rows in self.db.scan(start, 5000):
            for seq, body, _prev, h in rows:
                ev = AuditEvent.from_body(body)
                limit = days.get(ev.org_id, default_days) * DAY
                if seq >= size - 1 or (ev.timestamp or now) + limit > now:
                    break
                upto, anchor = seq, bytes(h)
            else:
                continue
            break
        if upto < start:
            return 0
        n = await self.db.purge(upto, anchor, now, f"retention by {operator}")
        await self.append(
            [
                AuditEvent(
                    "audit.purged",
                    action="purge",
                    actor=f"user:{operator}",
                    resource="audit_log",
                    details={
                        "upto_seq": upto,
                        "deleted": n,
                        "retention_days": days,
                        "default_days": default_days,
                    },
                )
            ]
        )
        await self.checkpoint()
        return n

    async def close(self) -> None:
        """Sign a final checkpoint so the tail written by this process is covered."""
        with contextlib.suppress(Exception):
            await self.checkpoint()
