"""Production shadow evaluation: sample finished runs into an annotation queue, label them, harvest
labelled runs into golden cases, and watch inputs drift away from the golden set.

The queue lives in the store's key-value space (namespace ``evals.annotations``), so it works on
SQLite and PostgreSQL alike and needs no migration. Sampling is a pure function of the run id
(a hash below the fraction), so every worker and every re-scan agrees on which runs are sampled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from stalwart.errors import InvalidInput

__all__ = [
    "Annotation",
    "AnnotationQueue",
    "DriftReport",
    "ShadowSampler",
    "detect_drift",
    "harvest",
    "sampled",
]

NAMESPACE = "evals.annotations"
Label = Literal["success", "partial", "failure"]
LABELS: tuple[str, ...] = ("success", "partial", "failure")


def sampled(run_id: str, fraction: float) -> bool:
    """Whether ``run_id`` falls in a ``fraction`` sample (deterministic, uniform over ids)."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    h = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


@dataclass(slots=True)
class Annotation:
    """A sampled run waiting for, or carrying, a human label."""

    run_id: str
    workflow: str
    version: str
    org: str
    status: str
    input: Any
    output: Any
    error: dict[str, Any] | None
    sampled_at: float
    label: str | None = None
    risk_note: str = ""
    annotator: str | None = None
    labelled_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class AnnotationQueue:
    """The annotation queue over a :class:`~stalwart.store.Store`'s ``kv_*`` API."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def put(self, item: Annotation) -> None:
        await self.store.kv_put(NAMESPACE, item.run_id, json.dumps(item.to_json(), default=str).encode())

    async def get(self, run_id: str) -> Annotation | None:
        raw = await self.store.kv_get(NAMESPACE, run_id)
        return None if raw is None else Annotation(**json.loads(raw))

    async def list(self, *, labelled: bool | None = None, limit: int = 1000) -> list[Annotation]:
        """Items, oldest sample first; ``labelled`` filters on whether a label was given."""
        out = []
        for key in await self.store.kv_keys(NAMESPACE):
            item = await self.get(key)
            if item is None or (labelled is not None and (item.label is not None) != labelled):
                continue
            out.append(item)
        out.sort(key=lambda a: (a.sampled_at, a.run_id))
        return out[:limit]

    async def label(
        self, run_id: str, label: str, *, risk_note: str = "", annotator: str | None = None
    ) -> Annotation:
        """Label a queued run ``success``, ``partial`` or ``failure`` with an optional risk note."""
        if label not in LABELS:
            raise InvalidInput(f"label must be one of {', '.join(LABELS)}, not {label!r}")
        item = await self.get(run_id)
        if item is None:
            raise InvalidInput(f"run {run_id!r} is not in the annotation queue")
        item.label, item.risk_note, item.annotator, item.labelled_at = (
            label,
            risk_note,
            annotator,
            time.time(),
        )
        await self.put(item)
        return item

    async def remove(self, run_id: str) -> bool:
        return bool(await self.store.kv_delete(NAMESPACE, run_id))


class ShadowSampler:
    """Puts a ``fraction`` (default 5%) of finished production runs into the annotation queue.

    Call :meth:`offer` when a run finishes, or :meth:`sweep` periodically (``stalwart eval shadow
    sweep``) to scan recent finished runs; both skip runs already queued.
    """

    def __init__(self, app: Any, fraction: float = 0.05, *, workflows: list[str] | None = None) -> None:
        if not 0 <= fraction <= 1:
            raise InvalidInput("the shadow sampling fraction must be between 0 and 1")
        self.app = app
        self.fraction = fraction
        self.workflows = set(workflows or [])

    async def queue(self) -> AnnotationQueue:
        return AnnotationQueue(await self.app.connect())

    async def offer(self, run: Any) -> bool:
        """Queue ``run`` (a ``RunInfo``) if it is finished and sampled; return whether it was queued now."""
        if run.status.value not in ("COMPLETED", "FAILED", "DEAD_LETTER"):
            return False
        if self.workflows and run.workflow not in self.workflows:
            return False
        if not sampled(run.id, self.fraction):
            return False
        q = await self.queue()
        if await q.get(run.id) is not None:
            return False
        await q.put(
            Annotation(
                run.id,
                run.workflow,
                run.version,
                run.org,
                run.status.value,
                run.input,
                run.output,
                run.error,
                time.time(),
                meta={
                    "cost_usd": run.meta.get("cost_usd"),
                    "review_required": run.meta.get("review_required"),
                },
            )
        )
        return True

    async def sweep(self, limit: int = 1000) -> int:
        """Offer the newest ``limit`` runs; return how many were queued."""
        n = 0
        for run in await self.app.list_runs(limit=limit):
            n += int(await self.offer(run))
        return n


async def harvest(
    queue: AnnotationQueue,
    cases_file: str | Path,
    *,
    labels: tuple[str, ...] = ("success",),
    remove: bool = False,
) -> list[dict[str, Any]]:
    """Append labelled runs to ``cases_file`` as golden cases: the run's input, its output as the
    expected value (``expected_error`` for a failed run labelled ``failure``… as it should have
    failed), tags ``harvested`` and ``label:…``, and the risk note. Inputs already in the file are
    skipped. Returns the cases written."""
    path = Path(cases_file)
    existing: set[str] = set()
    ids: set[str] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                doc = json.loads(line)
                existing.add(json.dumps(doc.get("input"), sort_keys=True))
                ids.add(str(doc.get("id")))
    written: list[dict[str, Any]] = []
    for item in await queue.list(labelled=True):
        if item.label not in labels:
            continue
        key = json.dumps(item.input, sort_keys=True)
        if key in existing:
            continue
        case: dict[str, Any] = {
            "id": f"harvested-{item.run_id}",
            "input": item.input,
            "tags": ["harvested", f"label:{item.label}", f"workflow:{item.workflow}"],
            "source_run": item.run_id,
            "risk_note": item.risk_note,
        }
        if item.status == "COMPLETED":
            case["expected"] = item.output
        elif item.error:
            case["expected_error"] = item.error.get("type")
        if case["id"] in ids:
            continue
        written.append(case)
        existing.add(key)
        if remove:
            await queue.remove(item.run_id)
    if written:
        await asyncio.to_thread(_append, path, written)
    return written


def _append(path: Path, cases: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False, default=str) + "\n")


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Mean distance from each recent input to its nearest golden input; ``alert`` past ``threshold``."""

    distance: float
    threshold: float
    alert: bool
    method: str
    """The embedder's name; ``lexical (fallback…)`` when the semantic model is not installed."""
    recent: int
    golden: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def detect_drift(
    recent: list[Any],
    golden: list[Any],
    *,
    threshold: float = 0.35,
    embedder: Any = None,
    package: str | None = None,
) -> DriftReport:
    """Compare recent production inputs with the golden inputs by embedding distance
    (1 − cosine similarity to the nearest golden input, averaged). Without the ``semantic`` extra
    it falls back to the lexical embedder, and says so in ``method``."""
    from stalwart.evals._embed import DEFAULT_MODEL_PACKAGE, cosine, load_embedder

    if not recent or not golden:
        raise InvalidInput("drift needs at least one recent and one golden input")
    emb = embedder or load_embedder(package or DEFAULT_MODEL_PACKAGE, fallback=True)

    def text(x: Any) -> str:
        return x if isinstance(x, str) else json.dumps(x, sort_keys=True, ensure_ascii=False)

    vr = emb.embed([text(x) for x in recent])
    vg = emb.embed([text(x) for x in golden])
    dist = sum(1 - max(cosine(r, g) for g in vg) for r in vr) / len(vr)
    return DriftReport(dist, threshold, dist > threshold, emb.name, len(recent), len(golden))
