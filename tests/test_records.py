"""The results contract: result paths derived from the layout of peftsum.paths, and run.json /
metrics.json read and written only through peftsum.records."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from peftsum import metrics, paths, records
from peftsum.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "report"
WILDCARDS = {"experiment": "x", "method": "lora", "seed": 2, "size": 20, "point": "lr=0.001"}


@pytest.mark.parametrize(("run", "evaluation"), [
    (paths.TRAIN_RUN, paths.EVALUATION),
    (paths.CURVE_RUN, paths.CURVE_EVALUATION),
])
def test_a_runs_evaluation_and_label_come_from_the_rules_patterns(tmp_path, run, evaluation):
    """The folder the workflow evaluates a run in, and its label, from the run's folder alone."""
    run_dir = tmp_path / run.format(**WILDCARDS)
    assert paths.evaluation_dir(run_dir) == tmp_path / evaluation.format(**WILDCARDS)
    assert paths.run_label(paths.run_json(run_dir)) == "lora/seed2"
    assert paths.run_json(run.format(**WILDCARDS)) == f"{run_dir.relative_to(tmp_path)}/run.json"


def test_a_run_outside_the_layout_has_no_evaluation(tmp_path):
    assert paths.evaluation_dir(tmp_path / paths.SWEEP_RUN.format(**WILDCARDS)) is None
    assert paths.evaluation_dir(Path("/copied-run")) is None


@pytest.mark.parametrize("missing", ["name", "method", "base_model"])
def test_a_run_record_missing_a_needed_key_is_a_one_line_error_naming_the_file(tmp_path,
                                                                             missing):
    run = {"name": "lora", "seed": 0, "method": {"kind": "lora"}, "base_model": {"dir": "m"},
           "from_a_newer_version": 1}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({k: v for k, v in run.items() if k != missing}))
    with pytest.raises(UserError) as caught:
        records.read_run(path, needs=("name", "method", "base_model"))
    message = str(caught.value)
    assert message.startswith(f"{path} lacks {missing}:") and "\n" not in message


def test_a_metrics_record_without_name_or_as_broken_json_is_a_one_line_error(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"rougeL": 20.0}))
    with pytest.raises(UserError, match=f"^{path} lacks name:"):
        records.read_metrics(path, needs=("name",))
    path.write_text('{"name": "lora", ')
    with pytest.raises(UserError, match=f"^{path} is not valid JSON"):
        records.read_metrics(path)


def test_unknown_keys_are_skipped_and_unset_optional_keys_stay_out_of_the_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"name": "lora", "seed": 1, "from_a_newer_version": 1}))
    run = records.read_run(path)
    assert (run.name, run.seed, run.base_model) == ("lora", 1, None)
    records.write_run(path, run)
    written = json.loads(path.read_text())
    assert "from_a_newer_version" not in written and "base_model" not in written
    assert written["name"] == "lora" and "best" in written  # written by every training run


@pytest.mark.parametrize("name", ["lora/seed0", "zero_shot"])
def test_an_evaluation_reads_and_writes_back_byte_for_byte(tmp_path, name):
    """The files of earlier versions keep their keys, values and order through a record."""
    original = paths.metrics_json(FIXTURE / "eval" / name)
    records.write_metrics(tmp_path / "metrics.json", records.read_metrics(original))
    assert (tmp_path / "metrics.json").read_bytes() == original.read_bytes()


def test_every_declared_metric_is_a_field_of_the_evaluation_record():
    # metrics.py declares the metrics; the record must carry each, or evaluation's writer
    # would drop a new one from metrics.json without a word.
    fields = {f.name for f in dataclasses.fields(records.MetricsRecord)}
    assert set(metrics.ROUGE_KEYS) <= fields
