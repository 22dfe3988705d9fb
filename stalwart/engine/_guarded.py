"""The guard around model and tool calls: redact before the model, scan what comes back.

The model never sees raw PII: every string going into a prompt is redacted into ``{{TYPE_N}}``
placeholders, whose values go to the encrypted vault under the run's scope. Untrusted text (the
user's input to a prompt, every tool output, every model output) is scanned for injection; a
block fails the step for good (``InjectionBlocked``), a flag sends the run to review.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from stalwart.errors import InjectionBlocked

if TYPE_CHECKING:
    from stalwart.engine._execution import RunExecution

__all__ = ["RunGuard"]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


_WINDOW = 256 * 1024
_OVERLAP = 4 * 1024
_RANK = {"allow": 0, "flag": 1, "block": 2}


def _scan_windows(guard: Any, text: str, source: str) -> Any:
    """Scan ``text`` in overlapping windows (the scanners' cost grows faster than linearly with the
    length, and a 10 MB tool result must not stall a worker); the worst verdict wins, and the first
    block ends the scan. The overlap keeps a phrase that straddles two windows whole in one."""
    worst = None
    for start in range(0, len(text), _WINDOW - _OVERLAP):
        v = guard.scan(text[start:start + _WINDOW], source)
        if worst is None or (_RANK[v.action], v.score) > (_RANK[worst.action], worst.score):
            worst = v
        if v.action == "block" or start + _WINDOW >= len(text):
            break
    return worst


class RunGuard:
    """Per-execution guard state: the run's placeholder numbering and what the guard saw."""

    def __init__(self, ex: RunExecution) -> None:
        self.ex = ex
        self.guard = ex.app.guard()
        self._placeholders: Any = None
        self.pii_counts: dict[str, int] = {}
        self._unreported_pii: list[str] = []
        self._redacted: dict[str, tuple[str, dict[str, int]]] = {}
        """Strings already redacted in this execution, with what was found: the same string gets
        the same placeholders again (the numbering is the run's), so an agent's history, sent
        again each turn, is not analysed again. Counts are still added each time, as before."""
        self._verdicts: dict[tuple[str, str], Any] = {}
        """Scan verdicts by (source, text), for the same reason: the scan is deterministic, and
        what a verdict causes (a record, a flag, a block) still happens on every scan."""

    @property
    def pii_on(self) -> bool:
        return bool(self.guard.settings.pii)

    async def placeholders(self) -> Any:
        if self._placeholders is None:
            from stalwart.guard import PlaceholderMap

            vault = await self.ex.app.vault(required=False)
            if vault is not None:
                self._placeholders = await vault.placeholders(self.ex.run.org or "default", scope=self.ex.run.id)
            else:
                self._placeholders = PlaceholderMap()
        return self._placeholders

    async def redact_value(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value, keeping the run's numbering."""
        if not self.pii_on:
            return value
        await self.ex.app.guard_ready(pii=True)
        ph = await self.placeholders()
        if isinstance(value, str):
            done = self._redacted.get(value)
            if done is None:
                red = self.guard.redact(value, ph)
                done = (red.text, dict(red.counts))
                if len(self._redacted) >= 4096:
                    self._redacted.clear()
                self._redacted[value] = done
            text, counts = done
            for k, n in counts.items():
                self.pii_counts[k] = self.pii_counts.get(k, 0) + n
                self._unreported_pii.extend([k] * n)
            return text
        if isinstance(value, dict):
            return {k: await self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [await self.redact_value(v) for v in value]
        return value

    def redact_now(self, value: Any) -> Any:
        """Redact a JSON-like value for the audit log, with the run's numbering when it is loaded.

        Callers make sure the redactor is loaded first (``await app.guard_ready(pii=True)``)."""
        if not self.pii_on:
            return value
        if isinstance(value, str):
            return self.guard.redact(value, self._placeholders).text if value else value
        if isinstance(value, dict):
            return {k: self.redact_now(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_now(v) for v in value]
        return value

    async def seal(self) -> None:
        """Put the run's placeholder values into the vault (fails closed without a master key)."""
        if self._placeholders is None or not len(self._placeholders):
            return
        vault = await self.ex.app.vault(required=True)
        await vault.put(self.ex.run.org or "default", self._placeholders.mapping(), scope=self.ex.run.id,
                        subject=self.ex.run.user or None)

    async def scan(self, text: str, source: str, where: str, meta: dict[str, Any]) -> None:
        """Scan untrusted text; raise on block, record a flag on the run."""
        await self.ex.app.guard_ready()
        verdict = self._verdicts.get((source, text))
        if verdict is None:
            if len(text) > _WINDOW:  # a large tool result: every byte is scanned, in windows, off the loop
                verdict = await asyncio.to_thread(_scan_windows, self.guard, text, source)
            else:
                verdict = self.guard.scan(text, source)  # type: ignore[arg-type]
                if len(self._verdicts) >= 4096:
                    self._verdicts.clear()
                self._verdicts[(source, text)] = verdict
        pii, self._unreported_pii = self._unreported_pii, []
        self.ex.app._guard_verdict(source, verdict.action, verdict.score, pii)
        if verdict.action == "allow":
            return
        record = {"where": where, "source": source, "action": verdict.action, "score": round(verdict.score, 3),
                  "reasons": list(verdict.reasons)[:5]}
        meta.setdefault("guard", []).append(record)
        if verdict.action == "block":
            err = InjectionBlocked(
                f"prompt injection blocked in {where} (score {verdict.score:.2f}: "
                f"{', '.join(list(verdict.reasons)[:3])})",
                retryable=False,
                details=record,
            )
            err._stalwart_meta = meta  # type: ignore[attr-defined]
            raise err
        self.ex.flag(record)

    async def scan_json(self, value: Any, source: str, where: str, meta: dict[str, Any]) -> None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if text:
            await self.scan(text, source, where, meta)

    def user_strings(self, value: Any) -> str:
        return "\n".join(_strings(value))
