"""Replay a recorded run against the current workflow code, touching nothing.

Every durable call must be answered from the journal: no step body, tool, model or timer runs,
so a replay costs nothing and calls no provider. A call the journal cannot answer, or answers
for a different step, is reported as a divergence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stalwart.engine._execution import RunExecution
from stalwart.engine._serde import decode, encode
from stalwart.errors import NonDeterminismError, RunNotFound, StalwartError
from stalwart.store import Claim, JournalEntry

if TYPE_CHECKING:
    from stalwart.engine._app import App

__all__ = ["ReplayReport", "replay_run"]


class _EndOfJournal(BaseException):
    def __init__(self, seq: int, what: str) -> None:
        self.seq = seq
        self.what = what


@dataclass
class ReplayReport:
    """What a replay found. ``outcome``: ``identical``, ``diverged`` or ``incomplete``."""

    run_id: str
    workflow: str
    version: str
    outcome: str
    steps_replayed: int
    detail: str
    recorded_status: str
    output_matches: bool | None = None
    provider_calls: int = 0
    divergence_seq: int | None = None
    replayed_output: Any = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _ReplayExecution(RunExecution):
    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.replayed_steps = 0

    async def durable(
        self, kind: str, name: str, body: Any, *, retry: Any = None, rtype: Any = None, seq: int | None = None
    ) -> Any:
        at = self.seq if seq is None else seq
        prior = self.replayed(at, kind, name)
        if prior is None or prior.status in ("retrying", "waiting"):
            if seq is None:
                self.seq += 1
            raise _EndOfJournal(at, f"{kind} {name!r}")
        self.replayed_steps += 1
        return await super().durable(kind, name, body, retry=retry, rtype=rtype, seq=seq)

    async def commit(self, entry: JournalEntry, *, consume_signal: int | None = None) -> None:
        raise _EndOfJournal(entry.seq, f"{entry.kind} {entry.name!r}")

    async def suspend(self, wake_at: float | None, *, signal_name: str | None = None) -> None:
        raise _EndOfJournal(self.seq - 1, "a wait that had not finished")

    def boundary(self) -> None:
        return None


async def replay_run(app: App, run_id: str) -> ReplayReport:
    """Re-execute ``run_id``'s workflow against its journal and report any divergence."""
    from stalwart.engine._context import Context

    store = await app.connect()
    run = await store.get_run(run_id)
    if run is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    journal = [e for e in await store.journal(run_id) if e.seq >= run.seq_base and e.kind != "compensation"]
    ex = _ReplayExecution(app, Claim(run, journal), lease_s=0.0, worker_id="replay")
    report = ReplayReport(run.id, run.workflow, run.version, "identical", 0, "", run.status)
    try:
        kwargs = ex.wdef.validate_input(decode(run.input_json))
        result = await ex.wdef.fn(Context(ex), **kwargs)
        report.replayed_output = decode(encode(result))
        recorded = decode(run.output_json)
        if run.status == "COMPLETED" and not run.meta.get("partial"):
            report.output_matches = report.replayed_output == recorded
            if not report.output_matches:
                report.outcome = "diverged"
                report.detail = "the workflow returned a different output than the recorded run"
            else:
                report.detail = "every step was answered from the journal and the output is identical"
        else:
            report.outcome = "diverged"
            report.detail = f"the replay completed but the recorded run ended {run.status}"
    except NonDeterminismError as exc:
        report.outcome, report.detail = "diverged", str(exc)
        report.divergence_seq = ex.seq - 1
    except _EndOfJournal as end:
        recorded_more = run.status not in ("COMPLETED", "FAILED", "CANCELLED", "DEAD_LETTER")
        report.outcome = "incomplete" if recorded_more else "diverged"
        report.divergence_seq = end.seq
        report.detail = (
            f"the journal ends at position {end.seq}, where the workflow asks for {end.what}"
            + (" (the recorded run is still in progress)" if recorded_more else "")
        )
    except StalwartError as exc:
        recorded_error = (run.error or {}).get("message")
        same = run.status in ("FAILED", "DEAD_LETTER", "CANCELLED") and recorded_error == exc.message
        report.outcome = "identical" if same else "diverged"
        report.detail = f"the workflow raised {type(exc).__name__}: {exc.message}" + (
            ", as the recorded run did" if same else "")
    except Exception as exc:
        report.outcome = "diverged"
        report.detail = f"the workflow code raised {type(exc).__name__}: {exc}"
    report.steps_replayed = ex.replayed_steps
    return report
