"""Protection at the edge and the server process: JWT, rate limits, body limits, validation,
security headers, CORS, no stack traces, readiness, bootstrap key, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import stalwart as sw
from stalwart.api import ApiSettings
from tests.e2e.apps import build_app
from tests.e2e.server import ServerThread

ROOT = Path(__file__).resolve().parents[2]


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _token(key: Any, alg: str, **over: Any) -> str:
    now = time.time()
    claims = {
        "sub": "alice",
        "iss": "https://idp.test",
        "aud": "stalwart",
        "exp": now + 300,
        "iat": now,
        "org": "acme",
        "roles": ["viewer", "operator"],
        **over,
    }
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, algorithm=alg, headers={"kid": "k1"}
    )


def test_jwt_bearer_rs256_es256_and_its_checks(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    s = ApiSettings(
        print_bootstrap_key=False,
        jwt_issuer="https://idp.test",
        jwt_audience="stalwart",
        jwt_public_keys=[_pem(rsa_key), _pem(ec_key)],
        jwt_leeway_s=30,
    )
    with (
        ServerThread(build_app(f"sqlite:///{tmp_path}/s.db"), s, worker=False) as server,
        httpx.Client(base_url=server.url) as c,
    ):

        def status(token: str) -> int:
            return c.get("/v1/runs", headers={"Authorization": f"Bearer {token}"}).status_code

        assert status(_token(rsa_key, "RS256")) == 200
        assert status(_token(ec_key, "ES256")) == 200
        assert status(_token(rsa_key, "RS256", exp=time.time() - 10)) == 200  # within the skew leeway
        assert status(_token(rsa_key, "RS256", exp=time.time() - 120)) == 401
        assert status(_token(rsa_key, "RS256", aud="someone-else")) == 401
        assert status(_token(rsa_key, "RS256", iss="https://evil.test")) == 401
        assert status(_token(other, "RS256")) == 401  # signed by an unknown key
        assert status(_token(rsa_key, "RS256", org=None)) == 401
        assert status(_token(rsa_key, "RS256", roles=["superuser"])) == 401
        assert (
            status(
                jwt.encode(
                    {
                        "sub": "x",
                        "org": "acme",
                        "roles": ["admin"],
                        "exp": time.time() + 60,
                        "iss": "https://idp.test",
                        "aud": "stalwart",
                    },
                    "k" * 32,
                    algorithm="HS256",
                )
            )
            == 401
        )
        # Roles and org come from the token: a viewer/operator of acme cannot engage the kill switch.
        good = {"Authorization": f"Bearer {_token(rsa_key, 'RS256')}"}
        assert c.post("/admin/kill-switch", json={"reason": "x"}, headers=good).status_code == 403
        started = c.post("/v1/runs", json={"workflow": "echo", "input": {}}, headers=good).json()
        assert started["org"] == "acme" and started["user"] == "alice"


def test_jwt_from_a_jwks_url(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(jwks)))
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *a: Any) -> None:
            pass

    idp = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=idp.serve_forever, daemon=True).start()
    try:
        s = ApiSettings(
            print_bootstrap_key=False,
            jwt_issuer="https://idp.test",
            jwt_audience="stalwart",
            jwks_url=f"http://127.0.0.1:{idp.server_port}/jwks.json",
        )
        with (
            ServerThread(build_app(f"sqlite:///{tmp_path}/s.db"), s, worker=False) as server,
            httpx.Client(base_url=server.url) as c,
        ):
            ok = c.get("/v1/runs", headers={"Authorization": f"Bearer {_token(key, 'RS256')}"})
            assert ok.status_code == 200, ok.text
            forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            assert (
                c.get("/v1/runs", headers={"Authorization": f"Bearer {_token(forged, 'RS256')}"}).status_code
                == 401
            )
    finally:
        idp.shutdown()


def test_rate_limits_body_limits_validation_headers_cors(tmp_path: Path) -> None:
    s = ApiSettings(print_bootstrap_key=False, key_rate_per_min=5, org_rate_per_min=8, max_body_bytes=4096)
    with (
        ServerThread(build_app(f"sqlite:///{tmp_path}/s.db"), s, worker=False) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        ctx = server.api.state.stalwart
        k1, _ = server.call(ctx.keys.create(org="acme", roles=["operator"]))
        k2, _ = server.call(ctx.keys.create(org="acme", roles=["operator"]))
        h1, h2 = {"Authorization": f"Bearer {k1}"}, {"Authorization": f"Bearer {k2}"}
        codes = [c.get("/v1/runs", headers=h1).status_code for _ in range(6)]
        assert codes[:5] == [200] * 5 and codes[5] == 429
        limited = c.get("/v1/runs", headers=h1)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        # The second key has its own bucket, but the org's bucket (8/min) is shared.
        codes2 = [c.get("/v1/runs", headers=h2).status_code for _ in range(5)]
        assert 200 in codes2 and codes2[-1] == 429

        k3, _ = server.call(ctx.keys.create(org="other", roles=["operator", "admin"]))
        h3 = {"Authorization": f"Bearer {k3}"}
        big = c.post(
            "/v1/runs",
            content=b'{"workflow": "echo", "input": "' + b"x" * 10_000 + b'"}',
            headers={**h3, "Content-Type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"

        def chunks() -> Any:
            yield b'{"workflow": "echo", "input": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        streamed = c.post("/v1/runs", content=chunks(), headers={**h3, "Content-Type": "application/json"})
        assert streamed.status_code == 413

        bad = c.post("/v1/runs", json={"workflow": "", "surprise": 1}, headers=h3)
        assert bad.status_code == 422
        msg = bad.json()["error"]["message"]
        assert "body.workflow" in msg and "body.surprise" in msg

        r = c.get("/v1/runs", headers=h3)
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        pre = c.options(
            "/v1/runs", headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in pre.headers
        assert (
            "access-control-allow-origin"
            not in c.get("/healthz", headers={"Origin": "https://evil.test"}).headers
        )


def test_no_stack_trace_in_any_response(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/s.db")
    with ServerThread(app, worker=False) as server, httpx.Client(base_url=server.url) as c:
        k, _ = server.call(server.api.state.stalwart.keys.create(org="acme", roles=["viewer"]))

        async def boom(*a: Any, **kw: Any) -> Any:
            raise RuntimeError("secret internals at /etc/stalwart/db.key")

        app.list_runs = boom  # type: ignore[method-assign]
        r = c.get("/v1/runs", headers={"Authorization": f"Bearer {k}"})
        assert r.status_code == 500
        assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
        assert "Traceback" not in r.text and "secret" not in r.text


def test_readyz_healthz_metrics_and_openapi(tmp_path: Path) -> None:
    with (
        ServerThread(build_app(f"sqlite:///{tmp_path}/s.db"), worker=False) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["migrations"]["ok"] is True
        c.get("/v1/runs")
        m = c.get("/metrics")
        assert (
            m.status_code == 200
            and 'stalwart_http_requests_total{method="GET",route="/v1/runs",status="401"}' in m.text
        )
        paths = c.get("/openapi.json").json()["paths"]
        for p in (
            "/v1/runs",
            "/v1/runs/{run_id}",
            "/v1/runs/{run_id}/trace",
            "/v1/runs/{run_id}/cancel",
            "/v1/reviews",
            "/v1/reviews/{review_id}/decision",
            "/admin/kill-switch",
            "/v1/audit/verify",
            "/v1/compliance/subjects/{subject_id}/export",
            "/v1/compliance/subjects/{subject_id}",
            "/v1/chat/completions",
            "/metrics",
            "/healthz",
            "/readyz",
        ):
            assert p in paths, p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_process_prints_first_key_and_drains_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    port = _free_port()
    env = {**os.environ, "STALWART_DB": db, "STALWART_APP": "tests.e2e.apps:app", "PYTHONPATH": str(ROOT)}
    env.pop("STALWART_ADMIN_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stalwart.api._cli", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        key = None
        for line in proc.stderr:  # type: ignore[union-attr]
            if line.strip().startswith("sw_"):
                key = line.strip()
                break
        assert key, "the first start did not print an admin key"
        h = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for _ in range(200):
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            run_id = c.post(
                "/v1/runs", json={"workflow": "slow", "input": {"steps": 4, "seconds": 0.4}}, headers=h
            ).json()["id"]
            for _ in range(200):
                if c.get(f"/v1/runs/{run_id}", headers=h).json()["status"] == "RUNNING":
                    break
                time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    async def after() -> tuple[Any, Any]:
        app = sw.App("check", db=db)
        try:
            await app.connect()
            rec = await app.store.get_run(run_id)
            journal = await app.store.journal(run_id)
            return rec, journal
        finally:
            await app.close()

    rec, journal = asyncio.run(after())
    # The worker drained: the step in flight finished and was journaled, and the lease was released.
    assert rec.owner is None and rec.status in ("PENDING", "RUNNING", "WAITING"), (rec.status, rec.owner)
    assert journal and all(e.status == "completed" for e in journal)
    assert len(journal) < 4
    # A fresh server resumes it from its journal and it completes; the first key still works.
    proc2 = subprocess.Popen(
        [sys.executable, "-m", "stalwart.api._cli", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            status = None
            for _ in range(400):
                try:
                    status = c.get(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {key}"}).json()
                    if status["status"] == "COMPLETED":
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            assert status and status["status"] == "COMPLETED", status
            assert status["output"] == {"slept": pytest.approx(1.6)}
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(timeout=30)
