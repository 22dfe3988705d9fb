"""The console in real headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright).

Flows: a reviewer signs in, opens a pending refund, sees its risk factors and approves it, and the
run completes; an admin engages the kill switch and a second admin releases it. Screenshots go to
``test-artifacts/console/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.apps import build_app
from tests.e2e.server import ServerThread

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="apt-get install -y chromium")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    db = tmp_path_factory.mktemp("console") / "s.db"
    with ServerThread(build_app(f"sqlite:///{db}")) as server:
        ctx = server.api.state.stalwart
        keys = {}
        for name, roles in (
            ("operator", ["operator"]),
            ("reviewer", ["reviewer"]),
            ("admin", ["admin"]),
            ("admin2", ["admin"]),
        ):
            keys[name], _ = server.call(
                ctx.keys.create(org="default", roles=roles, subject=f"{name}@example.com")
            )
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                yield {"server": server, "keys": keys, "browser": browser}
            finally:
                browser.close()


def _page(env: dict[str, Any]) -> Any:
    context = env["browser"].new_context(viewport={"width": 1280, "height": 900}, base_url=env["server"].url)
    return context.new_page()


def _sign_in(page: Any, key: str) -> None:
    page.goto("/console/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/console/login" not in page.url, page.content()[:500]


def _api(env: dict[str, Any], who: str) -> httpx.Client:
    return httpx.Client(base_url=env["server"].url, headers={"Authorization": f"Bearer {env['keys'][who]}"})


def _wait(fn: Any, what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_reviewer_approves_a_pending_refund_and_the_run_completes(env: dict[str, Any]) -> None:
    with _api(env, "operator") as api:
        run_id = api.post(
            "/v1/runs",
            json={
                "workflow": "refund",
                "input": {"order_id": "A-1042", "cents": 25_000, "new_customer": True},
            },
        ).json()["id"]
        _wait(
            lambda: api.get(f"/v1/runs/{run_id}").json()["status"] == "WAITING", "the run to wait for review"
        )
        api.post("/v1/runs", json={"workflow": "echo", "input": {"hello": "world"}})
    page = _page(env)
    _sign_in(page, env["keys"]["reviewer"])
    page.goto("/console/reviews")
    card = page.locator("article.review", has_text=run_id[:12])
    card.wait_for()
    text = card.inner_text()
    assert "issue_refund" in text and "A-1042" in text
    assert "amount over the 100.00 USD auto-approve limit" in text
    assert "customer account younger than 30 days" in text
    assert "100/100" in text and "left" in text  # the risk score and the SLA timer
    page.screenshot(path=str(ARTIFACTS / "01-review-queue.png"), full_page=True)
    card.locator("input[name=note]").fill("Order verified with the customer")
    card.locator("button[value=approve]").click()
    page.wait_for_load_state()
    assert "is now approved" in page.locator(".flash.ok").inner_text()
    with _api(env, "admin") as api:
        run = _wait(
            lambda: (r := api.get(f"/v1/runs/{run_id}").json())["status"] == "COMPLETED" and r,
            "the approved run to complete",
        )
    assert run["output"]["decision"] == "refunded" and run["output"]["approved_by"] == "reviewer@example.com"
    page.goto(f"/console/runs/{run_id}")
    assert "COMPLETED" in page.locator("h1").inner_text()
    assert page.locator(".wf-row").count() >= 4  # run + assess + request_review + the review wait
    assert page.locator("text=Journal").count() == 1
    page.screenshot(path=str(ARTIFACTS / "02-run-detail.png"), full_page=True)
    page.goto("/console/runs")
    assert page.locator("table.grid tbody tr").count() >= 2
    page.select_option("select[name=status]", "COMPLETED")
    page.click(".filters button")
    page.wait_for_load_state()
    assert all(
        "COMPLETED" in t for t in page.locator("table.grid tbody tr td:nth-child(3)").all_inner_texts()
    )
    page.screenshot(path=str(ARTIFACTS / "03-runs.png"), full_page=True)
    page.context.close()


def test_admin_engages_the_kill_switch_and_a_second_admin_releases_it(env: dict[str, Any]) -> None:
    first = _page(env)
    _sign_in(first, env["keys"]["admin"])
    first.goto("/console/kill-switch")
    assert first.locator("#ks-state").inner_text() == "Not engaged"
    first.fill("input[name=reason]", "refunds paid twice in production")
    first.click("button.danger")
    first.wait_for_load_state()
    assert first.locator("#ks-state").inner_text() == "ENGAGED"
    with _api(env, "operator") as api:
        blocked = api.post("/v1/runs", json={"workflow": "echo", "input": {}})
        assert blocked.status_code == 503
    first.screenshot(path=str(ARTIFACTS / "04-kill-engaged.png"), full_page=True)
    first.click("text=Request release")
    first.wait_for_load_state()
    assert "second, different admin" in first.locator("#ks-pending").inner_text()
    first.click("text=Confirm release (second admin)")  # the same admin cannot confirm
    first.wait_for_load_state()
    assert "second, different operator" in first.locator(".flash.err").inner_text()
    assert first.locator("#ks-state").inner_text() == "ENGAGED"
    first.screenshot(path=str(ARTIFACTS / "05-kill-pending.png"), full_page=True)
    first.context.close()

    second = _page(env)
    _sign_in(second, env["keys"]["admin2"])
    second.goto("/console/kill-switch")
    second.click("text=Confirm release (second admin)")
    second.wait_for_load_state()
    assert second.locator("#ks-state").inner_text() == "Not engaged"
    assert "released by two admins" in second.locator(".flash.ok").inner_text()
    second.screenshot(path=str(ARTIFACTS / "06-kill-released.png"), full_page=True)
    with _api(env, "operator") as api:
        assert api.post("/v1/runs", json={"workflow": "echo", "input": {}}).status_code == 201
    # The other console pages render for a person too.
    with _api(env, "admin") as api:
        api.put("/admin/budget", json={"max_usd": 10.0, "max_tokens": 100_000})
    for path, shot in (
        ("/console/budget", "07-budget.png"),
        ("/console/alerts", "08-alerts.png"),
        ("/console/dlq", "09-dlq.png"),
    ):
        second.goto(path)
        assert second.locator("h1").count() == 1
        second.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    second.context.close()


def test_console_refuses_bad_keys_and_forged_forms(env: dict[str, Any]) -> None:
    page = _page(env)
    page.goto("/console/runs")
    assert page.url.endswith("/console/login")
    page.fill("#api_key", "sw_notakey00000_nope")
    page.click("button[type=submit]")
    assert "not valid" in page.locator(".flash.err").inner_text()
    _sign_in(page, env["keys"]["reviewer"])
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert cookies.get("stalwart_session")
    session_cookie = next(c for c in page.context.cookies() if c["name"] == "stalwart_session")
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
    with httpx.Client(base_url=env["server"].url, cookies=cookies, follow_redirects=False) as c:
        forged = c.post("/console/kill-switch/engage", data={"csrf": "wrong", "reason": "x"})
        assert forged.status_code == 303 and "error=" in forged.headers["location"]
    with _api(env, "admin") as api:
        assert api.get("/admin/kill-switch").json()["engaged"] is False
    page.context.close()
