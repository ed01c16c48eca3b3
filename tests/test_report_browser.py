"""Open the rendered report in headless Chromium and check that it displays cleanly.

Debian's /usr/bin/chromium, driven by the Python `playwright` package (executable_path: no
browser download, no network). The test loads the report from a file:// URL, collects console
errors and uncaught exceptions, checks that every <img> decoded (naturalWidth > 0), that neither
the page nor a table overflows sideways at 1280 px, that the folded significance comparisons
open, and that the explorer link leads to the explorer; it saves a full-page screenshot to
results/report_screenshot.png (repo root).

CI installs the browser with `apt-get install -y chromium`; without it (or without playwright)
the tests skip, saying so.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from test_report import FIGURES, FIXTURES, SYSTEMS, eval_dir, render_fixture

from peftsum.report import explorer

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "results" / "report_screenshot.png"
WIDTH = 1280

# Every image decoded, and neither the page nor a table needs a horizontal scrollbar.
PAGE_CHECK = """async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  return {
    images: images.map((img) => ({
      alt: img.alt, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
      shownWidth: img.getBoundingClientRect().width, complete: img.complete,
    })),
    // Tables sit in scrollable boxes; at desktop width none should need to scroll.
    overflowing: Array.from(document.querySelectorAll(".scroll"))
      .filter((box) => box.scrollWidth > box.clientWidth + 1 && box.offsetParent !== null)
      .map((box) => box.querySelector("th") ? box.querySelector("tr").innerText : "?"),
    // The small setup tables share a grid row; a long value must wrap, not run under the next.
    setupOverflowing: Array.from(document.querySelectorAll(".setup section"))
      .filter((s) => s.querySelector("table") && s.querySelector("table").getBoundingClientRect().right
                     > s.getBoundingClientRect().right + 1)
      .map((s) => s.querySelector("h3").innerText),
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    height: document.documentElement.scrollHeight,
    title: document.title,
  };
}"""


@contextlib.contextmanager
def chromium_page(width: int = WIDTH):
    """A headless Chromium tab that records console errors, page errors and requested URLs."""
    if not CHROMIUM.exists():
        pytest.skip("needs Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (.[dev])")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.problems, page.requests = [], []
            page.on("console", lambda m: m.type in ("error", "assert") and page.problems.append(
                f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda error: page.problems.append(f"exception: {error}"))
            page.on("request", lambda request: page.requests.append(request.url))
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser_check(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("report_browser")
    render_fixture(out)
    explorer.build([eval_dir(n, s) for n, s in SYSTEMS], FIXTURES / "data" / "split" / "test.jsonl",
                   out / "explorer.html")
    with chromium_page() as page:
        page.goto((out / "report.html").as_uri())
        checked = page.evaluate(PAGE_CHECK)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        png = page.screenshot(path=str(SCREENSHOT), full_page=True)
        folded = page.locator("details")
        rows_before = folded.locator("tbody tr").first.is_visible()
        folded.locator("summary").click()
        rows_after = folded.locator("tbody tr").first.is_visible()
        page.locator("p a", has_text="the explorer").first.click()
        page.wait_for_selector("#rows tr")
        explorer_title, explorer_rows = page.title(), page.locator("#rows tr").count()
        problems, requests = list(page.problems), list(page.requests)
    return {"page": checked, "problems": problems, "requests": requests, "png": png,
            "folded": (rows_before, rows_after), "explorer": (explorer_title, explorer_rows)}


def test_report_loads_without_console_errors(browser_check):
    assert browser_check["problems"] == []
    assert browser_check["page"]["title"] == "Parameter-efficient fine-tuning for summarization"
    assert all(url.startswith(("file:", "data:")) for url in browser_check["requests"])


def test_every_image_decodes(browser_check):
    images = browser_check["page"]["images"]
    assert len(images) == len(FIGURES)
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image
        assert image["shownWidth"] > 0, image


def test_page_and_tables_fit_the_width(browser_check):
    page = browser_check["page"]
    assert page["scrollWidth"] <= page["clientWidth"], page
    assert page["overflowing"] == [], "tables wider than the page at 1280 px"
    assert page["setupOverflowing"] == [], "setup tables wider than their column"


def test_folded_comparisons_open_and_the_explorer_is_linked(browser_check):
    assert browser_check["folded"] == (False, True)  # hidden until the reader opens them
    title, rows = browser_check["explorer"]
    assert title == "Every test summary" and rows == 12
