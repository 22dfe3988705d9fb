"""Slack-compatible webhook notifications (``{"text": ..., "blocks": [...]}``), with retries.

A notification never fails the caller: after the last attempt it is logged and counted as
undelivered. 429 and 5xx responses and connection errors are retried with exponential backoff
(``Retry-After`` honoured, capped); other 4xx are not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

__all__ = ["Webhook"]

_log = logging.getLogger("stalwart.governance")


class Webhook:
    def __init__(
        self,
        url: str | None,
        *,
        attempts: int = 4,
        backoff_s: float = 0.5,
        max_delay_s: float = 30.0,
        timeout_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.transport = transport
        self.delivered = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[bool]] = set()

    @staticmethod
    def payload(title: str, fields: dict[str, Any]) -> dict[str, Any]:
        lines = "\n".join(f"*{k}*: {v}" for k, v in fields.items() if v not in (None, ""))
        return {
            "text": f"{title}\n{lines}" if lines else title,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": lines or "-"}},
            ],
        }

    async def send(self, title: str, fields: dict[str, Any]) -> bool:
        """Deliver one message; returns whether it was accepted (2xx)."""
        if not self.url:
            return False
        body = self.payload(title, fields)
        async with httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport) as client:
            for attempt in range(1, self.attempts + 1):
                delay = min(self.max_delay_s, self.backoff_s * 2 ** (attempt - 1))
                try:
                    resp = await client.post(self.url, json=body)
                    if resp.is_success:
                        self.delivered += 1
                        return True
                    if resp.status_code != 429 and resp.status_code < 500:
                        break
                    retry_after = resp.headers.get("retry-after")
                    if retry_after and retry_after.replace(".", "", 1).isdigit():
                        delay = min(self.max_delay_s, float(retry_after))
                except httpx.HTTPError as exc:
                    _log.warning("webhook attempt %d/%d failed: %s", attempt, self.attempts, exc)
                if attempt < self.attempts:
                    await self.sleep(delay)
        self.failed += 1
        _log.error("webhook %r undelivered after %d attempts", title, self.attempts)
        return False

    def send_later(self, title: str, fields: dict[str, Any]) -> None:
        """Deliver in the background (the hot path never waits on a webhook)."""
        if not self.url:
            return
        task = asyncio.get_running_loop().create_task(self.send(title, fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for background deliveries (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
