"""Experiment tracking: each training run's record into TensorBoard event files and MLflow.

Off by default (`tracking:` in the config); `pip install -e '.[tracking]'` brings the libraries.
A `Tracker` takes one run's parameters, its per-step rows (as in steps.jsonl), its final
metrics and artifacts. `export` feeds the trackers from the result files once the report is
rendered, so turning tracking on retrains nothing, resumed or data-parallel runs log each step
once, and parallel SLURM jobs never contend for one SQLite file. Only reads result files
(no torch).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from peftsum import paths, records
from peftsum.errors import UserError
from peftsum.files import read_jsonl, write_json
from peftsum.records import MetricsRecord, RunRecord

log = logging.getLogger("peftsum")

# steps.jsonl field -> the metric's name in the trackers
STEP_METRICS = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "lr": "train/lr",
    "tokens_per_s": "train/tokens_per_s",
    "pad_fraction": "train/pad_fraction",
}
INSTALL_HINT = "pip install -e '.[tracking]'"


@dataclass(frozen=True)
class TrackingConfig:
    """`tracking:` in the config; see the schema for each field."""

    tensorboard: bool = False  # event files per run under results/<experiment>/tracking/tensorboard/<run>/
    mlflow: bool = False  # one MLflow run per training run
    mlflow_uri: str = "sqlite:///results/tracking/mlflow.db"
    experiment: str = "peftsum"

    @classmethod
    def from_dict(cls, values: dict | None) -> TrackingConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.mlflow


class Tracker:
    """Sends one run's record to every backend the config turns on; does nothing with none."""

    def __init__(self, backends: list):
        self.backends = backends

    def log_params(self, params: dict) -> None:
        for backend in self.backends:
            backend.log_params(params)

    def log_step(self, row: dict) -> None:
        """One steps.jsonl row: {"step": n, "train_loss": ..., "lr": ...} or a validation row."""
        values = {STEP_METRICS[k]: float(v) for k, v in row.items()
                  if k in STEP_METRICS and v is not None}
        if values:
            for backend in self.backends:
                backend.log_metrics(values, int(row["step"]))

    def log_final(self, metrics: dict, step: int) -> None:
        """Final metrics (e.g. {"test/rougeL": 24.9}) at the run's last step."""
        for backend in self.backends:
            backend.log_metrics(metrics, step)

    def log_artifact(self, path: Path) -> None:
        for backend in self.backends:
            backend.log_artifact(Path(path))

    def close(self) -> dict:
        """Finish every backend; return where each one wrote ({"tensorboard": dir, ...})."""
        return {name: where for backend in self.backends for name, where in backend.close().items()}


def tracker(cfg: TrackingConfig, run_label: str, tags: dict, tensorboard_dir: Path) -> Tracker:
    """The tracker of one training run (run_label: e.g. lora/seed0)."""
    backends = []
    if cfg.tensorboard:
        backends.append(TensorBoardRun(_inside(Path(tensorboard_dir), run_label)))
    if cfg.mlflow:
        backends.append(MlflowRun(cfg, run_label, tags))
    return Tracker(backends)


def _inside(parent: Path, label: str) -> Path:
    """parent/label, which a re-export removes first: label comes from run.json, and one
    edited to hold '..' or '/' must not aim that removal outside parent."""
    folder = parent / label
    if not folder.resolve().is_relative_to(parent.resolve()) or folder.resolve() == parent.resolve():
        raise UserError(f"run label {label!r} (from a run.json's name and seed) leads outside "
                        f"{parent}: refusing to replace {folder}")
    return folder


class TensorBoardRun:
    """Scalars into an event file; parameters as a text summary (TensorBoard has no params)."""

    def __init__(self, folder: Path):
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as err:
            raise UserError(f"tracking.tensorboard needs tensorboard: {INSTALL_HINT}") from err
        shutil.rmtree(folder, ignore_errors=True)  # a re-export replaces the earlier one
        folder.mkdir(parents=True)
        self.folder, self._event, self._summary = folder, event_pb2.Event, summary_pb2.Summary
        self._summary_metadata = summary_pb2.SummaryMetadata
        self.writer = EventFileWriter(str(folder))

    def _write(self, step: int, values: list) -> None:
        event = self._event(wall_time=time.time(), step=step, summary=self._summary(value=values))
        self.writer.add_event(event)

    def log_params(self, params: dict) -> None:
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.types_pb2 import DT_STRING

        text = "\n".join(f"    {k}: {v}" for k, v in params.items())  # indented: a code block
        metadata = self._summary_metadata(plugin_data={"plugin_name": "text"})  # the Text tab
        value = self._summary.Value(tag="params", metadata=metadata,
                                    tensor=TensorProto(dtype=DT_STRING, string_val=[text.encode()]))
        self._write(0, [value])

    def log_metrics(self, metrics: dict, step: int) -> None:
        self._write(step, [self._summary.Value(tag=k, simple_value=v) for k, v in metrics.items()])

    def log_artifact(self, path: Path) -> None:
        pass  # TensorBoard keeps no files; the report sits beside the results

    def close(self) -> dict:
        self.writer.close()
        return {"tensorboard": str(self.folder)}


class MlflowRun:
    """One MLflow run, tagged peftsum.run = run label; a re-export replaces the earlier one."""

    def __init__(self, cfg: TrackingConfig, run_label: str, tags: dict):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise UserError(f"tracking.mlflow needs mlflow: {INSTALL_HINT}") from err
        if cfg.mlflow_uri.startswith("sqlite:///"):  # SQLite makes the file, not its folder
            folder = Path(cfg.mlflow_uri.removeprefix("sqlite:///")).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"tracking.mlflow_uri {cfg.mlflow_uri}: cannot make its folder "
                                f"{folder} ({err.strerror})") from None
        self.client = MlflowClient(tracking_uri=cfg.mlflow_uri)
        experiment = self.client.get_experiment_by_name(cfg.experiment)
        experiment_id = experiment.experiment_id if experiment else self._create(cfg)
        tags = {"peftsum.run": run_label, **{k: str(v) for k, v in tags.items()}}
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items() if "'" not in v)
        for earlier in self.client.search_runs([experiment_id], query):
            self.client.delete_run(earlier.info.run_id)
        self.run_id = self.client.create_run(experiment_id, run_name=run_label,
                                             tags=tags).info.run_id

    def _create(self, cfg: TrackingConfig) -> str:
        artifacts = None
        if cfg.mlflow_uri.startswith("sqlite:///"):  # artifacts beside the database file
            database = Path(cfg.mlflow_uri.removeprefix("sqlite:///")).resolve()
            artifacts = (database.parent / "mlflow-artifacts").as_uri()
        return self.client.create_experiment(cfg.experiment, artifact_location=artifacts)

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in metrics.items()])

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self) -> dict:
        self.client.set_terminated(self.run_id)
        return {"mlflow_run_id": self.run_id}


# ---------------------------------------------------------------- from the result files


def export(cfg: TrackingConfig, run_dirs: list[Path], eval_dirs: list[Path],
           artifacts: list[Path], tensorboard_dir: Path, record: Path) -> dict:
    """Send every training run (run.json, steps.jsonl) with its test metrics (the evaluation of
    the same name and seed) and the report files to the trackers; write `record` (where each
    run went) and return it."""
    tests = {}
    for folder in map(Path, eval_dirs):
        metrics = records.read_metrics(paths.metrics_json(folder), needs=("name",))
        tests[(metrics.name, metrics.seed)] = metrics
    Path(tensorboard_dir).mkdir(parents=True, exist_ok=True)
    written = {}
    for folder in map(Path, run_dirs):
        run = records.read_run(paths.run_json(folder), needs=("name", "seed"))
        label = f"{run.name}/seed{run.seed}"
        tags = {"peftsum.config_hash": (run.provenance or {}).get("config_hash", "")}
        one = tracker(cfg, label, tags, tensorboard_dir)
        written[label] = send_run(one, run, read_jsonl(paths.steps(folder)),
                                  tests.get((run.name, run.seed)), artifacts)
        log.info("tracked %s: %s", label, written[label])
    write_json(record, written)
    return written


def send_run(one: Tracker, run: RunRecord, steps: list[dict], test: MetricsRecord | None,
             artifacts: list[Path]) -> dict:
    one.log_params(run_params(run))
    for row in steps:
        one.log_step(row)
    last_step = max((row["step"] for row in steps), default=0)
    one.log_final(final_metrics(run, test), last_step)
    for path in artifacts:
        one.log_artifact(path)
    return one.close()


def run_params(run: RunRecord) -> dict:
    """The run's hyperparameters, flattened: method settings, training settings, seed."""
    params = {"name": run.name, "kind": run.kind, "seed": run.seed}
    params |= flatten(run.hparams or {})
    params |= flatten(run.params or {}, "params.")
    return {k: v for k, v in params.items() if v is not None}


def final_metrics(run: RunRecord, test: MetricsRecord | None) -> dict:
    """Numeric test metrics as test/<key>, numeric training costs as cost/<key>."""
    tested = records.to_json(test) if test is not None else {}
    metrics = {f"test/{k}": float(v) for k, v in tested.items() if is_number(v)}
    metrics |= {f"cost/{k}": float(v) for k, v in (run.resources or {}).items() if is_number(v)}
    return metrics


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flatten(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out
