"""Budget alert delivery: a callback and/or a Slack-compatible webhook. Never raises into a call."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["AlertSink"]

log = logging.getLogger("stalwart.gateway")


class AlertSink:
    """Hands each budget alert to ``on_alert`` and posts it to ``webhook_url`` in the background."""

    def __init__(self, on_alert: Callable[[dict[str, Any]], Any] | None, webhook_url: str | None) -> None:
        self._on_alert = on_alert
        self._webhook_url = webhook_url
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0

    async def emit(self, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            if self._on_alert is not None:
                try:
                    out = self._on_alert(alert)
                    if inspect.isawaitable(out):
                        await out
                except Exception:
                    self.failures += 1
                    log.warning("budget alert callback failed", exc_info=True)
            if self._webhook_url:
                task = asyncio.ensure_future(self._post(alert))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _post(self, alert: dict[str, Any]) -> None:
        import httpx

        text = (
            f"Stalwart budget alert: run {alert.get('run_id')} {alert['scope']} {alert['dimension']} "
            f"at {alert['threshold']}% ({alert['spent']} of {alert['cap']})"
        )
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                await client.post(self._webhook_url or "", json={"text": text, "alert": alert})
        except Exception as exc:  # noqa: BLE001 - a webhook never breaks a call
            self.failures += 1
            log.warning("budget alert webhook failed: %s", type(exc).__name__)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
