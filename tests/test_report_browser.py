"""Open the rendered report in headless Chromium and check that it displays cleanly.

Debian's /usr/bin/chromium, driven by the Python `playwright` package (executable_path: no
browser download, no network). The test loads the report from a file:// URL, collects console
errors and uncaught exceptions, checks that every <img> decoded (naturalWidth > 0), that neither
the page nor a table overflows sideways at 1280 px, that the folded significance comparisons
open, and that the explorer link leads to the explorer, whose last column shows or scrolls into
view in the table's own box; it saves a full-page screenshot to results/report_screenshot.png
(repo root). The runs record every setting of their kind and one article and one summary hold an
unbroken URL, as real ones do: the widest tables a report meets.

CI installs the browser with `apt-get install -y chromium`; without it (or without playwright)
the tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import pytest
from test_report import FIGURES, FIXTURES, RUNS, SYSTEMS, eval_dir, render_fixture, run_json

from peftsum.report import explorer

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "results" / "report_screenshot.png"
WIDTH = 1280
HEIGHT = 800

# Every setting each kind records, and the training settings, as a real run.json holds them.
SETTINGS = {
    "lora": {"kind": "lora", "lr": 0.001, "r": 8, "alpha": 32, "dropout": 0.05,
             "target_modules": None, "use_dora": False, "use_rslora": False, "init": "default"},
    "prompt_tuning": {"kind": "prompt_tuning", "lr": 0.03, "n_tokens": 20, "init": "text",
                      "init_text": "Summarize the following article:", "vocab_top": 5000,
                      "init_range": 0.5},
    "last_layers": {"kind": "last_layers", "lr": 0.0005, "n_blocks": 2, "final_norm": True},
}
TRAINING = {"epochs": 1, "max_steps": None, "batch_size": 4, "grad_accum": 1,
            "warmup_ratio": 0.06, "weight_decay": 0.0, "max_grad_norm": 1.0, "eval_every": 1000,
            "eval_samples": 25, "patience": 2, "log_every": 4, "cpu_bf16": "auto",
            "checkpoint_every": 50, "compile": False, "attention": "auto", "world_size": 1}
# Abstracts link their code; a model copies the link into its summary.
URL = " Code: https://github.com/an-organisation/parameter-efficient-summarization-experiments"

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
    innerWidth: innerWidth,
    height: document.documentElement.scrollHeight,
    title: document.title,
  };
}"""


# Whether a table's last header cell shows, else whether the nearest box that scrolls sideways
# reaches it with its scrollbar in the window (as the page first opens).
LAST_COLUMN = """(table) => {
  const last = table.querySelector("thead th:last-child").getBoundingClientRect();
  let box = table.parentElement;
  while (box !== document.body && !["auto", "scroll"].includes(getComputedStyle(box).overflowX)) {
    box = box.parentElement;
  }
  const frame = box.getBoundingClientRect();
  const scroll = box === document.body ? 0 : box.scrollWidth - box.clientWidth;
  return {
    shown: last.right <= Math.min(frame.right, innerWidth) + 1,
    reachable: last.right - scroll <= Math.min(frame.right, innerWidth) + 1
               && frame.bottom <= innerHeight + 1,
    pageWidth: document.documentElement.scrollWidth, innerWidth: innerWidth,
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
            page = browser.new_page(viewport={"width": width, "height": HEIGHT})
            page.problems, page.requests = [], []
            page.on("console", lambda m: m.type in ("error", "assert") and page.problems.append(
                f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda error: page.problems.append(f"exception: {error}"))
            page.on("request", lambda request: page.requests.append(request.url))
            yield page
        finally:
            browser.close()


def runs_with_every_setting(train: Path) -> Path:
    """The fixture's run.json files, each with every setting of its kind."""
    for name, seed in RUNS:
        record = json.loads(run_json(name, seed).read_text())
        record["hparams"] = {**SETTINGS[name], **TRAINING, "seed": seed}
        run_json(name, seed, train).parent.mkdir(parents=True)
        run_json(name, seed, train).write_text(json.dumps(record))
    return train


def explorer_with_a_url(folder: Path, out_html: Path) -> None:
    """The explorer on the fixture with URL in the first article and lead3's first summary."""
    articles = [json.loads(line) for line in
                (FIXTURES / "data" / "split" / "test.jsonl").read_text().splitlines()]
    articles[0]["article"] += URL
    (folder / "test.jsonl").write_text("".join(json.dumps(a) + "\n" for a in articles))
    lead3 = shutil.copytree(eval_dir("lead3"), folder / "lead3")
    outputs = [json.loads(line) for line in (lead3 / "predictions.jsonl").read_text().splitlines()]
    outputs[0]["prediction"] += URL
    (lead3 / "predictions.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outputs))
    eval_dirs = [lead3 if name == "lead3" else eval_dir(name, seed) for name, seed in SYSTEMS]
    explorer.build(eval_dirs, folder / "test.jsonl", out_html)


@pytest.fixture(scope="module")
def browser_check(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("report_browser")
    render_fixture(out, runs_with_every_setting(tmp_path_factory.mktemp("train")))
    explorer_with_a_url(tmp_path_factory.mktemp("explorer_data"), out / "explorer.html")
    with chromium_page() as page:
        page.goto((out / "report.html").as_uri())
        checked = page.evaluate(PAGE_CHECK)
        hyperparameters = page.locator("section:has(> h3:text-is('Hyperparameters')) table")
        hyperparameters_column = hyperparameters.evaluate(LAST_COLUMN)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        png = page.screenshot(path=str(SCREENSHOT), full_page=True)
        folded = page.locator("details")
        rows_before = folded.locator("tbody tr").first.is_visible()
        folded.locator("summary").click()
        rows_after = folded.locator("tbody tr").first.is_visible()
        page.locator("p a", has_text="the explorer").first.click()
        page.wait_for_selector("#rows tr")
        explorer_title, explorer_rows = page.title(), page.locator("#rows tr").count()
        first_row = page.locator("#rows tr").first.locator("td").all_inner_texts()
        page.check("#texts")  # summaries in the cells: the widest the table gets
        explorer_column = page.locator("#articles").evaluate(LAST_COLUMN)
        problems, requests = list(page.problems), list(page.requests)
    return {"page": checked, "problems": problems, "requests": requests, "png": png,
            "folded": (rows_before, rows_after), "explorer": (explorer_title, explorer_rows),
            "first_row": first_row,
            "hyperparameters_column": hyperparameters_column, "explorer_column": explorer_column}


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
    assert page["scrollWidth"] <= min(page["clientWidth"], page["innerWidth"]), page
    assert page["overflowing"] == [], "tables wider than the page at 1280 px"
    assert page["setupOverflowing"] == [], "setup tables wider than their column"


def test_folded_comparisons_open_and_the_explorer_is_linked(browser_check):
    assert browser_check["folded"] == (False, True)  # hidden until the reader opens them
    title, rows = browser_check["explorer"]
    assert title == "Every test summary" and rows == 12


def test_the_explorer_shows_rouge_with_one_decimal(browser_check):
    # The page opens on ROUGE-L: each system's cell starts with its per-article score, as 12.3.
    scores = browser_check["first_row"][-len(SYSTEMS):]
    assert all(re.match(r"(\d+\.\d|—)(\s|$)", score) for score in scores), scores


def test_every_hyperparameter_column_shows(browser_check):
    column = browser_check["hyperparameters_column"]
    assert column["shown"], column


def test_the_explorer_scrolls_in_its_own_box_to_its_last_column(browser_check):
    column = browser_check["explorer_column"]
    assert column["pageWidth"] <= column["innerWidth"], column
    assert column["shown"] or column["reachable"], column
