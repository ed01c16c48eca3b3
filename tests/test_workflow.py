"""The workflow end to end on the smoke config, and its one-line errors on bad input."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import SMOKE_LOGS, SMOKE_RESULTS, snakemake

ROOT = Path(__file__).resolve().parents[1]


def smoke_config(tmp_path: Path, **changes) -> Path:
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# Every method of the smoke config (every kind), in its order.
TRAINED = tuple(yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())["methods"])
ROUGE_HEADERS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
                 "rougeLsum": "ROUGE-Lsum"}


def read_json(path: Path):
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def eval_dir(results: Path, row: dict) -> Path:
    seed = "" if row["seed"] is None else f"seed{row['seed']}"
    return results / "eval" / row["name"] / seed


def markdown_table(md: str, heading: str) -> list[dict]:
    """The first table under `## heading`, as one dict per row keyed by header."""
    section = md.split(f"\n## {heading}\n", 1)[1].lstrip("\n")
    lines = section.split("\n\n", 1)[0].splitlines()
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def shown_number(cell: str) -> tuple[float, float]:
    """The value a table cell shows (bold and interval dropped), and half its last digit."""
    text = cell.split(" [")[0].strip("*").replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text), 0.5 * 10 ** -decimals + 1e-9


@pytest.mark.slow
def test_smoke_workflow_end_to_end(smoke_workflow):
    results = smoke_workflow / SMOKE_RESULTS
    rows = read_json(results / "metrics.json")
    assert [r["name"] for r in rows] == [*TRAINED, "zero_shot", "lead3"]
    assert rows[0]["trainable_params"] == 8 * 64  # n_tokens x d_model of the smoke config
    zero_shot = read_jsonl(results / "eval" / "zero_shot" / "predictions.jsonl")
    untrained = rows[len(TRAINED)]
    assert untrained["name"] == "zero_shot"
    for row in rows[:len(TRAINED)]:
        run = results / "train" / row["name"] / "seed0"
        losses = [r["val_loss"] for r in read_jsonl(run / "steps.jsonl") if "val_loss" in r]
        assert len(losses) > 1 and losses[-1] < losses[0], (row["name"], losses)
        predictions = read_jsonl(eval_dir(results, row) / "predictions.jsonl")
        assert len(predictions) == 8
        assert [p["prediction"] for p in predictions] != [p["prediction"] for p in zero_shot]
        assert row["test_loss"] < untrained["test_loss"], row["name"]  # below the untrained model
        assert (smoke_workflow / SMOKE_LOGS / "train" / f"{row['name']}_seed0.log").stat().st_size
    html = (results / "report" / "report.html").read_text()
    assert "last_layers" in html and "data:image/png;base64," in html


@pytest.mark.slow
def test_smoke_table_rows_are_the_files_they_came_from(smoke_workflow):
    results = smoke_workflow / SMOKE_RESULTS
    for row in read_json(results / "metrics.json"):
        folder = eval_dir(results, row)
        metrics = read_json(folder / "metrics.json")
        shared = set(metrics) & set(row) - {"seed"}
        assert {k: row[k] for k in shared} == {k: metrics[k] for k in shared}, row["name"]
        examples = read_jsonl(folder / "predictions.jsonl")  # per-example scores, for bootstrap
        assert len(examples) == metrics["n_test"]
        for key in ROUGE_HEADERS:
            assert sum(e[key] for e in examples) / len(examples) == pytest.approx(metrics[key])
        if row["kind"] == "baseline":
            continue
        run = read_json(results / "train" / row["name"] / "seed0" / "run.json")
        assert (row["trainable_params"], row["optimizer_steps"], row["best_val_loss"]) == (
            run["params"]["trainable"], run["resources"]["optimizer_steps"], run["best"]["val_loss"])


@pytest.mark.slow
def test_smoke_report_shows_the_numbers_of_metrics_json(smoke_workflow):
    results = smoke_workflow / SMOKE_RESULTS
    rows = {r["name"]: r for r in read_json(results / "metrics.json")}
    quality = markdown_table((results / "report" / "report.md").read_text(), "Quality")
    assert [line["Method"] for line in quality] == list(rows)
    for line in quality:
        for key, header in ROUGE_HEADERS.items():
            value, tolerance = shown_number(line[header])
            assert abs(value - rows[line["Method"]][key]) <= tolerance, (line["Method"], header)


def _one_line_error(done: subprocess.CompletedProcess, needle: str) -> None:
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert needle in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("folder", ["results/smoke", "results/smoke/curve/n20", "/abs/results/x"])
def test_report_labels_a_run_by_method_and_seed_wherever_its_folder_lies(folder):
    """The label names the method, whose colour every figure looks up: a label with the
    experiment's folders in front of it drew every run in the unknown-method colour."""
    from peftsum.paths import run_label

    assert run_label(f"{folder}/train/lora/seed0/run.json") == "lora/seed0"


def test_config_typo_fails_at_once_naming_the_key(tmp_path):
    done = snakemake(tmp_path, smoke_config(tmp_path, training={"bacth_size": 4}), "-n")
    _one_line_error(done, "bacth_size")
    assert not (tmp_path / "results").exists()


def test_config_wrong_type_names_the_key(tmp_path):
    done = snakemake(tmp_path, smoke_config(tmp_path, evaluation={"max_new_tokens": "many"}), "-n")
    _one_line_error(done, "evaluation.max_new_tokens")


def test_nested_config_overrides_are_typed(tmp_path):
    done = snakemake(tmp_path, smoke_config(tmp_path), "-n", "--config",
                     "training={epochs: 1, cpu_bf16: true, max_steps: null, weight_decay: 1e-4}",
                     "methods={lora: {kind: lora, r: 4, lr: 2e-3}}")
    assert done.returncode == 0, done.stderr[-3000:]
    done = snakemake(tmp_path, smoke_config(tmp_path), "-n", "--config", "training={epochs: many}")
    _one_line_error(done, "config: 'training.epochs': 'many' is not of type 'integer'")
    assert "write it with a dot" not in done.stdout + done.stderr


def test_a_method_written_twice_in_the_config_file_is_refused(tmp_path):
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    del config["methods"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config) + "methods:\n  lora: {kind: lora, lr: 0.001}\n"
                    "  lora: {kind: lora, lr: 0.01}\n")
    _one_line_error(snakemake(tmp_path, path, "-n"), "key 'lora' appears twice")


def test_unreachable_hub_points_to_the_demo(tmp_path):
    config = smoke_config(tmp_path, model={"name": "m", "source": "hf", "id": "no-such/model"})
    done = snakemake(tmp_path, config, "resources/models/m")
    _one_line_error(done, "config/demo.yaml")
    assert not (tmp_path / "resources" / "models" / "m").exists()


def test_split_larger_than_source_leaves_nothing_half_written(tmp_path):
    config = smoke_config(tmp_path, data={"sizes": {"train": 100000, "validation": 8, "test": 8}})
    done = snakemake(tmp_path, config, str(SMOKE_RESULTS / "data/split/stats.json"))
    _one_line_error(done, "data.sizes.train = 100000 is larger than")
    assert not list((tmp_path / SMOKE_RESULTS).glob("data/split/*.jsonl"))


def test_chat_baseline_on_a_model_without_chat_template_fails_in_one_line(tmp_path):
    config = smoke_config(tmp_path, evaluation={"baselines": ["zero_shot_chat", "lead3"]})
    planned = snakemake(tmp_path, config, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "tokenize_chat" in planned.stdout
    assert f"{SMOKE_RESULTS}/eval/zero_shot_chat" in planned.stdout
    done = snakemake(tmp_path, config, str(SMOKE_RESULTS / "data/tokenized_chat/test.jsonl"))
    _one_line_error(done, "has none")


def test_config_threads_sets_each_training_and_evaluation_job(tmp_path):
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    config["threads"] = 3
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, path, "-n", "--cores", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    threads = dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    threads: (\d+)$",
                              done.stdout + done.stderr, re.MULTILINE))
    assert threads == {"train": "3", "evaluate": "3", "evaluate_zero_shot": "3"}


def planned_threads(done: subprocess.CompletedProcess) -> dict:
    """Each rule's threads in a dry run's job list (Snakemake leaves out a count of 1)."""
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    threads: (\d+)$",
                           done.stdout + done.stderr, re.MULTILINE))


def test_threads_auto_shares_the_cores_among_the_demos_jobs(tmp_path):
    demo = ROOT / "config" / "demo.yaml"
    assert yaml.safe_load(demo.read_text())["threads"] == "auto"
    many = planned_threads(snakemake(tmp_path, demo, "-n", "--cores", "16"))
    assert int(many["train"]) > 1
    assert many["evaluate"] == many["evaluate_zero_shot"] == many["train"]
    # On 2 cores one thread each, as the demo's recorded figures were computed.
    assert planned_threads(snakemake(tmp_path, demo, "-n", "--cores", "2")) == {}


# --- one experiment, one folder ------------------------------------------------------------------

def planned_outputs(done: subprocess.CompletedProcess) -> list[str]:
    """Every output path a dry run lists."""
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout + done.stderr
    return [p for line in re.findall(r"^    output: (.*)$", text, re.MULTILINE)
            for p in line.split(", ")]


@pytest.mark.slow
def test_two_configs_in_one_checkout_never_plan_each_others_jobs(smoke_workflow, tmp_path):
    other = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    other["experiment"] = "other"
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    outputs = planned_outputs(snakemake(smoke_workflow, path, "-n", "--nolock"))
    assert outputs and all(p.startswith("results/other/") for p in outputs), outputs
    # The finished smoke experiment beside it is still complete.
    again = snakemake(smoke_workflow, ROOT / "tests" / "smoke.yaml", "-n", "--nolock")
    assert planned_outputs(again) == []


@pytest.mark.slow
def test_copied_results_of_other_data_are_refused_without_snakemake_records(smoke_workflow,
                                                                            tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(smoke_workflow / "results", workdir / "results")  # no .snakemake/
    shutil.copytree(smoke_workflow / "resources", workdir / "resources", symlinks=True)
    recorded = read_json(workdir / SMOKE_RESULTS / "experiment.json")
    assert recorded["identity"]["data"] == {"name": "aclsum", "source": "aclsum"}
    other_data = smoke_config(tmp_path, data={"source": "jsonl", "path": str(tmp_path)})
    done = snakemake(workdir, other_data, "-n")
    _one_line_error(done, f"{SMOKE_RESULTS}/ holds outputs of another data (")
    assert "give this config its own `experiment:` name" in done.stdout + done.stderr


def test_a_folder_recorded_with_other_data_is_refused_and_the_same_data_accepted(tmp_path):
    from peftsum import config, experiment

    same = smoke_config(tmp_path)
    experiment.record(config.load(same), tmp_path / SMOKE_RESULTS)
    (tmp_path / "other").mkdir()
    other_data = smoke_config(tmp_path / "other", data={"source": "jsonl", "path": str(tmp_path)})
    _one_line_error(snakemake(tmp_path, other_data, "-n"), "holds outputs of another data")
    done = snakemake(tmp_path, same, "-n")
    assert done.returncode == 0, done.stderr[-3000:]


def test_report_templates_are_inputs_relative_to_the_project(tmp_path):
    """Absolute input paths change when the project folder moves, and Snakemake then reruns
    render_report; relative ones stay the same."""
    done = snakemake(tmp_path, smoke_config(tmp_path), "-n")
    assert done.returncode == 0, done.stderr[-3000:]
    block = (done.stdout + done.stderr).split("rule render_report:")[1].split("\n\n")[0]
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    templates = [p for p in inputs.split(", ") if "report/templates/" in p]
    assert templates and not [p for p in templates if Path(p).is_absolute()], templates
