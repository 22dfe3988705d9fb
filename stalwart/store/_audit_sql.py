"""How audit entries join a caller's transaction (the chain itself is governance's business).

SQLite: ``BEGIN IMMEDIATE`` already serialises writers; each row links to the last one through
the ``stalwart_chain_hash`` SQL function, which ``stalwart.governance.AuditLog`` registers on the
store's connection (without it the insert fails: no entry is ever written unchained). PostgreSQL:
a ``BEFORE INSERT`` trigger chains each row under a lock on the one-row ``audit_head`` table, so
all workers append in one total order.
"""

from __future__ import annotations

__all__ = ["AUDIT_INSERT_SQLITE", "AUDIT_INSERT_POSTGRES"]

AUDIT_INSERT_SQLITE = (
    "INSERT INTO audit_log (seq, body, prev_hash, hash)"
    " SELECT h.n, ?1, h.p, stalwart_chain_hash(h.p, h.n, ?1) FROM"
    " (SELECT seq + 1 AS n, hash AS p FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1)"
    " UNION ALL SELECT 0, zeroblob(32) ORDER BY n DESC LIMIT 1) AS h"
)
"""One ``?`` (an entry's canonical body); run with ``executemany``, in order."""

AUDIT_INSERT_POSTGRES = (
    "INSERT INTO audit_log (body) SELECT b FROM unnest(%s::text[]) WITH ORDINALITY AS t(b, i) ORDER BY i"
)
"""One ``%s``: the list of bodies, in order."""
