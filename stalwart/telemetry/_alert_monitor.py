"""In-process alert evaluation from this process's own metrics, and delivery to a webhook.

Every ``tick`` takes a snapshot of the cumulative metric values, turns the difference with the
snapshot one window earlier into an :class:`AlertSample` (the same arithmetic as ``rate()`` and
``histogram_quantile`` in ``alerts.yml``), evaluates the rules, posts transitions to the webhook,
and persists the current alerts in the store for ``stalwart alerts``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from stalwart.telemetry._alerts import Alert, AlertSample, evaluate_alerts, histogram_quantile
from stalwart.telemetry._metrics import Metrics

__all__ = ["ALERTS_NAMESPACE", "AlertMonitor", "load_alerts"]

ALERTS_NAMESPACE = "alerts"
_log = logging.getLogger("stalwart.telemetry")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float
    duration_buckets: dict[float, float]
    ratio_buckets: dict[float, float]
    runs_ok: float
    runs_failed: float
    scans: float
    pii: float
    review_depth: float
    kill_switch: float
    mcp_quarantined: float = 0.0


def _snapshot(metrics: Metrics, at: float) -> _Snapshot:
    dur: dict[float, float] = {}
    ratio: dict[float, float] = {}
    ok = failed = scans = pii = depth = kill = quarantined = 0.0
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == "agent_run_duration_seconds_bucket":
                le = float(s.labels["le"])
                dur[le] = dur.get(le, 0.0) + s.value
            elif s.name == "agent_run_duration_seconds_count":
                if s.labels.get("success") == "true":
                    ok += s.value
                else:
                    failed += s.value
            elif s.name == "agent_run_budget_ratio_bucket":
                le = float(s.labels["le"])
                ratio[le] = ratio.get(le, 0.0) + s.value
            elif s.name == "agent_guard_scans_total":
                scans += s.value
            elif s.name == "agent_pii_detections_total":
                pii += s.value
            elif s.name == "agent_human_review_queue_depth":
                depth = s.value
            elif s.name == "agent_kill_switch_active":
                kill = s.value
            elif s.name == "agent_mcp_quarantined_total":
                quarantined += s.value
    return _Snapshot(at, dur, ratio, ok, failed, scans, pii, depth, kill, quarantined)


def _diff(new: dict[float, float], old: dict[float, float] | None) -> list[tuple[float, float]]:
    return [(le, v - (old or {}).get(le, 0.0)) for le, v in new.items()]


def sample_between(new: _Snapshot, short: _Snapshot | None, long: _Snapshot | None) -> AlertSample:
    """The sample at ``new.at`` given snapshots 5 minutes (``short``) and 1 hour (``long``) older."""
    runs_ok = new.runs_ok - (short.runs_ok if short else 0.0)
    runs_failed = new.runs_failed - (short.runs_failed if short else 0.0)
    runs = runs_ok + runs_failed
    scans = new.scans - (short.scans if short else 0.0)
    pii = new.pii - (short.pii if short else 0.0)
    return AlertSample(
        at=new.at,
        run_duration_p99_s=histogram_quantile(
            0.99, _diff(new.duration_buckets, short.duration_buckets if short else None)
        ),
        error_rate=runs_failed / runs if runs > 0 else None,
        budget_ratio_p95=histogram_quantile(
            0.95, _diff(new.ratio_buckets, long.ratio_buckets if long else None)
        ),
        pii_rate=pii / scans if scans > 0 else None,
        review_queue_depth=new.review_depth,
        kill_switch=new.kill_switch,
        mcp_quarantined=new.mcp_quarantined - (short.mcp_quarantined if short else 0.0),
    )


class AlertMonitor:
    """Evaluates the alert rules every ``interval_s`` from ``metrics``; keeps an hour of history.

    ``webhook_url``: a Slack-compatible webhook that receives firing and resolved transitions.
    ``store``: where the current alerts are persisted under ``alerts/{source}``.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        interval_s: float = 15.0,
        webhook_url: str | None = None,
        store: Any = None,
        source: str = "local",
        short_window_s: float = 300.0,
        long_window_s: float = 3600.0,
    ) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.webhook_url = webhook_url
        self.store = store
        self.source = source
        self.short_window_s = short_window_s
        self.long_window_s = long_window_s
        self._snaps: deque[_Snapshot] = deque()
        self.samples: deque[AlertSample] = deque(maxlen=4096)
        self._last: float | None = None
        self._firing: dict[str, Alert] = {}
        self.current: list[Alert] = []
        self.webhook_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _older(self, at: float, window: float) -> _Snapshot | None:
        best = None
        for s in self._snaps:
            if s.at <= at - window:
                best = s
            else:
                break
        return best if best is not None else (self._snaps[0] if self._snaps else None)

    def observe(self, now: float) -> AlertSample:
        """Snapshot the metrics now and append the resulting sample."""
        snap = _snapshot(self.metrics, now)
        sample = sample_between(
            snap, self._older(now, self.short_window_s), self._older(now, self.long_window_s)
        )
        self._snaps.append(snap)
        while len(self._snaps) > 2 and self._snaps[1].at <= now - self.long_window_s:
            self._snaps.popleft()
        self.samples.append(sample)
        self._last = now
        return sample

    def evaluate(self, now: float) -> list[Alert]:
        """The alerts holding at ``now`` over the samples seen so far."""
        return evaluate_alerts(list(self.samples), now=now, max_gap_s=max(120.0, 3 * self.interval_s))

    async def tick(self, now: float) -> list[Alert]:
        """Observe and evaluate if ``interval_s`` has passed; notify and persist changes."""
        if self._last is not None and now - self._last < self.interval_s:
            return self.current
        self.observe(now)
        self.current = self.evaluate(now)
        firing = {a.name: a for a in self.current if a.state == "firing"}
        for name, alert in firing.items():
            if name not in self._firing:
                self._notify("firing", alert)
        for name, alert in self._firing.items():
            if name not in firing:
                self._notify("resolved", alert)
        self._firing = firing
        if self.store is not None:
            try:
                body = {"at": now, "source": self.source, "alerts": [a.to_dict() for a in self.current]}
                await self.store.kv_put(
                    ALERTS_NAMESPACE,
                    self.source,
                    json.dumps(body).encode(),
                    expires_at=now + max(300.0, 10 * self.interval_s),
                )
            except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
                _log.warning("persisting alerts failed: %s", type(exc).__name__)
        return self.current

    def _notify(self, transition: str, alert: Alert) -> None:
        if not self.webhook_url:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._post(transition, alert))
        except RuntimeError:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, transition: str, alert: Alert) -> None:
        import httpx

        text = f"Stalwart alert {alert.name} {transition}: {alert.summary} (value {alert.value:.4g})"
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                resp = await client.post(
                    self.webhook_url or "",
                    json={"text": text, "status": transition, "alert": alert.to_dict()},
                )
                resp.raise_for_status()
        except Exception as exc:  # noqa: BLE001 - telemetry never raises into its host
            self.webhook_failures += 1
            _log.warning("alert webhook failed: %s", type(exc).__name__)

    async def drain(self) -> None:
        """Wait for webhook posts in flight."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def load_alerts(store: Any, now: float) -> list[Alert]:
    """Alerts persisted by every live process (expired entries are ignored), most severe first."""
    out: list[Alert] = []
    seen: set[tuple[str, str]] = set()
    for key in await store.kv_keys(ALERTS_NAMESPACE):
        raw = await store.kv_get(ALERTS_NAMESPACE, key, now)
        if raw is None:
            continue
        for d in json.loads(raw).get("alerts", []):
            a = Alert(**d)
            if (a.name, a.state) not in seen:
                seen.add((a.name, a.state))
                out.append(a)
    rank = {"critical": 0, "warning": 1}
    out.sort(key=lambda a: (a.state != "firing", rank.get(a.severity, 2), a.name))
    return out
