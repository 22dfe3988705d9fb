"""A newcomer's first minutes, in real headless Chromium: ``stalwart demo``, then ``stalwart server``,
then the console signed in with the bootstrap key (``$STALWART_ADMIN_KEY``).

The bootstrap key belongs to the platform org, the demo's runs to its customer orgs; the console
must show the platform admin every org ("all orgs" by default): the demo's runs, reviews, dead
letters and a budget card per org, with an org selector that narrows the view. Screenshots go to
``test-artifacts/console-demo/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ADMIN_KEY
from tests.e2e.test_console import ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console-demo"

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="apt-get install -y chromium")


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STALWART_ADMIN_KEY": ADMIN_KEY,
           "STALWART_NATS_URL": "nats://127.0.0.1:1"}  # the demo's events stay in its own outbox
    for name in ("STALWART_DB", "STALWART_APP", "STALWART_CONFIG"):
        env.pop(name, None)
    return env


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stalwart.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    folder = tmp_path_factory.mktemp("newcomer")
    db = f"sqlite:///{folder}/stalwart.db"
    ran = _cli("--db", db, "demo", "--model", "local", cwd=folder)  # the scripted model: same runs every time
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    runs = json.loads(_cli("--db", db, "run", "list", "--limit", "1000", "--json", cwd=folder).stdout)
    dead = json.loads(_cli("--db", db, "dlq", "list", "--json", cwd=folder).stdout)
    reviews = json.loads(_cli("--db", db, "review", "list", "--status", "all", "--json", cwd=folder).stdout)
    assert runs, "the demo left no runs"
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "stalwart.cli", "--db", db, "server", "--port", str(port), "--log-level", "warning"],
        cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise AssertionError(f"stalwart server exited: {server.stdout.read() if server.stdout else ''}")
            time.sleep(0.1)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                yield {"url": url, "browser": browser, "runs": runs, "dead": dead, "reviews": reviews}
            finally:
                browser.close()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def _signed_in(demo: dict[str, Any]) -> Any:
    page = demo["browser"].new_context(viewport={"width": 1366, "height": 900}, base_url=demo["url"]).new_page()
    page.goto("/console/login")
    page.fill("#api_key", ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/console/login" not in page.url, page.content()[:500]
    return page


def test_the_bootstrap_admin_sees_every_demo_org_at_once(demo: dict[str, Any]) -> None:
    page = _signed_in(demo)
    page.goto("/console/runs")
    assert page.locator("#org-select select").input_value() == "*"  # "All orgs" by default
    table = page.locator("table.grid tbody").inner_text()
    assert "No runs match" not in table
    orgs = sorted({r["org"] for r in demo["runs"]})
    for run in demo["runs"]:
        assert run["id"][:12] in table, (run["id"], run["org"])
    options = page.locator("#org-select option").all_inner_texts()
    assert "All orgs" in options and set(orgs) <= set(options), options
    for org in orgs:
        assert page.locator("table.grid tbody td .tag", has_text=org).count() >= 1
    page.screenshot(path=str(ARTIFACTS / "01-runs-all-orgs.png"), full_page=True)

    # Narrow to one org with the selector: only that org's runs remain.
    first = orgs[0]
    page.select_option("#org-select select", first)
    page.click("#org-select button")
    page.wait_for_load_state()
    assert f"org={first}" in page.url
    shown = page.locator("table.grid tbody").inner_text()
    for run in demo["runs"]:
        assert (run["id"][:12] in shown) == (run["org"] == first), run["id"]
    page.screenshot(path=str(ARTIFACTS / "02-runs-one-org.png"), full_page=True)

    # A run of a customer org opens for the platform admin.
    run = demo["runs"][0]
    page.goto(f"/console/runs/{run['id']}")
    assert run["status"] in page.locator("h1").inner_text()
    page.screenshot(path=str(ARTIFACTS / "03-run-detail.png"), full_page=True)
    page.context.close()


def test_reviews_dead_letters_and_budgets_of_the_demo_are_there(demo: dict[str, Any]) -> None:
    page = _signed_in(demo)
    page.goto("/console/reviews?show=all")
    text = page.locator("main").inner_text()
    for review in demo["reviews"]:
        assert review["run_id"][:12] in text, review
    page.screenshot(path=str(ARTIFACTS / "04-reviews.png"), full_page=True)

    page.goto("/console/dlq")
    text = page.locator("table.grid tbody").inner_text()
    assert demo["dead"], "the demo dead-letters a run (ticket 3)"
    for d in demo["dead"]:
        assert d["run_id"][:12] in text, d
    page.screenshot(path=str(ARTIFACTS / "05-dead-letters.png"), full_page=True)

    page.goto("/console/budget")
    cards = page.locator("section.org-budget")
    shown = {cards.nth(i).get_attribute("data-org") for i in range(cards.count())}
    assert {r["org"] for r in demo["runs"]} <= shown, shown
    assert page.locator("section.org-budget .meter").count() >= 2 * len(shown)
    page.screenshot(path=str(ARTIFACTS / "06-budgets.png"), full_page=True)
    page.context.close()
