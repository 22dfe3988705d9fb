"""Authorization matrix: every endpoint × every role × own/other org, against a real server.

The "own" org is the platform org (``default``) that holds the resources; "other" is ``globex``.
A resource of another org must read as not found (404), never as forbidden, so ids leak nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stalwart.api import ROLES
from tests.e2e.apps import build_app
from tests.e2e.server import ServerThread

OWN, OTHER = "default", "globex"
READ = set(ROLES)


class World:
    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.keys: dict[tuple[str, str], str] = {}
        ctx = server.api.state.stalwart
        for org in (OWN, OTHER):
            for role in ROLES:
                token, _ = server.call(ctx.keys.create(org=org, roles=[role], subject=f"{org}-{role}"))
                self.keys[(org, role)] = token
        self.second_admin, _ = server.call(
            ctx.keys.create(org=OWN, roles=["admin"], subject="default-admin-2")
        )
        self.c = httpx.Client(base_url=server.url, timeout=30)
        op = self.h(OWN, "operator")
        self.run_id = self.c.post(
            "/v1/runs", json={"workflow": "echo", "input": {"payload": {"a": 1}}}, headers=op
        ).json()["id"]
        self.refund_id = self.c.post(
            "/v1/runs", json={"workflow": "refund", "input": {"order_id": "A-1", "cents": 25_000}}, headers=op
        ).json()["id"]
        self.review_id = self.wait_review(self.refund_id)["id"]

    def h(self, org: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[(org, role)]}"}

    def wait_review(self, run_id: str) -> dict[str, Any]:
        admin = self.h(OWN, "admin")
        for _ in range(400):
            for r in self.c.get("/v1/reviews", headers=admin).json()["reviews"]:
                if r["run_id"] == run_id:
                    return r
            time.sleep(0.025)
        raise AssertionError(f"no review appeared for run {run_id}")

    def wait_status(self, run_id: str, status: str) -> dict[str, Any]:
        for _ in range(400):
            run = self.c.get(f"/v1/runs/{run_id}", headers=self.h(OWN, "admin")).json()
            if run["status"] == status:
                return run
            time.sleep(0.025)
        raise AssertionError(f"run {run_id} never reached {status}: {run}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db = tmp_path_factory.mktemp("authz") / "s.db"
    with ServerThread(build_app(f"sqlite:///{db}")) as server:
        w = World(server)
        yield w
        w.c.close()


def _expect(allowed_roles: set[str], role: str, org: str, own: int, other: int) -> int:
    if role not in allowed_roles:
        return 403
    return own if org == OWN else other


ENDPOINTS: list[tuple[str, str, str, Any, set[str], int, int]] = [
    # name, method, path, json, roles allowed, status own org, status other org
    (
        "start run",
        "POST",
        "/v1/runs",
        {"workflow": "echo", "input": {"payload": {}}},
        {"operator", "admin"},
        201,
        201,
    ),
    ("list runs", "GET", "/v1/runs", None, READ, 200, 200),
    ("get run", "GET", "/v1/runs/{run}", None, READ, 200, 404),
    ("trace", "GET", "/v1/runs/{run}/trace", None, READ, 200, 404),
    ("cancel", "POST", "/v1/runs/{run}/cancel", None, {"operator", "admin"}, 200, 404),
    ("list reviews", "GET", "/v1/reviews", None, READ, 200, 200),
    ("get review", "GET", "/v1/reviews/{review}", None, READ, 200, 404),
    (
        "decide review",
        "POST",
        "/v1/reviews/{review}/decision",
        {"decision": "escalate"},
        {"reviewer", "admin"},
        200,
        404,
    ),
    ("kill-switch status", "GET", "/admin/kill-switch", None, READ, 200, 200),
    ("kill-switch release", "DELETE", "/admin/kill-switch", None, {"admin"}, 409, 403),
    ("audit verify", "GET", "/v1/audit/verify", None, {"auditor", "admin"}, 200, 200),
    ("audit events", "GET", "/v1/audit/events", None, {"auditor", "admin"}, 200, 200),
    (
        "export subject",
        "GET",
        "/v1/compliance/subjects/default-operator/export",
        None,
        {"auditor", "admin"},
        200,
        404,
    ),
    # A subject nobody knows reads like another org's: 404 (erasure of a known one: test_api_isolation).
    ("erase subject", "DELETE", "/v1/compliance/subjects/someone-else", None, {"admin"}, 404, 404),
    (
        "chat",
        "POST",
        "/v1/chat/completions",
        {"model": "default", "messages": [{"role": "user", "content": "hi"}]},
        {"operator", "admin"},
        200,
        200,
    ),
    ("dlq", "GET", "/v1/dlq", None, READ, 200, 200),
    ("budget", "GET", "/v1/budget", None, READ, 200, 200),
    ("set budget", "PUT", "/admin/budget", {"max_usd": 100.0}, {"admin"}, 200, 200),
    ("alerts", "GET", "/v1/alerts", None, READ, 200, 200),
    ("list keys", "GET", "/admin/keys", None, {"admin"}, 200, 200),
    ("create key", "POST", "/admin/keys", {"roles": ["viewer"]}, {"admin"}, 201, 201),
]


@pytest.mark.parametrize("org", [OWN, OTHER])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_matrix(world: World, endpoint: tuple[Any, ...], role: str, org: str) -> None:
    name, method, path, body, roles, own, other = endpoint
    url = path.format(run=world.run_id, review=world.review_id)
    r = world.c.request(method, url, json=body, headers=world.h(org, role))
    assert r.status_code == _expect(roles, role, org, own, other), (name, role, org, r.text)
    assert "Traceback" not in r.text
    if r.status_code == 200 and org == OTHER:
        text = r.text
        # Nothing of the own org leaks into another org's listings and exports.
        assert world.run_id not in text and world.refund_id not in text and world.review_id not in text, name
        if name == "export subject":
            assert r.json()["runs"] == []
    if name == "export subject" and org == OWN and r.status_code == 200:
        assert {x["id"] for x in r.json()["runs"]} >= {world.run_id, world.refund_id}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_unauthenticated_is_401(world: World, endpoint: tuple[Any, ...]) -> None:
    _, method, path, body, *_ = endpoint
    url = path.format(run=world.run_id, review=world.review_id)
    r = world.c.request(method, url, json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    bad = world.c.request(method, url, json=body, headers={"Authorization": "Bearer sw_nokey0000000_xyz"})
    assert bad.status_code == 401


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("org", [OWN, OTHER])
def test_kill_switch_engage_matrix(world: World, role: str, org: str) -> None:
    r = world.c.post("/admin/kill-switch", json={"reason": "matrix"}, headers=world.h(org, role))
    if role != "admin" or org != OWN:
        assert r.status_code == 403, r.text
        return
    assert r.status_code == 200 and r.json()["engaged"] is True
    first = world.c.delete("/admin/kill-switch", headers=world.h(OWN, "admin"))
    assert first.status_code == 202 and first.json()["engaged"] is True
    again = world.c.delete("/admin/kill-switch", headers=world.h(OWN, "admin"))
    assert again.status_code == 403 and again.json()["error"]["code"] == "same_operator"
    second = world.c.delete("/admin/kill-switch", headers={"Authorization": f"Bearer {world.second_admin}"})
    assert second.status_code == 200 and second.json()["released"] is True


def test_kill_switch_blocks_starts_until_two_admins_release(world: World) -> None:
    admin, op = world.h(OWN, "admin"), world.h(OWN, "operator")
    assert (
        world.c.post("/admin/kill-switch", json={"reason": "incident 42"}, headers=admin).status_code == 200
    )
    blocked = world.c.post("/v1/runs", json={"workflow": "echo", "input": {"payload": {}}}, headers=op)
    assert blocked.status_code == 503 and blocked.json()["error"]["code"] == "kill_switch_engaged"
    assert blocked.headers["retry-after"]
    world.c.delete("/admin/kill-switch", headers=admin)
    still = world.c.post("/v1/runs", json={"workflow": "echo", "input": {"payload": {}}}, headers=op)
    assert still.status_code == 503
    world.c.delete("/admin/kill-switch", headers={"Authorization": f"Bearer {world.second_admin}"})
    ok = world.c.post("/v1/runs", json={"workflow": "echo", "input": {"payload": {}}}, headers=op)
    assert ok.status_code == 201


def test_reviewer_cannot_approve_own_run_and_another_can(world: World) -> None:
    ctx = world.server.api.state.stalwart
    both, _ = world.server.call(ctx.keys.create(org=OWN, roles=["operator", "reviewer"], subject="dual"))
    h = {"Authorization": f"Bearer {both}"}
    run_id = world.c.post(
        "/v1/runs",
        json={"workflow": "refund", "input": {"order_id": "A-7", "cents": 30_000, "new_customer": True}},
        headers=h,
    ).json()["id"]
    review = world.wait_review(run_id)
    assert review["requester"] == "dual" and len(review["risk_factors"]) == 2 and review["risk_score"] == 100
    own = world.c.post(f"/v1/reviews/{review['id']}/decision", json={"decision": "approve"}, headers=h)
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"
    ok = world.c.post(
        f"/v1/reviews/{review['id']}/decision",
        json={"decision": "approve", "note": "fine"},
        headers=world.h(OWN, "reviewer"),
    )
    assert ok.status_code == 200 and ok.json()["status"] == "approved", ok.text
    run = world.wait_status(run_id, "COMPLETED")
    assert run["output"]["decision"] == "refunded" and run["output"]["approved_by"] == "default-reviewer"
    twice = world.c.post(
        f"/v1/reviews/{review['id']}/decision", json={"decision": "reject"}, headers=world.h(OWN, "admin")
    )
    assert twice.status_code == 409
    events = world.c.get(
        "/v1/audit/events", params={"run_id": run_id}, headers=world.h(OWN, "auditor")
    ).json()
    assert any(
        e["event_type"].startswith("review.") and e["actor"] == "user:default-reviewer" for e in events
    ), events
    other = world.c.get(
        "/v1/audit/events", params={"run_id": run_id}, headers=world.h(OTHER, "auditor")
    ).json()
    assert other == []


def test_revoked_and_expired_keys_stop_working(world: World) -> None:
    admin = world.h(OWN, "admin")
    made = world.c.post("/admin/keys", json={"roles": ["viewer"], "name": "ci"}, headers=admin).json()
    key = {"Authorization": f"Bearer {made['key']}"}
    assert world.c.get("/v1/runs", headers=key).status_code == 200
    listed = world.c.get("/admin/keys", headers=admin).json()
    assert all("hash" not in k and "key" not in k for k in listed)
    assert world.c.delete(f"/admin/keys/{made['kid']}", headers=world.h(OTHER, "admin")).status_code == 404
    assert world.c.delete(f"/admin/keys/{made['kid']}", headers=admin).status_code == 200
    assert world.c.get("/v1/runs", headers=key).status_code == 401
    short = world.c.post("/admin/keys", json={"roles": ["viewer"], "expires_in_s": 0.5}, headers=admin).json()
    time.sleep(0.6)
    assert world.c.get("/v1/runs", headers={"X-API-Key": short["key"]}).status_code == 401
