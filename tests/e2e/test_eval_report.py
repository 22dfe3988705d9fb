"""The eval HTML report renders in real headless Chromium (Debian's ``/usr/bin/chromium`` driven by
Playwright): charts are drawn, nothing is fetched from the network. Screenshots go to
``test-artifacts/evals/``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stalwart.evals._cli import eval_cli

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "evals"
SUITES = Path(__file__).resolve().parents[2] / "evals" / "suites"

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="apt-get install -y chromium")


@pytest.mark.parametrize(
    ("suite", "args"),
    [("refund-golden", ["--sample", "20"]), ("refund-adversarial", ["--sample", "40"])],
)
def test_report_renders_with_charts_and_no_network(tmp_path: Path, suite: str, args: list[str]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    result = CliRunner().invoke(
        eval_cli,
        ["run", str(SUITES / suite), "--report", str(tmp_path), "--no-progress", *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto((tmp_path / "report.html").as_uri())
        doc = json.loads((tmp_path / "report.json").read_text())
        assert page.locator("#verdict").inner_text() == ("PASSED" if doc["passed"] else "FAILED")
        assert page.locator("svg rect").count() > 20  # histograms and per-tag bars are drawn
        box = page.locator("svg").first.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
        assert page.locator("table tr").count() > 5
        page.screenshot(path=str(ARTIFACTS / f"{suite}.png"), full_page=True)
        browser.close()
    assert all(u.startswith("file://") for u in requests), requests  # no CDN, no remote asset
    assert (ARTIFACTS / f"{suite}.png").stat().st_size > 10_000
