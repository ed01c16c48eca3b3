"""The explorer: one self-contained HTML file with every test article and every system's summary.

Per article: the reference and each system's summary with its ROUGE scores, generated length
and whether generation was cut off at max_new_tokens. The page sorts, filters (text; "system A
beats B by more than x points") and opens one article in a detail view, with inline
JavaScript and CSS and the data as JSON in the page: no network, opened straight from disk.
Only reads result files (no torch), like the report.
"""

from __future__ import annotations

import json
from pathlib import Path

from peftsum import paths, records
from peftsum.files import read_jsonl, write_atomic
from peftsum.metrics import BY_KEY, ROUGE_KEYS
from peftsum.report.figures import method_colors
from peftsum.report.render import DEFAULT_TEMPLATES_DIR, template_env, with_labels

# (field in predictions.jsonl, header): what a system's column can show and sort by, the page's
# default first.
MEASURES = [(key, BY_KEY[key].label) for key in
            ("rougeL", "rougeLsum", "rouge1", "rouge2", "gen_tokens", "pred_words")]
OUTPUT_FIELDS = [key for key, _ in MEASURES] + ["hit_max"]


def build(eval_dirs: list[Path], articles: Path, out_html: Path,
          templates_dir: Path | None = None) -> dict:
    """Write the explorer for the evaluations in `eval_dirs` (metrics.json + predictions.jsonl
    each) on the test articles of `articles` (split test.jsonl); return the page's data."""
    data = explorer_data(eval_dirs, articles)
    env = template_env(templates_dir or DEFAULT_TEMPLATES_DIR)
    html = env.get_template("explorer.html.j2").render(
        title="Every test summary", data_json=script_json(data), n_articles=len(data["articles"]),
        n_systems=len(data["systems"]))
    write_atomic(out_html, html)
    return data


def explorer_data(eval_dirs: list[Path], articles: Path) -> dict:
    """Systems (label, name, colour) and, per article, its text, reference and outputs."""
    evaluations = [records.read_metrics(paths.metrics_json(Path(d)), needs=("name",))
                   for d in eval_dirs]
    labelled = with_labels([{"name": m.name, "seed": m.seed} for m in evaluations])
    colors = method_colors([row["name"] for row in labelled])
    outputs = {
        row["label"]: {p["id"]: p for p in read_jsonl(paths.predictions(Path(d)))}
        for row, d in zip(labelled, eval_dirs)
    }
    rows = []
    for article in read_jsonl(articles):
        rows.append({
            "id": str(article["id"]),
            "article": article["article"],
            "reference": article["highlights"],
            "outputs": {label: output_fields(by_id.get(article["id"]))
                        for label, by_id in outputs.items()},
        })
    return {
        "systems": [{"label": r["label"], "name": r["name"], "color": colors[r["name"]]}
                    for r in labelled],
        "measures": [{"key": key, "header": header, "rouge": key in ROUGE_KEYS}
                     for key, header in MEASURES],
        "articles": rows,
    }


def output_fields(record: dict | None) -> dict | None:
    """What the page shows of one system's output; None where the system has no output."""
    if record is None:
        return None
    return {"text": record.get("prediction", "")} | {k: record.get(k) for k in OUTPUT_FIELDS}


def script_json(data: dict) -> str:
    """JSON that is safe inside <script>: no "</script>" or "<!--" can close or bend it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
