"""The shapes of the budget ledger every store keeps: spent totals plus leased holds per key.

A ledger key (``org:acme:2026-12``, ``run:r-1``) has a spent total (counters in namespace
``LEDGER_NS``, ``KEY:tokens`` and ``KEY:usd``) and holds: amounts reserved by calls in flight,
each with a lease. The store only makes reservation and settlement atomic; whether a call fits is
decided by the caller's pure ``decide`` function, run inside the store's transaction.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LEDGER_NS", "LedgerDecide", "LedgerRow"]

LEDGER_NS = "gateway.spend"
"""Counter namespace of the ledger's spent totals."""

LedgerRow = tuple[float, float, float, float]
"""``(spent_tokens, spent_usd, held_tokens, held_usd)`` of one key; expired holds not counted."""

LedgerDecide = Callable[[dict[str, LedgerRow]], "dict[str, tuple[float, float]] | str"]
"""Given every key's row, the ``(tokens, usd)`` to hold per key, or why the call does not fit."""
