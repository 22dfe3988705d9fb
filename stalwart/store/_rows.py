"""Row <-> record conversion and the column lists shared by both SQL dialects."""

from __future__ import annotations

import json
from typing import Any

from stalwart.store._records import DeadLetter, JournalEntry, OutboxEvent, RunRecord

RUN_COLUMNS = (
    "id, workflow, version, status, input, output, error, org, user_id, idempotency_key, created_at, "
    "updated_at, finished_at, owner, epoch, lease_expires_at, wake_at, trace_id, generation, seq_base, "
    "cancel_requested, phase, parent_id, meta"
)
JOURNAL_COLUMNS = "run_id, seq, kind, name, status, result, error, attempts, started_at, finished_at, wake_at, meta"
DLQ_COLUMNS = "run_id, workflow, version, reason, error, created_at, retries"
OUTBOX_COLUMNS = "id, event_id, type, run_id, payload, created_at"

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "DEAD_LETTER")


def dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), default=str)


def _loads(text: str | None) -> Any:
    if text is None or text == "":
        return None
    return json.loads(text)


def run_from_row(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        workflow=row[1],
        version=row[2],
        status=row[3],
        input_json=row[4],
        output_json=row[5],
        error=_loads(row[6]),
        org=row[7],
        user=row[8],
        idempotency_key=row[9],
        created_at=row[10],
        updated_at=row[11],
        finished_at=row[12],
        owner=row[13],
        epoch=int(row[14]),
        lease_expires_at=row[15],
        wake_at=row[16],
        trace_id=row[17],
        generation=int(row[18]),
        seq_base=int(row[19]),
        cancel_requested=bool(row[20]),
        phase=row[21],
        parent_id=row[22],
        meta=_loads(row[23]) or {},
    )


def journal_from_row(row: tuple[Any, ...]) -> JournalEntry:
    return JournalEntry(
        run_id=row[0],
        seq=int(row[1]),
        kind=row[2],
        name=row[3],
        status=row[4],
        result_json=row[5],
        error=_loads(row[6]),
        attempts=int(row[7]),
        started_at=row[8],
        finished_at=row[9],
        wake_at=row[10],
        meta=_loads(row[11]),
    )


def journal_params(e: JournalEntry) -> tuple[Any, ...]:
    return (
        e.run_id,
        e.seq,
        e.kind,
        e.name,
        e.status,
        e.result_json,
        dumps(e.error),
        e.attempts,
        e.started_at,
        e.finished_at,
        e.wake_at,
        dumps(e.meta),
    )


def dlq_from_row(row: tuple[Any, ...]) -> DeadLetter:
    return DeadLetter(
        run_id=row[0],
        workflow=row[1],
        version=row[2],
        reason=row[3],
        error=_loads(row[4]),
        created_at=row[5],
        retries=int(row[6]),
    )


def outbox_from_row(row: tuple[Any, ...]) -> OutboxEvent:
    return OutboxEvent(
        id=int(row[0]),
        event_id=row[1],
        type=row[2],
        run_id=row[3],
        payload=json.loads(row[4]),
        created_at=row[5],
    )


def outbox_params(ev: OutboxEvent) -> tuple[Any, ...]:
    return (ev.event_id, ev.type, ev.run_id, dumps(ev.payload), ev.created_at)
