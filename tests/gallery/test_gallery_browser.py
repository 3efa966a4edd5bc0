"""Headless Debian Chromium (driven by Playwright) against the gallery served by uvicorn on loopback.

The browser comes from include/scripts/ensure_browser.sh (``make test`` runs it first; this test runs
it too when /usr/bin/chromium is missing). The test skips, saying why, only when that install fails.
Saves the run page as artifacts/gallery.png (docs/gallery.png is a copy of it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from gallery_helpers import DEMO, REJECT_REASON, VEO3
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
P = "/fal-gallery"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        script = ROOT / "include" / "scripts" / "ensure_browser.sh"
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
        if not CHROMIUM.exists():
            pytest.skip(
                f"Chromium is not installed and {script.relative_to(ROOT)} could not install it "
                f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()[-500:]}"
            )
    return CHROMIUM


@pytest.fixture
def page(chromium, gallery_server):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
        assert not errors, errors


def test_gallery_in_chromium(page, gallery_server):
    # the run list loads; open the demo run from it
    page.goto(f"{gallery_server.url}{P}/")
    assert page.locator("#runs tr.run").count() == 4
    assert page.locator("tr.run.incomplete").count() == 2
    page.click(f"a[href='{P}/runs/{DEMO}']")
    page.wait_for_url(f"**{P}/runs/{DEMO}")

    # one <video> per succeeded row
    succeeded = page.locator("article[data-status=succeeded]").count()
    assert succeeded == 3 and page.locator("video").count() == succeeded

    # the first video plays: a duration, and time moves on
    page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('video').currentTime > 0.3")
    state = page.evaluate(
        "() => { const v = document.querySelector('video');"
        " return {duration: v.duration, time: v.currentTime, error: v.error && v.error.code}; }"
    )
    assert state["error"] is None and state["duration"] > 1.5 and state["time"] > 0.3, state
    page.evaluate("() => document.querySelector('video').pause()")

    # the rejected row shows its reason
    reason = page.locator("article[data-status=rejected] .reason")
    assert reason.is_visible() and REJECT_REASON in reason.inner_text()

    ROOT.joinpath("artifacts").mkdir(exist_ok=True)
    page.wait_for_load_state("networkidle")  # posters loaded
    page.screenshot(path=str(ROOT / "artifacts" / "gallery.png"), full_page=True)

    # a filter works (served page by page: the form reloads with ?status=...)
    page.select_option("#filter-status", "rejected")
    page.wait_for_url("**status=rejected**")
    assert page.locator("article").count() == 1
    assert page.locator("article").first.get_attribute("data-status") == "rejected"
    assert "matching the filters" in page.inner_text("#shown")

    page.select_option("#filter-status", "")
    page.wait_for_url(lambda url: "status=rejected" not in url)
    page.select_option("#filter-endpoint", VEO3)
    page.wait_for_url("**model=fal-ai%2Fveo3")
    statuses = [a.get_attribute("data-status") for a in page.locator("article").all()]
    assert statuses == ["failed", "succeeded"] and page.locator("video").count() == 1


def test_half_written_run_in_chromium(page, gallery_server):
    page.goto(f"{gallery_server.url}{P}/runs/half")
    assert "Incomplete run" in page.inner_text("#notice")
    assert page.locator("article").count() == 2


def test_static_index_html_plays_and_filters_in_chromium(page, archive):
    """The index.html written into the run folder uses the same template: it filters in the page."""
    page.goto((archive.root / "runs" / DEMO / "index.html").as_uri())
    assert page.locator("video").count() == 3
    page.select_option("#filter-status", "rejected")
    assert page.locator("article:visible").count() == 1
    assert REJECT_REASON in page.locator("article:visible .reason").inner_text()
    assert page.inner_text("#shown") == "1 of 5 shown"
    page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('video').currentTime > 0.3")
