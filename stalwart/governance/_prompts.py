"""Prompt templates changed at run time: proposed by one operator, approved by another, audited.

An approved version is stored (``prompt_versions``) and named in force by the flag
``prompt_active:NAME@VERSION`` (its source and hash), which the gateway of every process reads
within its refresh interval. Files (the app's and the bundled templates) stay the defaults for
every reference the store holds no version of. The template format is the gateway's: it is
checked by the ``validate`` function the engine passes in, so this module knows only the rules
of change, not the rules of rendering.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from stalwart.errors import ConfigError, InvalidInput, PolicyDenied
from stalwart.governance._events import AuditEvent

__all__ = ["PromptChanges"]

FLAG_PREFIX = "prompt_active:"
"""Read by ``stalwart.gateway``'s ``TemplateStore`` (its ``PROMPT_FLAG_PREFIX``)."""


class PromptChanges:
    """Two-person changes to the prompt templates in force, for every process sharing ``store``.

    ``validate(ref, source)`` parses a template's TOML source for ``NAME@VERSION`` and returns its
    hash (``sha256:…``), raising ``ConfigError`` when it is not a valid template.
    """

    def __init__(
        self,
        store: Any,
        audit: Any = None,
        *,
        validate: Callable[[str, str], str],
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.store = store
        self.audit = audit
        self.validate = validate
        self.clock = clock
        self.new_id = new_id
        self._db: Any = None

    def _gov(self) -> Any:
        if self._db is None:
            from stalwart.governance._db import gov_db

            self._db = gov_db(self.store)
        return self._db

    async def _audit(self, event_type: str, actor: str, ref: str, **details: Any) -> None:
        if self.audit is not None:
            await self.audit.append([AuditEvent(event_type, action=event_type.split(".", 1)[1],
                                                actor=actor if ":" in actor else f"user:{actor}",
                                                resource=f"prompt:{ref}", details=details)])

    async def active(self, ref: str) -> dict[str, Any] | None:
        """The stored version in force for ``ref`` (``{"source", "hash", …}``), or ``None``."""
        return await self.store.get_flag(FLAG_PREFIX + ref)

    async def propose(self, ref: str, source: str, *, proposer: str) -> str:
        """Validate ``source`` as the new ``ref`` and record it as pending; returns the change id."""
        digest = self.validate(ref, source)
        current = await self.active(ref)
        if current is not None and current.get("hash") == digest:
            raise ConfigError(f"nothing to change: prompt {ref} {digest[:19]} is already in force")
        change_id = self.new_id()
        await self._gov().insert("prompt_changes", {
            "id": change_id, "ref": ref, "content_hash": digest, "source": source, "proposer": proposer,
            "status": "pending", "created_at": self.clock(),
        })
        await self._audit("prompt.change_proposed", proposer, ref, change_id=change_id, content_hash=digest)
        return change_id

    async def _pending(self, change_id: str) -> dict[str, Any]:
        rows = await self._gov().select("prompt_changes", {"id": change_id})
        if not rows:
            raise InvalidInput(f"no prompt change {change_id!r} (see `stalwart prompt list`)")
        if rows[0]["status"] != "pending":
            raise PolicyDenied(f"prompt change {change_id} is {rows[0]['status']}, not pending")
        return dict(rows[0])

    async def approve(self, change_id: str, *, approver: str) -> str:
        """Put a pending change in force, approved by someone other than its proposer; returns its hash."""
        change = await self._pending(change_id)
        if change["proposer"] == approver:
            raise PolicyDenied("a prompt change needs a second person: the proposer cannot approve it")
        ref = change["ref"]
        if self.validate(ref, change["source"]) != change["content_hash"]:
            raise PolicyDenied(f"prompt change {change_id} was altered after it was proposed")
        now = self.clock()
        db = self._gov()
        if not await db.update("prompt_changes", {"id": change_id, "status": "pending"},
                               {"status": "applied", "approver": approver, "decided_at": now}):
            raise PolicyDenied(f"prompt change {change_id} was decided concurrently")
        await db.insert("prompt_versions", {
            "ref": ref, "content_hash": change["content_hash"], "source": change["source"],
            "proposed_by": change["proposer"], "approved_by": approver, "created_at": now,
        }, ignore_conflict=True)
        previous = await self.active(ref)
        await self.store.set_flag(FLAG_PREFIX + ref, {
            "ref": ref, "hash": change["content_hash"], "source": change["source"], "change_id": change_id,
        }, now)
        await self._audit("prompt.changed", approver, ref, change_id=change_id, proposer=change["proposer"],
                          previous=(previous or {}).get("hash"), content_hash=change["content_hash"])
        return str(change["content_hash"])

    async def reject(self, change_id: str, *, reviewer: str) -> None:
        """Close a pending change without applying it (audited)."""
        change = await self._pending(change_id)
        if not await self._gov().update("prompt_changes", {"id": change_id, "status": "pending"},
                                        {"status": "rejected", "approver": reviewer, "decided_at": self.clock()}):
            raise PolicyDenied(f"prompt change {change_id} was decided concurrently")
        await self._audit("prompt.change_rejected", reviewer, change["ref"], change_id=change_id)

    async def versions(self) -> list[dict[str, Any]]:
        """Every stored version, oldest first, each with ``active``."""
        rows = await self._gov().select("prompt_versions", {}, order_by="created_at, ref")
        out = []
        for r in rows:
            current = await self.active(r["ref"]) or {}
            out.append({"ref": r["ref"], "content_hash": r["content_hash"], "proposed_by": r["proposed_by"],
                        "approved_by": r["approved_by"], "created_at": r["created_at"],
                        "active": current.get("hash") == r["content_hash"]})
        return out

    async def changes(self, status: str | None = "pending") -> list[dict[str, Any]]:
        """Proposed changes (``pending``, ``applied``, ``rejected``; ``None``: all), oldest first."""
        rows = await self._gov().select("prompt_changes", {} if status is None else {"status": status},
                                        order_by="created_at, id")
        return [{k: r[k] for k in ("id", "ref", "content_hash", "status", "proposer", "approver", "created_at",
                                   "decided_at")} for r in rows]
