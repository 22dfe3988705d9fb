"""Signed webhook triggers: HMAC, replay window, one run per delivery, and the kill switch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from stalwart.engine import KILL_SWITCH_FLAG
from stalwart.engine._webhooks import sign
from tests.e2e.apps import build_app
from tests.e2e.server import ServerThread

SECRET = b"whsec-test-0123456789"


def test_signed_webhooks_start_one_run_per_delivery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET.decode())
    app = build_app(f"sqlite:///{tmp_path}/w.db")
    app.webhook("orders", workflow="echo", secret_env="TEST_WEBHOOK_SECRET", org="acme")
    body = json.dumps({"order_id": "A-1001", "message": "refund A-1001 please"}).encode()
    with ServerThread(app, worker=False) as server, httpx.Client(base_url=server.url) as c:
        now = int(time.time())
        headers = {"stalwart-signature": sign(SECRET, body, now), "stalwart-delivery": "d-1",
                   "content-type": "application/json"}
        first = c.post("/v1/triggers/orders", content=body, headers=headers)
        assert first.status_code == 202, first.text
        again = c.post("/v1/triggers/orders", content=body, headers=headers)
        assert again.json()["id"] == first.json()["id"]  # a replayed delivery starts nothing new
        forged = {**headers, "stalwart-signature": sign(b"wrong", body, now), "stalwart-delivery": "d-2"}
        assert c.post("/v1/triggers/orders", content=body, headers=forged).status_code == 401
        old = {**headers, "stalwart-signature": sign(SECRET, body, now - 3600), "stalwart-delivery": "d-3"}
        assert c.post("/v1/triggers/orders", content=body, headers=old).status_code == 401
        tampered = c.post("/v1/triggers/orders", content=body.replace(b"1001", b"9999"), headers=headers)
        assert tampered.status_code == 401
        assert c.post("/v1/triggers/orders", content=body, headers={"stalwart-delivery": "d-4"}).status_code == 401
        server.call(app.store.set_flag(KILL_SWITCH_FLAG, {"reason": "drill"}, time.time()))
        fresh = {**headers, "stalwart-signature": sign(SECRET, body, int(time.time())), "stalwart-delivery": "d-5"}
        assert c.post("/v1/triggers/orders", content=body, headers=fresh).status_code == 503
