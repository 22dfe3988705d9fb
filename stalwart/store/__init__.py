"""stalwart.store — the one durable state layer.

``open_store(url)`` gives a :class:`Store`: :class:`SqliteStore` (embedded default, WAL) or
:class:`PostgresStore` (psycopg 3 pool, ``FOR UPDATE SKIP LOCKED``, ``LISTEN/NOTIFY``). Both pass
the same contract suite (``tests/integration/test_store_contract.py``).
"""

from stalwart.store._artifacts import ArtifactMissing, ArtifactRef, ArtifactStore, is_artifact_ref
from stalwart.store._blobs import Blobs, BlobUrl, FileBlobs, S3Blobs, open_blobs, parse_blob_url
from stalwart.store._bus import OutboxPublisher, format_event, rebuild_run, tail_events
from stalwart.store._keys import Keyring
from stalwart.store._lease import FleetCounts, LeaderLease, decide_lease
from stalwart.store._ledger import LEDGER_NS, LedgerDecide, LedgerRow
from stalwart.store._open import open_store
from stalwart.store._protocol import Store
from stalwart.store._records import (
    Claim,
    DeadLetter,
    JournalEntry,
    NewRun,
    OutboxEvent,
    RunEvent,
    RunRecord,
    SignalRecord,
)
from stalwart.store._url import DbUrl, parse_db_url, redact_url

__all__ = [
    "ArtifactMissing",
    "ArtifactRef",
    "ArtifactStore",
    "Blobs",
    "BlobUrl",
    "FileBlobs",
    "S3Blobs",
    "open_blobs",
    "parse_blob_url",
    "is_artifact_ref",
    "OutboxPublisher",
    "format_event",
    "rebuild_run",
    "tail_events",
    "Keyring",
    "FleetCounts",
    "LeaderLease",
    "decide_lease",
    "LEDGER_NS",
    "LedgerDecide",
    "LedgerRow",
    "Store",
    "open_store",
    "parse_db_url",
    "redact_url",
    "DbUrl",
    "Claim",
    "DeadLetter",
    "JournalEntry",
    "NewRun",
    "OutboxEvent",
    "RunEvent",
    "RunRecord",
    "SignalRecord",
]
