"""Tests for the results table (aggregate) and the rendered report (report)."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import pytest

from peftsum import aggregate, report

FIXTURES = Path(__file__).parent / "fixtures" / "report"
TRAINED = ["lora", "prompt_tuning"]
BASELINES = ["zero_shot", "lead3"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def eval_dir(name: str) -> Path:
    return FIXTURES / "eval" / name / ("seed0" if name in TRAINED else "")


def run_json(name: str) -> Path:
    return FIXTURES / "train" / name / "seed0" / "run.json"


def load(path: Path):
    return json.loads(path.read_text())


SETUP = {
    "model": {"name": "gpt2", "source": "huggingface", "id": "gpt2", "n_params": 124439808},
    "data": {
        "source": "cnn_dailymail",
        "sizes": {"train": 99, "val": 10, "test": 4},
        "dropped": {"too_long": 1},
    },
    "tokenize": {"article_tokens": {"mean": 412.5, "p95": 900}},
    "template": {"prompt": "Article: {article}\nSummary:"},
    "decoding": {"max_new_tokens": 80, "num_beams": 1},
    "training": {"epochs": 1, "batch_size": 8},
    "hardware": "2-core CPU",
    "versions": {"python": "3.11"},
    "an_unknown_key": {"still": "shown"},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """Aggregate the fixture results and render the report once for all report tests."""
    out = tmp_path_factory.mktemp("report")
    names = TRAINED + BASELINES
    rows = aggregate.run(
        [eval_dir(n) / "metrics.json" for n in names],
        [run_json(n) for n in TRAINED],
        out / "results.tsv",
        out / "results.json",
    )
    report.render(
        out / "results.json",
        steps={n: FIXTURES / "train" / n / "seed0" / "steps.jsonl" for n in TRAINED},
        predictions={n: eval_dir(n) / "predictions.jsonl" for n in names},
        articles=FIXTURES / "data" / "split" / "test.jsonl",
        setup=SETUP,
        out_md=out / "report.md",
        out_html=out / "report.html",
    )
    return {
        "rows": rows,
        "md": (out / "report.md").read_text(),
        "html": (out / "report.html").read_text(),
        "out": out,
    }


def markdown_section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_aggregate_joins_run_with_same_name_and_seed(tmp_path):
    # A run of lora with another seed must not be joined to the seed-0 evaluation.
    decoy = load(run_json("lora")) | {"seed": 1, "params": {"trainable": 1, "base_total": 10}}
    (tmp_path / "decoy.json").write_text(json.dumps(decoy))
    evals = [eval_dir(n) / "metrics.json" for n in ["zero_shot", "lora", "lead3", "prompt_tuning"]]
    runs = [run_json("prompt_tuning"), run_json("lora"), tmp_path / "decoy.json"]

    rows = aggregate.run(evals, runs, tmp_path / "t.tsv", tmp_path / "t.json")

    assert [(r["name"], r["seed"]) for r in rows] == [
        ("prompt_tuning", 0),
        ("lora", 0),
        ("zero_shot", None),
        ("lead3", None),
    ]
    for row in rows[:2]:
        expected = load(run_json(row["name"]))
        params = expected["params"]
        assert row["trainable_params"] == params["trainable"]
        assert row["total_params"] == params["total"]
        assert row["trainable_pct"] == pytest.approx(
            params["trainable"] / params["base_total"] * 100
        )
        assert row["train_wall_s"] == expected["resources"]["train_wall_s"]
        assert row["best_val_loss"] == expected["best"]["val_loss"]
        assert row["trains"] == expected["trains"]
        assert row["rougeL"] == load(eval_dir(row["name"]) / "metrics.json")["rougeL"]
    for row in rows[2:]:
        assert row["trainable_params"] is None and row["train_wall_s"] is None


def test_tsv_and_json_agree(rendered):
    out = rendered["out"]
    from_json = load(out / "results.json")
    with open(out / "results.tsv", newline="") as fh:
        from_tsv = list(csv.DictReader(fh, delimiter="\t"))

    assert list(from_tsv[0]) == aggregate.COLUMNS
    assert from_json == rendered["rows"]
    assert len(from_tsv) == len(from_json)
    for tsv_row, json_row in zip(from_tsv, from_json):
        for column in aggregate.COLUMNS:
            value, cell = json_row[column], tsv_row[column]
            if value is None:
                assert cell == "", column
            elif isinstance(value, (int, float)):
                assert float(cell) == pytest.approx(value), column
            else:
                assert cell == value, column
    lead3 = next(r for r in from_json if r["name"] == "lead3")
    assert lead3["test_loss"] is None  # missing values are null, not NaN or ""


def test_html_is_self_contained_with_png_figures(rendered):
    html = rendered["html"]
    for name in TRAINED + BASELINES:
        assert name in html
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2  # loss curves and ROUGE bars
    for encoded in images:
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)
    assert "http://" not in html and "https://" not in html


def test_markdown_references_figure_files(rendered):
    for relpath in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", rendered["md"]):
        assert (rendered["out"] / relpath).read_bytes().startswith(PNG_SIGNATURE)
    assert (rendered["out"] / "figures" / "loss_curves.png").exists()


@pytest.mark.parametrize(
    "header, key, digits, pick", [("ROUGE-L", "rougeL", 2, max), ("Test loss", "test_loss", 3, min)]
)
def test_best_value_is_bold_in_markdown(rendered, header, key, digits, pick):
    quality = markdown_section(rendered["md"], "Quality")
    table = [line for line in quality.splitlines() if line.startswith("|")]
    column = [c.strip() for c in table[0].strip("|").split("|")].index(header)
    scores = {r["name"]: r[key] for r in rendered["rows"] if r[key] is not None}
    best = pick(scores, key=scores.get)
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in scores:
            expected = f"{scores[cells[0]]:.{digits}f}"
            assert cells[column] == (f"**{expected}**" if cells[0] == best else expected)


def test_findings_name_true_best_rouge_l(rendered):
    scores = {n: load(eval_dir(n) / "metrics.json")["rougeL"] for n in TRAINED + BASELINES}
    ranked = sorted(scores, key=scores.get, reverse=True)
    best, runner_up = ranked[0], ranked[1]
    findings = markdown_section(rendered["md"], "Findings")

    assert re.search(r"(\S+) has the best ROUGE-L", findings).group(1) == best
    assert (
        f"{scores[best] - scores[runner_up]:.2f} points above the next best, {runner_up}"
        in findings
    )
    assert (
        f"{scores[best] - scores['zero_shot']:.2f} points above the zero_shot baseline" in findings
    )
    cheapest = min(TRAINED, key=lambda n: load(run_json(n))["params"]["trainable"])
    assert f"cheapest trained method in trainable parameters is {cheapest}" in findings


def test_html_escapes_data(rendered):
    html = rendered["html"]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html
    assert "an_unknown_key" in html.lower().replace(" ", "_")  # unknown setup keys are still shown


def test_single_method_with_empty_steps_and_missing_values(tmp_path):
    rows_json = tmp_path / "results.json"
    aggregate.run(
        [eval_dir("lora") / "metrics.json"], [run_json("lora")], tmp_path / "r.tsv", rows_json
    )
    (tmp_path / "steps.jsonl").write_text("")

    report.render(
        rows_json,
        {"lora": tmp_path / "steps.jsonl"},
        {"lora": eval_dir("lora") / "predictions.jsonl"},
        FIXTURES / "data" / "split" / "test.jsonl",
        {"hardware": "cpu"},
        tmp_path / "report.md",
        tmp_path / "report.html",
        n_examples=1,
    )

    md, html = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1  # no loss figure without steps
    assert not (tmp_path / "figures" / "loss_curves.png").exists()
    assert "—" in markdown_section(md, "Resources")  # peak_gpu_mb is null
    assert "lora has the best ROUGE-L" in md
    assert md.count("### Example") == 1


def test_report_modules_do_not_import_heavy_libraries():
    # The report must re-render on a laptop holding only copied result files.
    import os
    import subprocess
    import sys

    code = (
        "import sys, peftsum.aggregate, peftsum.report; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    src = Path(report.__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"PYTHONPATH": str(src)},
    )
    assert result.stdout.strip() == "[]"
