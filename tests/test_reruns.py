"""A finished experiment grows without redoing itself: each change to the config plans exactly the
jobs whose outputs depend on it (each rule's params and inputs are its job's whole contract)."""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import SMOKE_RESULTS, snakemake

from peftsum import stages

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "tests" / "smoke.yaml").read_text())
TRAINED = len(SMOKE["methods"])  # one seed in the smoke config


def planned(workdir: Path, config: dict, tmp_path: Path) -> Counter:
    """Rule name -> number of jobs `snakemake -n` plans for config on the finished workdir."""
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    done = snakemake(workdir, path, "-n", "--nolock")
    assert done.returncode == 0, done.stderr[-3000:]
    return job_counts(done.stdout + done.stderr)


def job_counts(output: str) -> Counter:
    """The dry run's 'Job stats' table, without the `all` target; empty when nothing is to do."""
    lines = output.splitlines()
    if "Job stats:" not in lines:
        assert "Nothing to be done" in output, output[-3000:]
        return Counter()
    counts = Counter()
    for line in lines[lines.index("Job stats:") + 3:]:
        name, _, count = line.partition(" ")
        if name == "total" or not count.strip():
            break
        if name != "all":
            counts[name] = int(count)
    return counts


def changed(**sections) -> dict:
    """The smoke config with some sections' keys replaced."""
    config = json.loads(json.dumps(SMOKE))
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    return config


REPORT = Counter({"aggregate": 1, "render_report": 1})
EVALUATIONS = Counter({"evaluate": TRAINED, "evaluate_zero_shot": 1})

CHANGES = {
    "a seed": (changed(training={"seeds": [0, 1]}),
               Counter({"train": TRAINED, "evaluate": TRAINED}) + REPORT),
    "a method variant": (
        changed(methods={"lora_r16": {"kind": "lora", "r": 16, "lr": 0.001}}),
        Counter({"train": 1, "evaluate": 1}) + REPORT),
    "one method's learning rate": (
        changed(methods={"lora": {"kind": "lora", "lr": 0.002}}),
        Counter({"train": 1, "evaluate": 1}) + REPORT),
    # lora's defaults written out: the same resolved hyperparameters, nothing to redo.
    "a method's default written out": (
        changed(methods={"lora": {"kind": "lora", "lr": 0.001, "r": 8, "alpha": 32}}),
        Counter()),
    "a baseline added": (
        changed(evaluation={"baselines": ["zero_shot", "zero_shot_chat", "lead3"]}),
        Counter({"tokenize_chat": 1, "evaluate_zero_shot": 1}) + REPORT),
    "a baseline removed": (changed(evaluation={"baselines": ["zero_shot"]}), REPORT),
    "evaluation.max_new_tokens": (changed(evaluation={"max_new_tokens": 12}),
                                  EVALUATIONS + REPORT),
    "data.sizes": (
        changed(data={"sizes": {**SMOKE["data"]["sizes"], "test": 6}}),
        Counter({"split": 1, "tokenize": 1, "train": TRAINED, "evaluate_lead3": 1})
        + EVALUATIONS + REPORT),
}


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_plans_only_the_jobs_that_depend_on_it(smoke_workflow, tmp_path, change):
    config, expected = CHANGES[change]
    assert planned(smoke_workflow, config, tmp_path) == expected


@pytest.mark.slow
def test_the_same_config_in_another_key_order_and_style_plans_nothing(smoke_workflow, tmp_path):
    path = tmp_path / "sorted.yaml"
    path.write_text(yaml.safe_dump(SMOKE, sort_keys=True, default_flow_style=True))
    assert path.read_text().startswith("{")
    done = snakemake(smoke_workflow, path, "-n", "--nolock")
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout + done.stderr) == Counter()


@pytest.mark.slow
def test_an_edited_report_template_reruns_only_the_report(smoke_workflow, tmp_path):
    template = ROOT / "src/peftsum/report/templates" / "report.md.j2"
    text, before = template.read_bytes(), template.stat()
    try:
        # Edited, not only touched: Snakemake skips a newer input whose checksum is unchanged.
        template.write_bytes(text + b"{# edited #}\n")
        assert planned(smoke_workflow, SMOKE, tmp_path) == Counter({"render_report": 1})
    finally:
        template.write_bytes(text)
        os.utime(template, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.slow
def test_report_hardware_is_the_training_machine_from_run_json(smoke_workflow, tmp_path,
                                                              monkeypatch):
    workdir = tmp_path / "copy"
    shutil.copytree(smoke_workflow / "results", workdir / "results")
    shutil.copytree(smoke_workflow / "resources", workdir / "resources", symlinks=True)
    monkeypatch.chdir(workdir)  # the rule's paths are relative to the workdir
    results = SMOKE_RESULTS
    runs = sorted((results / "train").glob("*/seed0/run.json"))
    for path in runs:
        run = json.loads(path.read_text())
        run["provenance"]["hardware"] = {"machine": "x86_64", "cpu_model": "Imaginary CPU 9000",
                                         "cpu_count": 96, "gpus": ["Imaginary GPU"]}
        run["provenance"]["versions"]["torch"] = "0.0.imaginary"
        path.write_text(json.dumps(run))
    predictions = sorted((results / "eval").glob("**/predictions.jsonl"))
    out = results / "report"
    stages.report(results / "metrics.json", results / "significance.json",
                  results / "metrics_by_method.json", runs, predictions,
                  f"resources/models/{SMOKE['model']['name']}", results / "data/split/stats.json",
                  results / "data/tokenized/stats.json", results / "data/split/test.jsonl",
                  ROOT / "src/peftsum/report/templates", {"name": "aclsum", "source": "aclsum"},
                  out / "again.md", out / "again.html", out / "again_explorer.html")
    md = (out / "again.md").read_text()
    provenance = md[md.index("Hardware and software of the training runs"):]
    assert "Imaginary CPU 9000" in provenance and "Imaginary GPU" in provenance
    assert "0.0.imaginary" in provenance
    assert "AMD EPYC" not in provenance and "Intel" not in provenance  # not the renderer's
