"""The workflow end to end on the smoke config, and its one-line errors on bad input."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import snakemake

ROOT = Path(__file__).resolve().parents[1]


def smoke_config(tmp_path: Path, **changes) -> Path:
    config = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_smoke_workflow_end_to_end(smoke_workflow):
    tmp_path = smoke_workflow
    rows = json.loads((tmp_path / "results" / "metrics.json").read_text())
    methods = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())["methods"]
    assert [r["name"] for r in rows] == [*methods, "zero_shot", "lead3"]
    assert rows[0]["trainable_params"] == 8 * 64  # n_tokens x d_model of the smoke config
    for row in rows:
        assert 0 <= row["rougeL"] <= 100
    for method in ("prompt_tuning", "lora", "last_layers"):
        run = tmp_path / "results" / "train" / method / "seed0"
        assert (run / "trainable.safetensors").stat().st_size > 0
        assert any("val_loss" in json.loads(line) for line in (run / "steps.jsonl").open())
        predictions = (tmp_path / "results" / "eval" / method / "seed0" / "predictions.jsonl")
        assert len(predictions.read_text().splitlines()) == 8
        assert (tmp_path / "logs" / "train" / f"{method}_seed0.log").stat().st_size > 0
    html = (tmp_path / "results" / "report" / "report.html").read_text()
    assert "last_layers" in html and "data:image/png;base64," in html


def _one_line_error(done: subprocess.CompletedProcess, needle: str) -> None:
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert needle in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_config_typo_fails_at_once_naming_the_key(tmp_path):
    done = snakemake(tmp_path, smoke_config(tmp_path, training={"bacth_size": 4}), "-n")
    _one_line_error(done, "bacth_size")
    assert not (tmp_path / "results").exists()


def test_config_wrong_type_names_the_key(tmp_path):
    done = snakemake(tmp_path, smoke_config(tmp_path, evaluation={"max_new_tokens": "many"}), "-n")
    _one_line_error(done, "evaluation.max_new_tokens")


def test_unreachable_hub_points_to_the_demo(tmp_path):
    config = smoke_config(tmp_path, model={"name": "m", "source": "hf", "id": "no-such/model"})
    done = snakemake(tmp_path, config, "resources/models/m")
    _one_line_error(done, "config/demo.yaml")
    assert not (tmp_path / "resources" / "models" / "m").exists()


def test_split_larger_than_source_leaves_nothing_half_written(tmp_path):
    config = smoke_config(tmp_path, data={"sizes": {"train": 100000, "validation": 8, "test": 8}})
    done = snakemake(tmp_path, config, "results/data/split/stats.json")
    _one_line_error(done, "data.sizes.train = 100000 is larger than")
    assert not list((tmp_path / "results").glob("data/split/*.jsonl"))


def test_chat_baseline_on_a_model_without_chat_template_fails_in_one_line(tmp_path):
    config = smoke_config(tmp_path, evaluation={"baselines": ["zero_shot_chat", "lead3"]})
    planned = snakemake(tmp_path, config, "-n")
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "tokenize_chat" in planned.stdout and "results/eval/zero_shot_chat" in planned.stdout
    done = snakemake(tmp_path, config, "results/data/tokenized_chat/test.jsonl")
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
