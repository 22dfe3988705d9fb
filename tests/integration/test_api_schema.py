"""Schemathesis against ``/openapi.json`` of a real server: zero 5xx, zero schema violations.

Every operation is fuzzed with a bounded number of examples as an admin of the platform org (the
widest view), so responses exercise real data paths, not only the 401 branch. The kill switch is
left out: engaging it would turn the rest of the run into 503s.

A second pass runs the ``st`` command's coverage phase: every boundary value and every documented
constraint violated once (a cap of exactly 0, a string one character too long, a missing field…),
which random fuzzing seldom hits. Every endpoint, admin endpoints included, must answer without a
5xx (a bad body is a 422 with a message).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.apps import build_app
from tests.e2e.server import ServerThread

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def _fuzz(op: Any, url: str, headers: dict[str, str], failures: list[str]) -> Any:
    @given(case=op.as_strategy())
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        response = case.call(base_url=url, headers=headers, timeout=20)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # collect every operation's failure
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")
            raise

    return check


def test_api_conforms_to_its_schema(tmp_path: Path) -> None:
    with ServerThread(build_app(f"sqlite:///{tmp_path}/s.db"), worker=False) as server:
        key, _ = server.call(
            server.api.state.stalwart.keys.create(org="default", roles=["admin"], subject="fuzz")
        )
        headers = {"Authorization": f"Bearer {key}"}
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        failures: list[str] = []
        operations = 0
        for result in schema.get_all_operations():
            op = result.ok()
            if op.path == "/admin/kill-switch" and op.method.upper() != "GET":
                continue
            operations += 1

            check = _fuzz(op, server.url, headers, failures)
            with contextlib.suppress(AssertionError, BaseExceptionGroup):  # recorded in ``failures``
                check()
        assert operations >= 20
        assert not failures, "\n\n".join(failures)


def test_boundary_values_never_get_a_5xx(tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("the schemathesis command (st) is not installed beside this Python")
    with ServerThread(build_app(f"sqlite:///{tmp_path}/s.db")) as server:
        key, _ = server.call(
            server.api.state.stalwart.keys.create(org="default", roles=["admin"], subject="fuzz")
        )
        out = subprocess.run(
            [
                str(st), "run", f"{server.url}/openapi.json",
                "--header", f"Authorization: Bearer {key}",
                "--phases", "examples,coverage",
                "--checks", "not_a_server_error",
                "--workers", "1",
                "--exclude-by", "/path == '/admin/kill-switch' and /method != 'GET'",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "passed" in out.stdout and " 0 passed" not in out.stdout


def test_bad_bodies_on_admin_endpoints_are_422_with_a_message(tmp_path: Path) -> None:
    import httpx

    with ServerThread(build_app(f"sqlite:///{tmp_path}/s.db"), worker=False) as server:
        key, _ = server.call(
            server.api.state.stalwart.keys.create(org="default", roles=["admin"], subject="bodies")
        )
        h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=server.url, headers=h) as c:
            for method, path in (("PUT", "/admin/budget"), ("POST", "/admin/keys"), ("POST", "/v1/runs")):
                r = c.request(method, path, content=b"\xff\x1d")
                assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"], r.text
            for body in ({"max_usd": 0}, {"max_tokens": 0}, {"max_usd": -1}, {"max_usd": "ten"}):
                r = c.put("/admin/budget", json=body)
                assert r.status_code == 422, (body, r.text)
                assert r.json()["error"]["message"].startswith("invalid request: body.max_")
            r = c.post("/admin/keys", json={"org": "no spaces please", "roles": ["viewer"]})
            assert r.status_code == 422 and "body.org" in r.json()["error"]["message"]
            assert c.put("/admin/budget", json={"max_usd": 3.5}).json()["max_usd"] == 3.5
            assert c.put("/admin/budget", json={}).json()["max_usd"] is None  # omitting both clears the cap
