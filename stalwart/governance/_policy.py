"""Policy as code: Cedar (``cedarpy``) bundles, versioned in the store.

A bundle is every ``*.cedar`` file plus ``schema.cedarschema`` and an optional ``VERSION`` label;
its version is ``"<label>+<first 12 hex of the content hash>"``. A bundle is parsed and validated
against its schema before it replaces the one in force, in one assignment (atomic for readers).

The store is the source of truth: it holds every version and names the active one (the
``policy_active`` flag). A directory (the app's declared policies, or Stalwart's bundled
defaults) only *seeds* a store that holds none (:meth:`PolicyEngine.start`). A change at runtime
needs two people: :meth:`PolicyEngine.propose_change` by one, :meth:`PolicyEngine.approve_change`
by another; every step is audited, and every engine sharing the store adopts the approved bundle
within ``refresh_s`` (:meth:`PolicyEngine.refresh`, one primary-key read per interval, never one
per decision).

Decisions are pure and synchronous (tens of microseconds): the engine calls :meth:`authorize`
before every tool call and records the :class:`Decision` in the audit log and on the span.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stalwart.errors import ConfigError, InvalidInput, PolicyDenied
from stalwart.governance._events import AuditEvent, canonical_json

__all__ = ["DEFAULT_POLICIES", "Decision", "PolicyBundle", "PolicyEngine"]

DEFAULT_POLICIES = Path(__file__).resolve().parent / "policies"
"""Stalwart's bundled policies: they seed a store when nothing else is configured."""

NS = "Stalwart"
ACTIVE_FLAG = "policy_active"
SEED_CHANGE = "seed"
"""The id of the ``policy_changes`` row that records the first bundle of a store (claimed once)."""
_SCHEMA = "schema.cedarschema"
_TAINT_ATTR = "tainted_args"
_log = logging.getLogger("stalwart.governance")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request.

    ``reasons`` are the ids (``@id``) of the policies that decided it: the permits when allowed,
    the forbids when denied (empty when nothing permitted: default deny). ``review_required`` is
    true when every forbid that applied is annotated ``@review("true")``: a human approval of this
    exact action, re-asked with ``context.reviewed = true``, would allow it.
    """

    allowed: bool
    reasons: tuple[str, ...]
    policy_version: str
    review_required: bool = False
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reasons": list(self.reasons),
            "policy_version": self.policy_version,
            "review_required": self.review_required,
            "errors": list(self.errors),
        }

    def raise_for_denial(self) -> None:
        """Raise :class:`PolicyDenied` (with the reasons and version) when not allowed."""
        if not self.allowed:
            why = ", ".join(self.reasons) or "no policy permits it"
            raise PolicyDenied(f"denied by policy {self.policy_version}: {why}", details=self.to_json())


@dataclass(frozen=True)
class PolicyBundle:
    """A parsed, validated set of policies with its schema, label and content hash."""

    files: Mapping[str, str]
    label: str
    content_hash: str
    policies: Any = field(repr=False)
    schema: Any = field(repr=False)
    ids: Mapping[str, str] = field(repr=False)
    reviewable: frozenset[str] = field(repr=False)

    @property
    def version(self) -> str:
        return f"{self.label}+{self.content_hash[:12]}"

    @staticmethod
    def hash_files(files: Mapping[str, str]) -> str:
        return hashlib.sha256(canonical_json(sorted(files.items())).encode()).hexdigest()

    @classmethod
    def from_files(cls, files: Mapping[str, str], label: str | None = None) -> PolicyBundle:
        import cedarpy

        files = dict(files)
        if _SCHEMA not in files:
            raise ConfigError(f"a policy bundle needs {_SCHEMA}")
        label = (label or files.get("VERSION", "") or "unlabelled").strip()
        files["VERSION"] = label
        text = "\n".join(files[n] for n in sorted(files) if n.endswith(".cedar"))
        if not text.strip():
            raise ConfigError("a policy bundle needs at least one .cedar file")
        result = cedarpy.validate_policies(text, files[_SCHEMA])
        if not result.validation_passed:
            raise ConfigError("policies do not validate: " + "; ".join(str(e).strip() for e in result.errors))
        try:
            policies = cedarpy.PolicySet.from_str(text)
            schema = cedarpy.Schema.from_str(files[_SCHEMA])
            parsed = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            raise ConfigError(f"policies do not parse: {exc}") from exc
        ids: dict[str, str] = {}
        reviewable: set[str] = set()
        for pid, body in parsed.get("staticPolicies", {}).items():
            notes = body.get("annotations") or {}
            ids[pid] = notes.get("id") or pid
            if str(notes.get("review", "")).lower() == "true":
                reviewable.add(pid)
        return cls(files, label, cls.hash_files(files), policies, schema, ids, frozenset(reviewable))

    @classmethod
    def from_dir(cls, path: str | Path) -> PolicyBundle:
        root = Path(path)
        if not root.is_dir():
            raise ConfigError(f"policy directory {root} does not exist")
        files = {
            p.name: p.read_text()
            for p in sorted(root.iterdir())
            if p.is_file() and (p.suffix in (".cedar", ".cedarschema") or p.name == "VERSION")
        }
        return cls.from_files(files)

    @staticmethod
    def files_at(path: str | Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The files of a proposed bundle read from ``path``.

        A directory is a whole bundle (its ``*.cedar`` files, ``schema.cedarschema`` and optional
        ``VERSION``); a single ``.cedar`` file adds to or replaces the file of the same name in
        ``base`` (the bundle in force), keeping its schema and other files.
        """
        p = Path(path)
        if p.is_dir():
            files = {
                f.name: f.read_text()
                for f in sorted(p.iterdir())
                if f.is_file() and (f.suffix in (".cedar", ".cedarschema") or f.name == "VERSION")
            }
            if not any(n.endswith(".cedar") for n in files):
                raise ConfigError(f"{p} holds no .cedar file")
            return files
        if not p.is_file():
            raise ConfigError(f"{p} does not exist (give a .cedar file or a directory of them)")
        if p.suffix != ".cedar":
            raise ConfigError(f"{p} is not a .cedar file (give a .cedar file or a directory of them)")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {p}: {exc}") from None
        return {**dict(base or {}), p.name: text}


def _uid(kind: str, ident: str) -> dict[str, str]:
    return {"type": f"{NS}::{kind}", "id": ident}


class PolicyEngine:
    """Cedar decisions over a versioned bundle, reloaded atomically, changed by two people.

    ``store`` and ``audit`` are needed only for runtime changes (:meth:`propose_change`,
    :meth:`approve_change`, :meth:`sync`); ``authorize`` never touches I/O.
    """

    def __init__(
        self,
        policies_dir: str | Path,
        *,
        store: Any = None,
        audit: Any = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        refresh_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policies_dir = Path(policies_dir)
        """Where the seed bundle comes from (used only while the store holds no active version)."""
        self.store = store
        self.audit = audit
        self.clock = clock
        self.new_id = new_id
        self.refresh_s = refresh_s
        self.monotonic = monotonic
        self._bundle = PolicyBundle.from_dir(self.policies_dir)
        self._db: Any = None
        self._checked_at: float | None = None

    # -- reading -------------------------------------------------------------------------------
    @property
    def bundle(self) -> PolicyBundle:
        return self._bundle

    @property
    def version(self) -> str:
        """``label+hash`` of the bundle in force."""
        return self._bundle.version

    def authorize(
        self,
        principal: Mapping[str, Any],
        action: str,
        resource: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Decide one request.

        ``principal``: ``{workflow, version, org, role}`` (an agent) or ``{id, org, role}`` with
        ``kind="Operator"``. ``resource``: ``{tool, sensitivity, org, mutating}`` or
        ``{kind, id, org}``. ``context``: ``{time, target_org, amount, risk, reviewed}`` (plus ``taint`` and
        ``tainted_args`` when the bundle's schema declares them); missing
        keys default to the principal's org, 0 and false. A malformed request is denied with the
        error as its reason (fail closed).
        """
        import cedarpy

        bundle = self._bundle
        ctx = dict(context or {})
        p_kind = str(principal.get("kind", "Agent"))
        if p_kind == "Agent":
            p_id = f"{principal.get('workflow', '')}@{principal.get('version', '')}"
            p_attrs = {
                "workflow": str(principal.get("workflow", "")),
                "version": str(principal.get("version", "")),
                "org": str(principal.get("org", "")),
                "role": str(principal.get("role", "agent")),
            }
        else:
            p_id = str(principal.get("id", ""))
            p_attrs = {"org": str(principal.get("org", "")), "role": str(principal.get("role", ""))}
        r_kind = str(resource.get("kind", "Tool"))
        if r_kind == "Tool":
            r_id = str(resource.get("tool", resource.get("id", "")))
            r_attrs: dict[str, Any] = {
                "sensitivity": str(resource.get("sensitivity", "low")),
                "org": str(resource.get("org", "")),
                "mutating": bool(resource.get("mutating", False)),
            }
        else:
            r_id = str(resource.get("id", ""))
            r_attrs = {"org": str(resource.get("org", ""))}
        now = int(ctx.get("time", self.clock()))
        request = {
            "principal": _uid(p_kind, p_id),
            "action": {"type": f"{NS}::Action", "id": action},
            "resource": _uid(r_kind, r_id),
            "context": {
                "time": now,
                "hour": int(ctx.get("hour", (now // 3600) % 24)),
                "target_org": str(ctx.get("target_org") or p_attrs["org"]),
                "amount": int(ctx.get("amount") or 0),
                "risk": round(float(ctx.get("risk") or 0)),
                "reviewed": bool(ctx.get("reviewed", False)),
            },
        }
        if _TAINT_ATTR in bundle.files.get(_SCHEMA, ""):  # a bundle whose schema knows taint sees it
            request["context"]["taint"] = bool(ctx.get("taint", False))
            request["context"][_TAINT_ATTR] = sorted(str(a) for a in ctx.get(_TAINT_ATTR) or ())
        entities = [
            {"uid": request["principal"], "attrs": p_attrs, "parents": []},
            {"uid": request["resource"], "attrs": r_attrs, "parents": []},
        ]
        try:
            result = cedarpy.is_authorized(request, bundle.policies, entities, schema=bundle.schema)
        except (ValueError, TypeError) as exc:
            return Decision(False, (), bundle.version, errors=(f"bad request: {exc}",))
        raw_reasons = list(result.diagnostics.reasons)
        reasons = tuple(bundle.ids.get(r, r) for r in raw_reasons)
        errors = tuple(str(e) for e in result.diagnostics.errors)
        if result.allowed:
            return Decision(True, reasons, bundle.version, errors=errors)
        review = (
            bool(raw_reasons) and all(r in bundle.reviewable for r in raw_reasons) and not ctx.get("reviewed")
        )
        return Decision(False, reasons, bundle.version, review_required=review, errors=errors)

    # -- loading -------------------------------------------------------------------------------
    def reload(self) -> str:
        """Re-read ``policies_dir``; the new bundle replaces the old only if it validates."""
        self._bundle = PolicyBundle.from_dir(self.policies_dir)
        return self.version

    def _gov(self) -> Any:
        if self.store is None:
            raise ConfigError("policy changes need PolicyEngine(..., store=...)")
        if self._db is None:
            from stalwart.governance._db import gov_db

            self._db = gov_db(self.store)
        return self._db

    async def _audit(self, event_type: str, actor: str, **details: Any) -> None:
        if self.audit is not None:
            await self.audit.append(
                [
                    AuditEvent(
                        event_type,
                        action=event_type.split(".", 1)[1],
                        actor=actor if ":" in actor else f"user:{actor}",
                        resource="policies",
                        policy_version=self.version,
                        details=details,
                    )
                ]
            )

    # -- two-person change ---------------------------------------------------------------------
    async def propose_change(self, files: Mapping[str, str], *, label: str | None = None, proposer: str) -> str:
        """Validate a new bundle and record it as pending; returns the change id."""
        bundle = PolicyBundle.from_files(files, label)
        if bundle.content_hash == self._bundle.content_hash:
            raise ConfigError(f"nothing to change: the proposal is the version in force ({self.version})")
        change_id = self.new_id()
        await self._gov().insert(
            "policy_changes",
            {
                "id": change_id,
                "label": bundle.label,
                "content_hash": bundle.content_hash,
                "bundle": canonical_json(dict(bundle.files)),
                "proposer": proposer,
                "status": "pending",
                "created_at": self.clock(),
            },
        )
        await self._audit(
            "policy.change_proposed",
            proposer,
            change_id=change_id,
            label=bundle.label,
            content_hash=bundle.content_hash,
        )
        return change_id

    async def approve_change(self, change_id: str, *, approver: str) -> str:
        """Apply a pending change approved by someone other than its proposer; returns the version."""
        db = self._gov()
        rows = await db.select("policy_changes", {"id": change_id})
        if not rows:
            raise InvalidInput(f"no policy change {change_id!r} (see `stalwart policy list`)")
        if rows[0]["status"] != "pending":
            raise PolicyDenied(f"policy change {change_id} is {rows[0]['status']}, not pending")
        change = rows[0]
        if change["proposer"] == approver:
            raise PolicyDenied("a policy change needs a second person: the proposer cannot approve it")
        bundle = PolicyBundle.from_files(json.loads(change["bundle"]), change["label"])
        if bundle.content_hash != change["content_hash"]:
            raise PolicyDenied(f"policy change {change_id} was altered after it was proposed")
        now = self.clock()
        if not await db.update(
            "policy_changes",
            {"id": change_id, "status": "pending"},
            {"status": "applied", "approver": approver, "decided_at": now},
        ):
            raise PolicyDenied(f"policy change {change_id} was decided concurrently")
        await db.insert(
            "policy_versions",
            {
                "content_hash": bundle.content_hash,
                "label": bundle.label,
                "bundle": change["bundle"],
                "proposed_by": change["proposer"],
                "approved_by": approver,
                "created_at": now,
            },
            ignore_conflict=True,
        )
        await self.store.set_flag(
            ACTIVE_FLAG,
            {"content_hash": bundle.content_hash, "label": bundle.label, "version": bundle.version},
            now,
        )
        previous = self.version
        self._bundle = bundle
        await self._audit(
            "policy.changed",
            approver,
            change_id=change_id,
            proposer=change["proposer"],
            previous=previous,
            version=bundle.version,
        )
        return bundle.version

    async def reject_change(self, change_id: str, *, reviewer: str) -> None:
        """Close a pending change without applying it (audited)."""
        db = self._gov()
        if not await db.select("policy_changes", {"id": change_id}):
            raise InvalidInput(f"no policy change {change_id!r} (see `stalwart policy list`)")
        if not await db.update(
            "policy_changes",
            {"id": change_id, "status": "pending"},
            {"status": "rejected", "approver": reviewer, "decided_at": self.clock()},
        ):
            raise PolicyDenied(f"policy change {change_id} is not pending")
        await self._audit("policy.change_rejected", reviewer, change_id=change_id)

    async def sync(self) -> str:
        """Adopt the bundle approved in the store, if it differs from the one in force."""
        active = await self.store.get_flag(ACTIVE_FLAG) if self.store is not None else None
        self._checked_at = self.monotonic()
        if active and active.get("content_hash") != self._bundle.content_hash:
            rows = await self._gov().select("policy_versions", {"content_hash": active["content_hash"]})
            if not rows:
                raise ConfigError(f"the store's active policy version {active.get('version')} has no bundle")
            previous = self.version
            self._bundle = PolicyBundle.from_files(json.loads(rows[0]["bundle"]), rows[0]["label"])
            _log.info("policy version %s adopted (was %s)", self.version, previous)
        return self.version

    async def refresh(self) -> str:
        """:meth:`sync` if the last check is ``refresh_s`` old or more; else nothing (no I/O).

        Called before each decision that matters, so a version approved anywhere is in force here
        within ``refresh_s`` of its approval, for one flag read per interval."""
        if self.store is not None and (
            self._checked_at is None or self.monotonic() - self._checked_at >= self.refresh_s
        ):
            return await self.sync()
        return self.version

    async def start(self) -> str:
        """Seed the store with this engine's bundle if it holds none, else adopt the store's.

        The first process to connect claims the seed (one row, so concurrent first starts agree);
        later ones, and every later start, use what the store says is active.
        """
        if self.store is None:
            return self.version
        seed_version, seed_hash = self.version, self._bundle.content_hash
        if await self.store.get_flag(ACTIVE_FLAG) is None:
            b = self._bundle
            now = self.clock()
            claimed = await self._gov().insert(
                "policy_changes",
                {
                    "id": SEED_CHANGE,
                    "label": b.label,
                    "content_hash": b.content_hash,
                    "bundle": canonical_json(dict(b.files)),
                    "proposer": "system:seed",
                    "status": "applied",
                    "approver": "system:seed",
                    "created_at": now,
                    "decided_at": now,
                },
                ignore_conflict=True,
            )
            if claimed:
                await self.record_versions()
                await self.store.set_flag(
                    ACTIVE_FLAG, {"content_hash": b.content_hash, "label": b.label, "version": b.version}, now
                )
                await self._audit("policy.seeded", "system:seed", source=str(self.policies_dir),
                                  version=b.version)
        version = await self.sync()
        if (
            version != seed_version
            and self.policies_dir.resolve() != DEFAULT_POLICIES
            and not await self._gov().select("policy_versions", {"content_hash": seed_hash})
        ):  # the store never held this bundle: someone else's seed rules here
            _log.warning(
                "policies in %s are not in force: the store's active version is %s "
                "(change it with `stalwart policy propose` and `approve`)", self.policies_dir, version,
            )
        return version

    async def versions(self) -> list[dict[str, Any]]:
        """Every stored version, oldest first, each with ``version`` and ``active``."""
        active = await self.store.get_flag(ACTIVE_FLAG) or {}
        rows = await self._gov().select("policy_versions", {}, order_by="created_at, content_hash")
        return [
            {
                "version": f"{r['label']}+{r['content_hash'][:12]}",
                "label": r["label"],
                "content_hash": r["content_hash"],
                "proposed_by": r["proposed_by"],
                "approved_by": r["approved_by"],
                "created_at": r["created_at"],
                "active": r["content_hash"] == active.get("content_hash"),
            }
            for r in rows
        ]

    async def changes(self, status: str | None = "pending") -> list[dict[str, Any]]:
        """Proposed changes (``status`` ``pending``, ``applied``, ``rejected``; ``None``: all), oldest first."""
        where = {} if status is None else {"status": status}
        rows = await self._gov().select("policy_changes", where, order_by="created_at, id")
        return [
            {
                "id": r["id"],
                "version": f"{r['label']}+{r['content_hash'][:12]}",
                "label": r["label"],
                "status": r["status"],
                "proposer": r["proposer"],
                "approver": r["approver"],
                "created_at": r["created_at"],
                "decided_at": r["decided_at"],
            }
            for r in rows
        ]

    async def record_versions(self) -> None:
        """Register the bundle in force (e.g. the one shipped in ``policies/``) in the store."""
        b = self._bundle
        await self._gov().insert(
            "policy_versions",
            {
                "content_hash": b.content_hash,
                "label": b.label,
                "bundle": canonical_json(dict(b.files)),
                "proposed_by": None,
                "approved_by": None,
                "created_at": self.clock(),
            },
            ignore_conflict=True,
        )
