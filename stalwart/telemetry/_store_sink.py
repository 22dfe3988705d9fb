"""Spans persisted in the store's key/value space, so traces show with no collector running.

Spans are buffered per run and written in batches: one ``kv_put`` per run per flush, under
``spans/{run_id}:{digest}`` where the digest names the batch's span ids (a rewrite is idempotent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from stalwart.telemetry._spans import SpanRecord

__all__ = ["SPANS_NAMESPACE", "StoreSpanSink", "erase_spans", "load_spans"]

SPANS_NAMESPACE = "spans"
_log = logging.getLogger("stalwart.telemetry")


class StoreSpanSink:
    """Buffers spans in memory and writes them to the store on :meth:`flush`."""

    def __init__(
        self,
        store: Any,
        *,
        max_buffered: int = 50_000,
        on_failure: Callable[[str], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.max_buffered = max_buffered
        self._by_run: dict[str, list[dict[str, Any]]] = {}
        self._count = 0
        self.failures = 0
        self.dropped = 0
        self._on_failure = on_failure
        self._on_drop = on_drop

    def __len__(self) -> int:
        return self._count

    def add(self, spans: list[SpanRecord]) -> None:
        for s in spans:
            if self._count >= self.max_buffered:
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop(1)
                continue
            self._by_run.setdefault(s.run_id, []).append(s)  # serialised at flush, off the hot path
            self._count += 1

    async def flush(self) -> int:
        """Write everything buffered; returns the number of spans written. Never raises."""
        if not self._by_run or self.store is None:
            return 0
        batches, self._by_run, self._count = self._by_run, {}, 0
        items: list[tuple[str, bytes]] = []
        count = 0
        for run_id, records in batches.items():
            spans = [s.to_dict() for s in records]
            ids = ",".join(s["span_id"] for s in spans)
            key = f"{run_id}:{hashlib.blake2b(ids.encode(), digest_size=8).hexdigest()}"
            items.append((key, json.dumps(spans, separators=(",", ":")).encode()))
            count += len(spans)
        try:
            put_many = getattr(self.store, "kv_put_many", None)
            if put_many is not None:
                await put_many(SPANS_NAMESPACE, items)  # one transaction for the whole flush
            else:
                for key, value in items:
                    await self.store.kv_put(SPANS_NAMESPACE, key, value)
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self.failures += 1
            if self._on_failure is not None:
                self._on_failure("store")
            _log.warning("persisting %d spans failed: %s", count, type(exc).__name__)
            return 0
        return count


async def load_spans(store: Any, run_id: str) -> list[SpanRecord]:
    """Every persisted span of a run, one per span id (the latest write wins), by start time."""
    by_id: dict[str, SpanRecord] = {}
    for key in await store.kv_keys(SPANS_NAMESPACE, f"{run_id}:"):
        raw = await store.kv_get(SPANS_NAMESPACE, key)
        if raw is None:
            continue
        for d in json.loads(raw):
            span = SpanRecord.from_dict(d)
            by_id[span.span_id] = span
    return sorted(by_id.values(), key=lambda s: (s.start, s.parent_span_id is not None, s.span_id))


async def erase_spans(store: Any, run_ids: list[str] | tuple[str, ...]) -> int:
    """Delete every persisted span of these runs (GDPR erasure: spans carry ``user.id`` and, with
    content capture on, redacted messages). Returns how many batches were deleted."""
    n = 0
    for run_id in run_ids:
        n += int(await store.kv_delete_prefix(SPANS_NAMESPACE, f"{run_id}:"))
    return n
