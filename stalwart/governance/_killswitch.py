"""The kill switch: stop every agent in seconds; restart only with two people.

Engaging sets the store flag ``kill_switch`` (the engine refuses new runs and new steps while it
is set, and drains what is in flight), bumps the credential broker's epoch (every agent
credential minted so far stops verifying, in every process), audits the operator and reason,
and alerts through the webhook. Releasing takes two distinct operators: the first records a
pending release, the second completes it; both are audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from stalwart.errors import PolicyDenied
from stalwart.governance._events import AuditEvent
from stalwart.governance._webhook import Webhook

__all__ = ["KILL_SWITCH_FLAG", "RELEASE_FLAG", "KillSwitch"]

KILL_SWITCH_FLAG = "kill_switch"
RELEASE_FLAG = "kill_switch_release"


class KillSwitch:
    """``broker``: a :class:`stalwart.sandbox.CredentialBroker` (anything with ``bump_epoch()``).
    A pending release older than ``release_window_s`` no longer counts."""

    def __init__(
        self,
        store: Any,
        audit: Any,
        broker: Any = None,
        clock: Callable[[], float] = time.time,
        *,
        webhook_url: str | None = None,
        webhook: Webhook | None = None,
        release_window_s: float = 3600.0,
    ) -> None:
        self.store = store
        self.audit = audit
        self.broker = broker
        self.clock = clock
        self.webhook = webhook or Webhook(webhook_url)
        self.release_window_s = release_window_s

    async def status(self) -> dict[str, Any] | None:
        """The engaged switch's record (reason, operator, time, epoch), or ``None``."""
        return await self.store.get_flag(KILL_SWITCH_FLAG)

    async def engage(self, reason: str, operator: str) -> dict[str, Any]:
        """Engage (idempotent: an engaged switch keeps its first record, the call is still audited)."""
        if not reason.strip():
            raise ValueError("engaging the kill switch needs a reason")
        now = self.clock()
        current = await self.status()
        record = current or {"reason": reason, "operator": operator, "engaged_at": now}
        if current is None:
            await self.store.set_flag(KILL_SWITCH_FLAG, record, now)
        await self.store.set_flag(RELEASE_FLAG, None, now)
        epoch = await self.broker.bump_epoch() if self.broker is not None else None
        if epoch is not None and current is None:
            record = {**record, "credential_epoch": epoch}
            await self.store.set_flag(KILL_SWITCH_FLAG, record, now)
        await self.audit.append(
            [
                AuditEvent(
                    "kill_switch.engaged",
                    action="engage",
                    actor=f"user:{operator}",
                    resource="kill_switch",
                    decision="engaged",
                    details={
                        "reason": reason,
                        "credential_epoch": epoch,
                        "already_engaged": current is not None,
                    },
                )
            ]
        )
        self.webhook.send_later(
            "Kill switch ENGAGED", {"operator": operator, "reason": reason, "credential epoch": epoch}
        )
        return record

    async def release(self, operator: str) -> str:
        """Returns ``"pending"`` after the first operator, ``"released"`` after a second, distinct one,
        ``"not_engaged"`` when there is nothing to release."""
        now = self.clock()
        if await self.status() is None:
            return "not_engaged"
        pending = await self.store.get_flag(RELEASE_FLAG)
        if pending is not None and now - float(pending.get("at", 0)) > self.release_window_s:
            pending = None
        if pending is None:
            await self.store.set_flag(RELEASE_FLAG, {"operator": operator, "at": now}, now)
            await self.audit.append(
                [
                    AuditEvent(
                        "kill_switch.release_requested",
                        action="release",
                        actor=f"user:{operator}",
                        resource="kill_switch",
                        decision="pending",
                    )
                ]
            )
            self.webhook.send_later(
                "Kill switch release requested (needs a second operator)", {"operator": operator}
            )
            return "pending"
        if pending.get("operator") == operator:
            raise PolicyDenied("releasing the kill switch needs a second, different operator")
        await self.store.set_flag(KILL_SWITCH_FLAG, None, now)
        await self.store.set_flag(RELEASE_FLAG, None, now)
        await self.audit.append(
            [
                AuditEvent(
                    "kill_switch.released",
                    action="release",
                    actor=f"user:{operator}",
                    resource="kill_switch",
                    decision="released",
                    details={"operators": [pending.get("operator"), operator]},
                )
            ]
        )
        self.webhook.send_later(
            "Kill switch released", {"operators": f"{pending.get('operator')}, {operator}"}
        )
        return "released"
