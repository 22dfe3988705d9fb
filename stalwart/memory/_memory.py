"""Episodic and semantic memory: org-isolated, redacted by the guard before storage, every item
with a TTL, erasable per data subject."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from stalwart.errors import ConfigError, InjectionBlocked
from stalwart.memory._embed import Embedder, load_embedder
from stalwart.memory._search import VectorIndex, to_blob
from stalwart.store._sql import SqlRunner

__all__ = ["Memory", "MemoryItem", "Recall", "summarise_run"]

Tier = Literal["episodic", "semantic"]
DAY = 86400.0
DEFAULT_TTL_S: dict[str, float] = {"semantic": 180 * DAY, "episodic": 90 * DAY}
MAX_TEXT = 4000


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One stored memory (its text is the redacted text)."""

    id: str
    org: str
    user: str
    tier: str
    kind: str
    text: str
    run_id: str | None
    created_at: float
    expires_at: float
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "tier": self.tier, "kind": self.kind, "text": self.text, "run_id": self.run_id,
               "created_at": self.created_at, "expires_at": self.expires_at}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out


@dataclass(frozen=True, slots=True)
class Recall:
    """What a recall found, and how: ``backend`` (sqlite-vec, pgvector or exact) and ``embedder``
    (``semantic`` False means the labelled lexical fallback)."""

    items: list[MemoryItem]
    backend: str
    embedder: str
    semantic: bool

    def to_json(self) -> dict[str, Any]:
        return {"items": [i.to_json() for i in self.items], "backend": self.backend, "embedder": self.embedder,
                "semantic": self.semantic}


def _item(row: tuple[Any, ...], score: float | None = None) -> MemoryItem:
    return MemoryItem(str(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], float(row[7]), float(row[8]),
                      score)


def summarise_run(
    workflow: str, input: Any, output: Any, *, status: str = "COMPLETED", limit: int = 600
) -> str:
    """A deterministic one-paragraph summary of a run, for episodic memory (no model call).

    ``input`` and ``output`` are JSON-like; they are redacted by :meth:`Memory.record_episode`.
    """

    def compact(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}={compact(v)}" for k, v in value.items() if v not in (None, "", [], {}))
        if isinstance(value, list):
            return "[" + "; ".join(compact(v) for v in value[:5]) + (" …" if len(value) > 5 else "") + "]"
        return str(value)

    text = f"{workflow} run {status.lower()}. Input: {compact(input)}. Outcome: {compact(output)}."
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Memory:
    """Agent memory over a store.

    ``guard``: a :class:`stalwart.guard.Guard`; every text is redacted (PII → placeholders) and
    scanned for injection before it is stored, and queries are redacted before they are embedded.
    ``embedder``: defaults to all-MiniLM-L6-v2 from the ``memory`` extra (a :class:`ConfigError`
    names the extra when it is missing); pass :class:`LexicalEmbedder` for the labelled fallback.
    ``clock``: Unix seconds (inject for tests and replay). ``max_ttl_s`` caps any item's TTL.
    """

    def __init__(
        self,
        store: Any,
        guard: Any,
        *,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.time,
        default_ttl_s: dict[str, float] | None = None,
        max_ttl_s: float = 365 * DAY,
        block_injection: bool = True,
    ) -> None:
        self.store = store
        self.guard = guard
        self._embedder = embedder
        self.clock = clock
        self.default_ttl_s = {**DEFAULT_TTL_S, **(default_ttl_s or {})}
        self.max_ttl_s = max_ttl_s
        self.block_injection = block_injection
        self.index = VectorIndex(store)
        self._sql = SqlRunner(store)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder()
        return self._embedder

    @property
    def backend(self) -> str:
        """``sqlite-vec``, ``pgvector`` or ``exact`` (after the first call, or :meth:`open`)."""
        return self.index.backend

    async def open(self) -> Memory:
        """Detect the search backend and load the embedder now rather than on first use."""
        await self.index.open()
        await asyncio.to_thread(lambda: self.embedder)
        return self

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        emb = self.embedder
        return await asyncio.to_thread(emb.embed, texts)

    @staticmethod
    def _check(org: str, user: str) -> None:
        if not org or not isinstance(org, str):
            raise ValueError("memory is org-isolated: an org id is required")
        if not isinstance(user, str):
            raise TypeError("user must be a string ('' for org-wide memory)")

    def _clean(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("memory text must be a non-empty string")
        text = text.strip()[:MAX_TEXT]
        if self.block_injection:
            verdict = self.guard.scan(text, "tool")
            if verdict.action == "block":
                raise InjectionBlocked(
                    f"refused to store memory that reads as a prompt injection (score {verdict.score:.2f})"
                )
        return str(self.guard.redact(text).text)

    # -- writes ----------------------------------------------------------------------------------
    async def remember(
        self,
        org: str,
        user: str,
        text: str,
        kind: str = "fact",
        ttl_s: float | None = None,
        *,
        tier: Tier = "semantic",
        run_id: str | None = None,
    ) -> MemoryItem:
        """Store a fact or preference (semantic tier by default), redacted, for ``ttl_s`` seconds
        (default per tier, capped by ``max_ttl_s``). Remembering the same text again extends its TTL."""
        self._check(org, user)
        if tier not in ("episodic", "semantic"):
            raise ValueError("tier must be 'episodic' or 'semantic' (working memory lives in the run)")
        ttl = self.default_ttl_s[tier] if ttl_s is None else float(ttl_s)
        if not 0 < ttl:
            raise ValueError("every memory item needs a positive TTL")
        ttl = min(ttl, self.max_ttl_s)
        redacted = self._clean(text)
        await self.index.open()
        (vector,) = await self._embed([redacted])
        content_hash = hashlib.sha256(redacted.encode()).hexdigest()
        item_id = hashlib.sha256(f"{org}\0{user}\0{tier}\0{content_hash}".encode()).hexdigest()[:32]
        now = self.clock()
        sql, mode = self.index.insert_sql()
        params: list[Any] = [item_id, org, user, tier, kind, redacted, run_id, content_hash, self.embedder.name,
                             len(vector), to_blob(vector), now, now + ttl]
        if mode == "pgvector":
            params.append("[" + ",".join(f"{x:.7g}" for x in vector) + "]")
        await self._sql.execute(sql, params)
        rows = await self._sql.fetch(
            "SELECT id, org, user_id, tier, kind, text, run_id, created_at, expires_at FROM memory_items WHERE id=?",
            (item_id,),
        )
        return _item(rows[0])

    async def record_episode(
        self, org: str, user: str, run_id: str, summary: str, ttl_s: float | None = None
    ) -> MemoryItem:
        """Store the summary of a finished run in episodic memory (see :func:`summarise_run`)."""
        return await self.remember(org, user, summary, "episode", ttl_s, tier="episodic", run_id=run_id)

    # -- reads -----------------------------------------------------------------------------------
    async def recall(
        self, org: str, user: str, query: str, k: int = 5, *, tier: Tier | None = None, min_score: float = 0.0
    ) -> Recall:
        """The ``k`` live items of ``org``/``user`` nearest to ``query`` (redacted first)."""
        self._check(org, user)
        if not 1 <= k <= 100:
            raise ValueError("k must be between 1 and 100")
        q = str(self.guard.redact(query.strip()[:MAX_TEXT]).text) if query.strip() else ""
        await self.index.open()
        if not q:
            return Recall([], self.backend, self.embedder.name, self.embedder.semantic)
        (vector,) = await self._embed([q])
        hits = await self.index.search(
            vector, org=org, user=user, embedder=self.embedder.name, now=self.clock(), k=k, tier=tier
        )
        items = [_item(h.row, h.score) for h in hits if h.score >= min_score]
        return Recall(items, self.backend, self.embedder.name, self.embedder.semantic)

    async def items(self, org: str, user: str, tier: Tier | None = None) -> list[MemoryItem]:
        """Every live item of a user (e.g. for a GDPR export), newest first."""
        self._check(org, user)
        sql = ("SELECT id, org, user_id, tier, kind, text, run_id, created_at, expires_at FROM memory_items "
               "WHERE org=? AND user_id=? AND expires_at>?")
        params: list[Any] = [org, user, self.clock()]
        if tier is not None:
            sql += " AND tier=?"
            params.append(tier)
        return [_item(r) for r in await self._sql.fetch(sql + " ORDER BY created_at DESC", params)]

    # -- retention and erasure -------------------------------------------------------------------
    async def erase_subject(self, org: str, subject: str) -> int:
        """GDPR erasure: delete every memory item of data subject ``subject`` (a user id) in ``org``."""
        self._check(org, subject)
        return await self._sql.execute("DELETE FROM memory_items WHERE org=? AND user_id=?", (org, subject))

    async def subject_orgs(self, subject: str) -> list[str]:
        """GDPR reach: the orgs holding memory items of data subject ``subject`` (a user id)."""
        if not subject:
            return []
        rows = await self._sql.fetch("SELECT DISTINCT org FROM memory_items WHERE user_id=?", (subject,))
        return sorted(str(r[0]) for r in rows)

    async def subject_items(
        self, org: str, subject: str, *, run_ids: list[str] | tuple[str, ...] = ()
    ) -> list[MemoryItem]:
        """GDPR export: every item held about ``subject`` in ``org``, both tiers, expired or not (until
        pruned an expired item is still held), plus the episodes recorded from ``run_ids``."""
        self._check(org, subject)
        cols = "SELECT id, org, user_id, tier, kind, text, run_id, created_at, expires_at FROM memory_items "
        found = {r[0]: r for r in await self._sql.fetch(cols + "WHERE org=? AND user_id=?", (org, subject))}
        for run_id in run_ids:
            for r in await self._sql.fetch(cols + "WHERE org=? AND run_id=?", (org, run_id)):
                found.setdefault(r[0], r)
        return sorted((_item(r) for r in found.values()), key=lambda i: i.created_at)

    async def erase_runs(self, org: str, run_ids: list[str]) -> int:
        """Delete the episodes recorded from these runs (e.g. when a run is erased)."""
        n = 0
        for run_id in run_ids:
            n += await self._sql.execute("DELETE FROM memory_items WHERE org=? AND run_id=?", (org, run_id))
        return n

    async def prune(self, now: float | None = None) -> int:
        """Delete items whose TTL has passed; returns how many. (Expired items are never recalled
        even before this runs.)"""
        at = self.clock() if now is None else now
        return await self._sql.execute("DELETE FROM memory_items WHERE expires_at <= ?", (at,))

    async def stats(self) -> dict[str, Any]:
        rows = await self._sql.fetch("SELECT tier, COUNT(*) FROM memory_items GROUP BY tier")
        return {"backend": self.backend, "embedder": self.embedder.name, "items": {r[0]: int(r[1]) for r in rows}}


def memory_tools(memory: Memory) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The built-in ``recall`` and ``remember`` tools, bound to ``memory``.

    ``org`` and ``user`` are keyword-only and must be injected by the engine from the run (like
    ``idempotency_key``): a model can never choose whose memory it reads.
    """

    async def recall(query: str, k: int = 5, *, org: str, user: str) -> dict[str, Any]:
        """Search this user's episodic and semantic memory (past tickets, facts, preferences)."""
        return (await memory.recall(org, user, query, k)).to_json()

    async def remember(text: str, kind: str = "fact", ttl_days: float = 30.0, *, org: str, user: str) -> dict[str, Any]:
        """Store a fact or preference about this user for later runs (PII is redacted first)."""
        if not 0 < ttl_days <= 365:
            raise ConfigError("remember: ttl_days must be in (0, 365]")
        return (await memory.remember(org, user, text, kind, ttl_days * DAY)).to_json()

    return recall, remember


