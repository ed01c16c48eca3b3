"""Tracking: the fixture's runs sent to TensorBoard and MLflow, read back with their own readers
(TensorBoard's EventAccumulator, MlflowClient on the SQLite store) and compared with
steps.jsonl, run.json and metrics.json. Needs the tracking extra (`make install` brings it)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from test_report import FIXTURES, RUNS, SYSTEMS, eval_dir, load, run_json

from peftsum import config
from peftsum.errors import UserError
from peftsum.report import tracking

ROOT = Path(__file__).resolve().parents[1]
RUN_DIRS = [run_json(n, s).parent for n, s in RUNS]
LABELS = [f"{n}/seed{s}" for n, s in RUNS]


def steps(name: str, seed: int) -> list[dict]:
    lines = (FIXTURES / "train" / name / f"seed{seed}" / "steps.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def series(rows: list[dict], field: str) -> list[tuple[int, float]]:
    return [(r["step"], r[field]) for r in rows if r.get(field) is not None]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("tensorboard", reason="needs the tracking extra: pip install -e '.[tracking]'")
    pytest.importorskip("mlflow", reason="needs the tracking extra: pip install -e '.[tracking]'")
    out = tmp_path_factory.mktemp("tracking")
    (out / "report.html").write_text("<html>report</html>")
    (out / "explorer.html").write_text("<html>explorer</html>")
    cfg = tracking.TrackingConfig(tensorboard=True, mlflow=True,
                                  mlflow_uri=f"sqlite:///{out}/db/mlflow.db", experiment="test")
    record = tracking.export(cfg, RUN_DIRS, [eval_dir(n, s) for n, s in SYSTEMS],
                             [out / "report.html", out / "explorer.html"], out / "tb",
                             out / "tracked.json")
    return {"cfg": cfg, "record": record, "out": out}


def test_tracking_is_off_by_default():
    cfg = tracking.TrackingConfig.from_dict(config.validate({})["tracking"])
    assert not cfg.enabled
    assert tracking.tracker(cfg, "lora/seed0", {}, Path("unused")).backends == []


def test_disabled_export_writes_nothing_but_its_record(tmp_path):
    record = tracking.export(tracking.TrackingConfig(), RUN_DIRS, [eval_dir("lora")], [],
                             tmp_path / "tb", tmp_path / "tracked.json")
    assert record == {label: {} for label in LABELS}
    assert list((tmp_path / "tb").iterdir()) == []


def test_a_missing_library_is_a_one_line_user_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import fails as if not installed
    cfg = tracking.TrackingConfig(mlflow=True, mlflow_uri=f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(UserError, match=r"needs mlflow: pip install -e '\.\[tracking\]'"):
        tracking.tracker(cfg, "lora/seed0", {}, tmp_path)


@pytest.mark.parametrize("name, seed", RUNS)
def test_tensorboard_events_match_steps_and_metrics(exported, name, seed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(exported["record"][f"{name}/seed{seed}"]["tensorboard"])
    assert folder == exported["out"] / "tb" / name / f"seed{seed}"
    events = EventAccumulator(str(folder))
    events.Reload()
    rows = steps(name, seed)
    for field, tag in tracking.STEP_METRICS.items():
        expected = series(rows, field)
        if not expected:  # the fixture has no pad_fraction
            assert tag not in events.Tags()["scalars"]
            continue
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in logged] == [s for s, _ in expected], tag
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6), tag
    metrics = load(eval_dir(name, seed) / "metrics.json")
    (final,) = events.Scalars("test/rougeL")
    assert final.step == max(r["step"] for r in rows)
    assert final.value == pytest.approx(metrics["rougeL"], rel=1e-6)
    (wall,) = events.Scalars("cost/train_wall_s")
    assert wall.value == pytest.approx(load(run_json(name, seed))["resources"]["train_wall_s"])
    assert "params" in events.Tags()["tensors"]


@pytest.fixture(scope="module")
def mlflow_runs(exported):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=exported["cfg"].mlflow_uri)
    experiment = client.get_experiment_by_name("test")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    return client, runs


def test_one_mlflow_run_per_training_run(exported, mlflow_runs):
    _, runs = mlflow_runs
    assert sorted(runs) == sorted(LABELS)
    for label in LABELS:
        assert runs[label].info.run_id == exported["record"][label]["mlflow_run_id"]
        assert runs[label].data.tags["peftsum.run"] == label
        assert runs[label].info.status == "FINISHED"


@pytest.mark.parametrize("name, seed", RUNS)
def test_mlflow_holds_params_steps_test_metrics_and_the_report(mlflow_runs, name, seed):
    client, runs = mlflow_runs
    run = runs[f"{name}/seed{seed}"]
    record = load(run_json(name, seed))
    for key, value in record["hparams"].items():
        assert run.data.params[key] == str(value), key
    assert run.data.params["params.trainable"] == str(record["params"]["trainable"])
    rows = steps(name, seed)
    for field, tag in tracking.STEP_METRICS.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag))
        assert history == series(rows, field), tag  # doubles: exactly what steps.jsonl holds
    metrics = load(eval_dir(name, seed) / "metrics.json")
    for key in ["rouge1", "rouge2", "rougeL", "rougeLsum", "test_loss", "perplexity"]:
        assert run.data.metrics[f"test/{key}"] == metrics[key], key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"report.html", "explorer.html"}


def test_a_second_export_replaces_the_first(exported, mlflow_runs):
    from mlflow.tracking import MlflowClient

    out = exported["out"]
    tracking.export(exported["cfg"], RUN_DIRS[:1], [eval_dir("lora")], [], out / "tb",
                    out / "again.json")
    client = MlflowClient(tracking_uri=exported["cfg"].mlflow_uri)
    experiment = client.get_experiment_by_name("test")
    names = [r.info.run_name for r in client.search_runs([experiment.experiment_id])]
    assert sorted(names) == sorted(LABELS)  # lora/seed0 once, not twice


def test_tracking_env_pins_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["optional-dependencies"]["tracking"]
    env = yaml.safe_load((ROOT / "envs" / "tracking.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(re.match(r"([\w.-]+)==(\S+)", p).groups() for p in pip if "==" in p)
    core = dict(re.match(r"([\w.-]+)==(\S+)", p).groups() for p in project["dependencies"])
    for requirement in wanted:
        name, version = requirement.split("==")
        assert pins.get(name) == version, name
    assert all(core[name] == version for name, version in pins.items() if name in core)
