"""Org isolation, proved from the outside: a real server, two orgs' keys made by the platform admin.

Org B (``globex``) owns a completed run, a run waiting for review, a dead-lettered run, a budget cap,
audit entries and a data subject. A key of org A (``acme``) holding EVERY role probes each of them on
every endpoint: addressed resources read as 404 (never 403: an id of another org reveals nothing),
listings do not show them, org-level writes naming B are refused and change nothing. B's own key
reads the same resources (200), so each 404 is isolation, not a wrong id.

The routes come from the app's OpenAPI document: a new endpoint without a case here fails
``test_every_endpoint_has_an_isolation_case``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import stalwart as sw
from stalwart.api import ApiSettings
from stalwart.errors import InvalidInput
from tests.e2e.apps import build_app
from tests.e2e.server import ADMIN_KEY, ServerThread

A, B = "acme", "globex"
ALL_ROLES = ["viewer", "operator", "reviewer", "admin", "auditor"]
ADMIN_ENV = "STALWART_TEST_ISOLATION_ADMIN_KEY"


def _app(db: str) -> sw.App:
    app = build_app(db)

    def explode() -> None:
        raise InvalidInput("the order service refused the request")

    @app.workflow(name="doomed")
    async def doomed(ctx: sw.Context, payload: dict) -> dict:
        await ctx.step("explode", explode)
        return {}

    return app


class World:
    """Both orgs' keys (made over HTTP by the bootstrap key) and org B's resources."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.c = httpx.Client(base_url=server.url, timeout=30)
        self.platform = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.keys: dict[str, dict[str, Any]] = {}
        for org in (A, B):
            made = self.c.post(
                "/admin/keys",
                json={"org": org, "roles": ALL_ROLES, "subject": f"user-of-{org[0]}", "name": f"{org} all roles"},
                headers=self.platform,
            )
            assert made.status_code == 201 and made.json()["org"] == org, made.text
            self.keys[org] = made.json()
        b = self.h(B)
        self.b_run = self.start(B, "echo", {"payload": {"secret": "globex-only"}})
        self.b_refund = self.start(B, "refund", {"order_id": "G-1", "cents": 50_000})
        self.b_dead = self.start(B, "doomed", {"payload": {}})
        self.b_review = self.wait(
            lambda: next((r for r in self.get(B, "/v1/reviews")["reviews"] if r["run_id"] == self.b_refund), None),
            "org B's review",
        )["id"]
        self.wait(lambda: self.get(B, f"/v1/runs/{self.b_run}")["status"] == "COMPLETED", "B's echo run")
        self.wait(lambda: self.get(B, f"/v1/runs/{self.b_dead}")["status"] == "DEAD_LETTER", "B's dead letter")
        assert self.c.put("/admin/budget", json={"max_usd": 42.0}, headers=b).status_code == 200
        self.b_subject = "user-of-g"
        # Org A has resources of its own, so its listings are not trivially empty.
        self.a_run = self.start(A, "echo", {"payload": {"mine": True}})

    def h(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[org]['key']}"}

    def get(self, org: str, path: str, **kw: Any) -> Any:
        r = self.c.get(path, headers=self.h(org), **kw)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    def start(self, org: str, workflow: str, payload: dict[str, Any]) -> str:
        r = self.c.post("/v1/runs", json={"workflow": workflow, "input": payload}, headers=self.h(org))
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    @staticmethod
    def wait(fn: Callable[[], Any], what: str) -> Any:
        for _ in range(600):
            value = fn()
            if value:
                return value
            time.sleep(0.025)
        raise AssertionError(f"timed out waiting for {what}")

    def b_ids(self) -> list[str]:
        return [self.b_run, self.b_refund, self.b_dead, self.b_review, self.keys[B]["kid"]]

    def as_a(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.c.request(method, path, headers=self.h(A), **kw)
        assert "Traceback" not in r.text
        return r

    def hidden(self, r: httpx.Response) -> None:
        """A 404 that says nothing of org B."""
        assert r.status_code == 404, (r.request.method, r.request.url, r.status_code, r.text)
        assert B not in r.text

    def unseen(self, r: httpx.Response) -> None:
        """A listing of org A that shows nothing of org B."""
        assert r.status_code == 200, (r.request.url, r.text)
        for ident in [*self.b_ids(), B, "globex-only"]:
            assert ident not in r.text, (r.request.url, ident)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db = tmp_path_factory.mktemp("isolation") / "s.db"
    os.environ[ADMIN_ENV] = ADMIN_KEY
    try:
        settings = ApiSettings(admin_key_env=ADMIN_ENV, print_bootstrap_key=False)
        with ServerThread(_app(f"sqlite:///{db}"), settings) as server:
            w = World(server)
            yield w
            w.c.close()
    finally:
        os.environ.pop(ADMIN_ENV, None)


# -- one case per endpoint ---------------------------------------------------------------------
def _start_run(w: World) -> None:
    r = w.as_a("POST", "/v1/runs", json={"workflow": "echo", "input": {"payload": {}}})
    assert r.status_code == 201 and r.json()["org"] == A


def _list_runs(w: World) -> None:
    w.unseen(w.as_a("GET", "/v1/runs", params={"limit": 1000}))
    assert w.a_run in w.as_a("GET", "/v1/runs").text
    assert w.b_run in w.c.get("/v1/runs", headers=w.h(B)).text  # the control: B sees its own


def _get_run(w: World) -> None:
    for run_id in (w.b_run, w.b_refund, w.b_dead):
        w.hidden(w.as_a("GET", f"/v1/runs/{run_id}"))
        w.get(B, f"/v1/runs/{run_id}")


def _trace(w: World) -> None:
    w.hidden(w.as_a("GET", f"/v1/runs/{w.b_run}/trace"))
    w.get(B, f"/v1/runs/{w.b_run}/trace")


def _events(w: World) -> None:
    w.hidden(w.as_a("GET", f"/v1/runs/{w.b_run}/events"))
    w.hidden(w.c.get(f"/v1/runs/{w.b_run}/events", headers={**w.h(A), "Last-Event-ID": "0"}))
    own = w.c.get(f"/v1/runs/{w.b_run}/events", headers=w.h(B))  # the control: B's run has ended, the stream too
    assert own.status_code == 200 and "event: end" in own.text, own.text


def _cancel(w: World) -> None:
    w.hidden(w.as_a("POST", f"/v1/runs/{w.b_refund}/cancel"))
    assert w.get(B, f"/v1/runs/{w.b_refund}")["status"] == "WAITING"


def _list_dlq(w: World) -> None:
    w.unseen(w.as_a("GET", "/v1/dlq"))
    assert w.b_dead in w.c.get("/v1/dlq", headers=w.h(B)).text


def _retry_dlq(w: World) -> None:
    w.hidden(w.as_a("POST", f"/v1/dlq/{w.b_dead}/retry"))
    assert w.get(B, f"/v1/runs/{w.b_dead}")["status"] == "DEAD_LETTER"


def _list_reviews(w: World) -> None:
    w.unseen(w.as_a("GET", "/v1/reviews"))
    w.unseen(w.as_a("GET", "/v1/reviews", params={"status": "pending"}))


def _get_review(w: World) -> None:
    w.hidden(w.as_a("GET", f"/v1/reviews/{w.b_review}"))
    w.get(B, f"/v1/reviews/{w.b_review}")


def _decide_review(w: World) -> None:
    for decision in ("approve", "reject"):
        w.hidden(w.as_a("POST", f"/v1/reviews/{w.b_review}/decision", json={"decision": decision}))
    assert w.get(B, f"/v1/reviews/{w.b_review}")["status"] == "pending"


def _kill_status(w: World) -> None:
    # The switch is platform-wide: its state is the same for every org and names no org's resources.
    w.unseen(w.as_a("GET", "/admin/kill-switch"))


def _kill_engage(w: World) -> None:
    r = w.as_a("POST", "/admin/kill-switch", json={"reason": "acme tries"})
    assert r.status_code == 403
    assert w.c.get("/admin/kill-switch", headers=w.platform).json()["engaged"] is False


def _kill_release(w: World) -> None:
    assert w.as_a("DELETE", "/admin/kill-switch").status_code == 403


def _audit_verify(w: World) -> None:
    w.unseen(w.as_a("GET", "/v1/audit/verify"))


def _audit_events(w: World) -> None:
    w.unseen(w.as_a("GET", "/v1/audit/events", params={"limit": 1000}))
    for run_id in (w.b_run, w.b_refund, w.b_dead):
        r = w.as_a("GET", "/v1/audit/events", params={"run_id": run_id})
        assert r.status_code == 200 and r.json() == [], r.text
    mine = w.get(B, "/v1/audit/events", params={"limit": 1000})
    assert any(e["event_type"] == "budget.set" for e in mine)  # the control: B's entries exist


def _export_subject(w: World) -> None:
    w.hidden(w.as_a("GET", f"/v1/compliance/subjects/{w.b_subject}/export"))
    w.hidden(w.as_a("GET", "/v1/compliance/subjects/nobody-at-all/export"))  # indistinguishable
    assert {r["id"] for r in w.get(B, f"/v1/compliance/subjects/{w.b_subject}/export")["runs"]} >= {w.b_run}


def _erase_subject(w: World) -> None:
    w.hidden(w.as_a("DELETE", f"/v1/compliance/subjects/{w.b_subject}"))
    w.hidden(w.as_a("DELETE", "/v1/compliance/subjects/nobody-at-all"))
    assert w.get(B, f"/v1/runs/{w.b_run}")["input"] == {"payload": {"secret": "globex-only"}}


def _chat(w: World) -> None:
    # The gateway answers the caller and charges the caller's org; it addresses no stored resource.
    r = w.as_a("POST", "/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and B not in r.text


def _mcp(w: World) -> None:
    # The workflows as MCP tools: a call starts a run in the key's org, whatever the request says;
    # the tools expose no stored resource of any org (listing them shows workflow names only).
    import json

    rpc = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    rpc.update(w.h(A))
    listed = w.c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=rpc)
    assert listed.status_code == 200 and B not in listed.text and "globex-only" not in listed.text, listed.text
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"payload": {"org": B}}}}
    r = w.c.post("/mcp", json=call, headers=rpc)
    assert r.status_code == 200, r.text
    run_id = json.loads(r.json()["result"]["content"][0]["text"])["run_id"]
    assert w.get(A, f"/v1/runs/{run_id}")["org"] == A
    w.hidden(w.c.get(f"/v1/runs/{run_id}", headers=w.h(B)))


def _get_budget(w: World) -> None:
    r = w.as_a("GET", "/v1/budget")
    assert r.status_code == 200 and r.json()["org"] == A and r.json()["max_usd"] is None
    assert w.get(B, "/v1/budget")["max_usd"] == 42.0


def _set_budget(w: World) -> None:
    r = w.as_a("PUT", "/admin/budget", json={"max_usd": 1.0, "org": B})
    assert r.status_code == 403, r.text
    assert w.get(B, "/v1/budget")["max_usd"] == 42.0
    own = w.as_a("PUT", "/admin/budget", json={"max_usd": 5.0})
    assert own.status_code == 200 and own.json()["org"] == A


def _alerts(w: World) -> None:
    w.unseen(w.as_a("GET", "/v1/alerts"))


def _list_keys(w: World) -> None:
    r = w.as_a("GET", "/admin/keys")
    w.unseen(r)
    assert {k["org"] for k in r.json()} == {A}
    assert w.as_a("GET", "/admin/keys", params={"org": B}).status_code == 403
    everyone = w.c.get("/admin/keys", headers=w.platform).json()  # the platform admin sees every org
    assert {A, B} <= {k["org"] for k in everyone}
    only_b = w.c.get("/admin/keys", params={"org": B}, headers=w.platform).json()
    assert {k["org"] for k in only_b} == {B}


def _create_key(w: World) -> None:
    r = w.as_a("POST", "/admin/keys", json={"org": B, "roles": ["admin"]})
    assert r.status_code == 403, r.text
    assert all(k["created_by"] != "user-of-a" for k in w.c.get("/admin/keys", params={"org": B}, headers=w.platform).json())
    own = w.as_a("POST", "/admin/keys", json={"roles": ["viewer"]})
    assert own.status_code == 201 and own.json()["org"] == A


def _revoke_key(w: World) -> None:
    w.hidden(w.as_a("DELETE", f"/admin/keys/{w.keys[B]['kid']}"))
    w.get(B, "/v1/runs")  # B's key still works


def _unscoped(reason: str) -> Callable[[World], None]:
    def case(w: World) -> None:
        """Serves no org's resources: {reason}."""

    case.__doc__ = reason
    return case


CASES: dict[str, Callable[[World], None]] = {
    "POST /v1/runs": _start_run,
    "GET /v1/runs": _list_runs,
    "GET /v1/runs/{run_id}": _get_run,
    "GET /v1/runs/{run_id}/trace": _trace,
    "GET /v1/runs/{run_id}/events": _events,
    "POST /v1/runs/{run_id}/cancel": _cancel,
    "GET /v1/dlq": _list_dlq,
    "POST /v1/dlq/{run_id}/retry": _retry_dlq,
    "GET /v1/reviews": _list_reviews,
    "GET /v1/reviews/{review_id}": _get_review,
    "POST /v1/reviews/{review_id}/decision": _decide_review,
    "GET /admin/kill-switch": _kill_status,
    "POST /admin/kill-switch": _kill_engage,
    "DELETE /admin/kill-switch": _kill_release,
    "GET /v1/audit/verify": _audit_verify,
    "GET /v1/audit/events": _audit_events,
    "GET /v1/compliance/subjects/{subject_id}/export": _export_subject,
    "DELETE /v1/compliance/subjects/{subject_id}": _erase_subject,
    "POST /v1/chat/completions": _chat,
    "POST /mcp": _mcp,
    "GET /v1/budget": _get_budget,
    "PUT /admin/budget": _set_budget,
    "GET /v1/alerts": _alerts,
    "GET /admin/keys": _list_keys,
    "POST /admin/keys": _create_key,
    "DELETE /admin/keys/{kid}": _revoke_key,
    "GET /healthz": _unscoped("liveness, no authentication"),
    "GET /readyz": _unscoped("readiness of the database and sandbox, no authentication"),
    "GET /metrics": _unscoped("process-wide Prometheus counters, no ids"),
    "POST /v1/triggers/{name}": _unscoped("HMAC-signed webhooks start runs of the trigger's own org; no API key"),
}


def _routes(w: World) -> set[str]:
    paths = w.c.get("/openapi.json").json()["paths"]
    return {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops if m in ("get", "post", "put", "delete", "patch")}


def test_every_endpoint_has_an_isolation_case(world: World) -> None:
    missing = sorted(_routes(world) - set(CASES))
    assert not missing, f"endpoints without an org-isolation case in {__name__}: {missing}"


@pytest.mark.parametrize("route", sorted(CASES))
def test_org_a_cannot_reach_org_b(world: World, route: str) -> None:
    if route not in _routes(world):
        pytest.skip(f"{route} is not served by this build")
    CASES[route](world)


def test_console_of_org_a_shows_nothing_of_org_b(world: World) -> None:
    with httpx.Client(base_url=world.server.url, follow_redirects=False) as c:
        signed = c.post("/console/login", data={"api_key": world.keys[A]["key"]})
        assert signed.status_code == 303
        for path in ("/console/runs", "/console/reviews?show=all", "/console/dlq", "/console/budget",
                     "/console/runs?org=globex", "/console/dlq?org=globex"):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            for ident in (world.b_run, world.b_refund, world.b_dead, world.b_review, "globex-only"):
                assert ident not in r.text, (path, ident)
        assert c.get(f"/console/runs/{world.b_run}").status_code == 404
