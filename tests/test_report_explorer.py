"""The explorer (results/report/explorer.html): its data, and the page in headless Chromium.

The browser tests drive Debian's /usr/bin/chromium through the Python `playwright` package
(executable_path: no browser download, no network). Expected rows are computed here from the
fixture's predictions.jsonl files, not copied from the page. Screenshots of the table and of
the detail view go to results/ (repo root). Without Chromium or playwright they skip, saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import FIXTURES, SYSTEMS, eval_dir, predictions, render_fixture
from test_report_browser import chromium_page

from peftsum.report import explorer
from peftsum.report import figures as report_figures

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "results"
ARTICLES = FIXTURES / "data" / "split" / "test.jsonl"
EVAL_DIRS = [eval_dir(n, s) for n, s in SYSTEMS]
LABELS = ["lora/seed0", "lora/seed1", "prompt_tuning", "last_layers", "zero_shot", "lead3"]


def fixture_articles() -> list[dict]:
    return [json.loads(line) for line in ARTICLES.read_text().splitlines()]


def outputs_by_label() -> dict[str, dict[str, dict]]:
    return {
        label: {p["id"]: p for p in predictions(name, seed)}
        for label, (name, seed) in zip(LABELS, SYSTEMS)
    }


# ---------------------------------------------------------------- the data in the page


def test_data_holds_every_article_and_every_system(tmp_path):
    data = explorer.build(EVAL_DIRS, ARTICLES, tmp_path / "explorer.html")
    assert [s["label"] for s in data["systems"]] == LABELS
    lora_colors = {s["color"] for s in data["systems"] if s["name"] == "lora"}
    assert len(lora_colors) == 1  # seeds share their method's colour
    # the report's figures give each method the same colour, whatever order they list it in
    in_figures = report_figures.method_colors([n for n, _ in reversed(SYSTEMS)])
    assert {s["name"]: s["color"] for s in data["systems"]} == in_figures
    assert len({s["color"] for s in data["systems"]}) == len({n for n, _ in SYSTEMS})
    outputs = outputs_by_label()
    assert [a["id"] for a in data["articles"]] == [a["id"] for a in fixture_articles()]
    for article, source in zip(data["articles"], fixture_articles()):
        assert (article["article"], article["reference"]) == (source["article"],
                                                             source["highlights"])
        for label in LABELS:
            shown, record = article["outputs"][label], outputs[label][article["id"]]
            assert shown["text"] == record["prediction"]
            for key in ["rouge1", "rouge2", "rougeL", "rougeLsum", "gen_tokens", "hit_max"]:
                assert shown[key] == record.get(key), (label, key)


def test_page_is_one_file_without_network_or_raw_markup(tmp_path):
    explorer.build(EVAL_DIRS, ARTICLES, tmp_path / "explorer.html")
    html = (tmp_path / "explorer.html").read_text()
    assert list(tmp_path.iterdir()) == [tmp_path / "explorer.html"]
    assert "http://" not in html and "https://" not in html and " src=" not in html
    # zero_shot wrote "<script>alert('x')</script>": it must stay data, not close the JSON.
    assert "alert('x')</script>" not in html and html.count("</script>") == 2


def test_report_links_the_explorer(tmp_path):
    render_fixture(tmp_path)
    html, md = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    assert '<a href="explorer.html">' in html and "](explorer.html)" in md
    assert '<a href="explorer.html#id=a1">in the explorer</a>' in html


# ---------------------------------------------------------------- the page in Chromium


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer")
    explorer.build(EVAL_DIRS, ARTICLES, out / "explorer.html")
    with chromium_page() as tab:
        tab.url_of_page = (out / "explorer.html").as_uri()
        tab.goto(tab.url_of_page)
        yield tab


def shown_ids(page) -> list[str]:
    return page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.id)")


def reset(page) -> None:
    page.goto(page.url_of_page)
    page.wait_for_selector("#rows tr")


def by_index(ids: list[str]) -> dict[str, int]:
    return {article_id: i for i, article_id in enumerate(ids)}


def test_loads_without_console_errors_or_network(page):
    reset(page)
    assert page.problems == []
    assert all(url.startswith("file:") for url in page.requests), page.requests
    ids = [a["id"] for a in fixture_articles()]
    assert shown_ids(page) == ids
    headers = page.eval_on_selector_all("#header th", "ths => ths.map(t => t.innerText.trim())")
    assert headers[-len(LABELS):] == LABELS
    assert page.inner_text("#count") == f"{len(ids)} of {len(ids)} articles"


@pytest.mark.parametrize("label", ["lora/seed0", "zero_shot"])
def test_sorting_a_system_column_orders_by_its_score(page, label):
    reset(page)
    order = by_index([a["id"] for a in fixture_articles()])
    scores = {i: r["rougeL"] for i, r in outputs_by_label()[label].items()}
    header = page.locator(f'#header th[data-key="system:{label}"]')
    header.click()  # scores sort best first
    assert shown_ids(page) == sorted(scores, key=lambda i: (-scores[i], order[i]))
    assert header.get_attribute("aria-sort") == "descending"
    page.locator(f'#header th[data-key="system:{label}"]').click()
    assert shown_ids(page) == sorted(scores, key=lambda i: (scores[i], order[i]))


def test_the_shown_measure_drives_cells_and_sorting(page):
    reset(page)
    order = by_index([a["id"] for a in fixture_articles()])
    page.select_option("#measure", "gen_tokens")
    page.locator('#header th[data-key="system:zero_shot"]').click()
    tokens = {i: r["gen_tokens"] for i, r in outputs_by_label()["zero_shot"].items()}
    assert shown_ids(page) == sorted(tokens, key=lambda i: (-tokens[i], order[i]))
    first = page.locator("#rows tr").first.locator("td.system").nth(LABELS.index("zero_shot"))
    assert first.locator(".score").inner_text() == str(max(tokens.values()))
    assert "✂" in first.inner_text()  # the fixture's longest zero_shot outputs are cut off


def test_sorting_a_text_column(page):
    reset(page)
    page.locator('#header th[data-key="id"]').click()
    ids = [a["id"] for a in fixture_articles()]
    assert shown_ids(page) == sorted(ids, key=lambda i: int(i[1:]))  # a2 before a10
    page.locator('#header th[data-key="id"]').click()
    assert shown_ids(page) == sorted(ids, key=lambda i: -int(i[1:]))


@pytest.mark.parametrize("query", ["bird", "BUDGET", "seed 1", "no such words"])
def test_text_filter(page, query):
    reset(page)
    page.fill("#search", query)
    outputs = outputs_by_label()
    expected = [
        a["id"] for a in fixture_articles()
        if any(query.lower() in text.lower() for text in
               [a["id"], a["article"], a["highlights"]]
               + [outputs[label][a["id"]]["prediction"] for label in LABELS])
    ]
    assert shown_ids(page) == expected
    assert page.inner_text("#count").startswith(f"{len(expected)} of ")


@pytest.mark.parametrize("a, b, points", [("lora/seed0", "zero_shot", 10), ("lead3", "lora/seed0", 0),
                                          ("prompt_tuning", "last_layers", 2.5)])
def test_beats_filter(page, a, b, points):
    reset(page)
    page.select_option("#beats-a", a)
    page.select_option("#beats-b", b)
    page.fill("#beats-x", str(points))
    outputs = outputs_by_label()
    expected = [
        i for i in outputs[a] if outputs[a][i]["rougeL"] - outputs[b][i]["rougeL"] > points
    ]
    assert 0 < len(expected) < len(outputs[a])  # the cases filter something, not everything
    assert shown_ids(page) == expected
    assert page.locator('#header th[data-key="delta"]').inner_text().startswith(f"{a} − {b}")


def test_detail_view_opens_with_every_summary(page):
    reset(page)
    page.locator('#rows tr[data-id="a2"]').click()
    dialog = page.locator("#detail")
    assert dialog.is_visible()
    assert "a2" in page.inner_text("#detail-title")
    source = next(a for a in fixture_articles() if a["id"] == "a2")
    assert page.inner_text("#detail-article") == source["article"]
    cards = page.locator("#detail-systems .card")
    assert cards.count() == len(LABELS) + 1  # the reference and every system
    zero_shot = page.locator('#detail-systems .card[data-system="zero_shot"] p')
    assert zero_shot.inner_text() == outputs_by_label()["zero_shot"]["a2"]["prediction"]
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "explorer_detail_screenshot.png"))
    page.click("#next")
    assert "a3" in page.inner_text("#detail-title")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    assert page.problems == []


def test_a_link_with_an_id_opens_that_article(page):
    page.goto("about:blank")
    page.goto(page.url_of_page + "#id=a5")
    page.wait_for_selector("#detail[open]")
    assert "a5" in page.inner_text("#detail-title")


def test_screenshot_of_the_table(page):
    reset(page)
    page.check("#texts")  # summaries in the cells, as a reader comparing them would
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / "explorer_screenshot.png"
    page.screenshot(path=str(path), full_page=True)
    png = path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and int.from_bytes(png[16:20], "big") == 1280
    assert page.problems == []
