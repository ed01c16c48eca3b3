"""The functions the workflow's scripts call: one per rule, from its params and paths.

Each takes what its rule declares (paths, and the rule's params as config dataclasses), never
the whole config: a reader sees from the rule what a job uses.

`guarded` gives every stage the same start and end: logging to the rule's log file, the thread
count, and a one-line error (not a traceback) for problems a user can fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from peftsum import paths, records
from peftsum.config import EvalConfig, TemplateConfig, TrainingConfig, config_hash
from peftsum.errors import UserError
from peftsum.files import write_json
from peftsum.runtime import gpu

if TYPE_CHECKING:
    from peftsum.methods import Method
    from peftsum.records import RunRecord

log = logging.getLogger("peftsum")


def setup_logging(log_file: str | Path | None) -> None:
    """Log to standard error, or, for a workflow job (log_file), to its log file with only
    our warnings and errors on the console that its parallel jobs share: a library's Python
    warnings (deprecations inside transformers and peft) go to the log file alone. Such a job
    shows no progress bars either (two jobs' bars interleave on one console line; its log
    file has the loop's rows)."""
    console = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [console]
    if log_file:
        console.setLevel(logging.WARNING)
        logging.captureWarnings(True)
        console.addFilter(lambda record: record.name != "py.warnings")
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
        # tqdm reads its TQDM_* settings when imported, which the stages do after this.
        os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def guarded(log_file: str | Path | None, threads: int | None = None, gpus: int | None = None):
    """Run a stage: log to log_file, end with Snakemake (lifeline), lease `gpus` GPUs (before
    CUDA starts), set the CPU threads; exit 1 with one line on UserError, with a logged
    traceback on anything else."""
    from peftsum.runtime import lifeline

    setup_logging(log_file)
    lifeline.follow_snakemake()
    try:
        leased = gpu.lease(gpus) if gpus is not None else None
        if threads:
            import torch

            torch.set_num_threads(threads)
        yield leased
    except UserError as err:
        log.error("%s", err)
        sys.exit(1)
    except Exception:
        log.exception("unexpected error")
        sys.exit(1)


def download_model(model: dict, out_dir: Path) -> dict:
    """Materialise the model that `model` (its identity, config.model_identity) names."""
    from peftsum.data import models

    return models.materialise(model, Path(out_dir))


def download_data(data: dict, out_dir: Path) -> dict:
    """Materialise the source splits that `data` (config.data_identity) names."""
    from peftsum.data import sources

    return sources.materialise(data, Path(out_dir))


def split(source_dir: Path, out_dir: Path, sizes: dict, seed: int) -> dict:
    from peftsum.data import split as split_module

    return split_module.run(Path(source_dir), Path(out_dir), sizes, seed)


def train_subset(tokenized_dir: Path, out_dir: Path, size: int, seed: int) -> dict:
    """A learning curve's tokenized data: the nested size-n subset of the training split."""
    from peftsum.data import subsets

    return subsets.write_train_subset(Path(tokenized_dir), Path(out_dir), size, seed)


def validation_articles(tokenized: Path, split_file: Path, n: int, out_tokenized: Path,
                        out_split: Path) -> int:
    """The first n validation articles, for choosing a sweep point by ROUGE-L."""
    from peftsum.data import subsets

    return subsets.write_first_articles(Path(tokenized), Path(split_file), n, Path(out_tokenized),
                                        Path(out_split))


def _encoding(model_dir: Path) -> tuple:
    """What every tokenization reads from the model: its tokenizer and context length."""
    from peftsum.data import models

    return models.load_tokenizer(model_dir), models.model_info(model_dir)["context_length"]


def tokenize(model_dir: Path, split_dir: Path, out_dir: Path, template: TemplateConfig,
             reserved: int) -> dict:
    """`reserved`: positions every example leaves free for the longest soft prompt."""
    from peftsum.data import tokenize as tokenize_module

    tokenizer, context = _encoding(model_dir)
    return tokenize_module.run(tokenizer, context, Path(split_dir), Path(out_dir), template,
                               reserved)


def tokenize_chat(model_dir: Path, split_test: Path, out_file: Path, template: TemplateConfig,
                  reserved: int, instruction: str) -> dict:
    from peftsum.data import tokenize as tokenize_module

    tokenizer, context = _encoding(model_dir)
    return tokenize_module.run_chat(tokenizer, context, Path(split_test), Path(out_file),
                                    template, reserved, instruction)


def train(method: Method, training: TrainingConfig, seed: int, model_dir: Path, data_dir: Path,
          out_dir: Path, checkpoint_dir: Path | None = None, processes: int = 1
          ) -> RunRecord | None:
    """Train in this process, or data-parallel over `processes` ranks through torchrun."""
    for folder in filter(None, (out_dir, checkpoint_dir)):
        require_writable(Path(folder))
    if processes > 1:
        return _torchrun(method, training, seed, model_dir, data_dir, out_dir, checkpoint_dir,
                         processes)
    from peftsum.data import models
    from peftsum.runtime import provenance
    from peftsum.training import loop as train_module

    stats = json.loads((Path(data_dir) / "stats.json").read_text())
    # Stored with the weights, so that the run can be restored on its own (python -m peftsum
    # summarize) and refuses a base model other than the one it was trained on.
    record = {
        "base_model": {**models.model_info(model_dir), "dir": str(model_dir)},
        "template": stats["template"],
        "reserved_positions": stats["reserved_positions"],
        "provenance": provenance.record(config_hash(run_settings(method, training, seed)),
                                        training.cpu_bf16),
    }
    return train_module.run(Path(model_dir), Path(data_dir), method, training, seed,
                            Path(out_dir), Path(checkpoint_dir) if checkpoint_dir else None, record)


def require_writable(folder: Path) -> None:
    """Make folder and write a file in it: a folder that refuses fails now, not after the
    hours of training whose results it was to hold."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f"{folder} is not writable ({err.strerror}): nothing was trained") from None


def run_settings(method: Method, training: TrainingConfig, seed: int) -> dict:
    """Everything a run's weights depend on besides its data and base model."""
    return {"method": method.hparams(), "training": dataclasses.asdict(training), "seed": seed}


def _torchrun(method: Method, training: TrainingConfig, seed: int, model_dir, data_dir, out_dir,
              checkpoint_dir, processes) -> None:
    import subprocess

    # The ranks read the method and training settings from a file beside the checkpoint (not
    # an output of the rule).
    settings_file = Path(checkpoint_dir or out_dir) / "settings.json"
    write_json(settings_file, {**run_settings(method, training, seed), "name": method.name})
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", "peftsum", "train",
               "--settings", str(settings_file), "--model", str(model_dir), "--data",
               str(data_dir), "--out", str(out_dir)]
    if checkpoint_dir:
        command += ["--checkpoint-dir", str(checkpoint_dir)]
    log.info("data-parallel over %d processes: %s", processes, " ".join(command))
    # Every rank's output (rank 0's log, the others' warnings, any traceback) into this job's
    # log file: the same open file, so the lines follow this process's own.
    log_file = next((h.stream for h in logging.getLogger().handlers
                     if isinstance(h, logging.FileHandler)), None)
    if subprocess.run(command, check=False, stdout=log_file, stderr=log_file).returncode:
        raise UserError(f"torchrun training of {method.name} failed (see the log above)")


def evaluate(model_dir: Path, tokenized_test: Path, split_test: Path, out_dir: Path,
             decoding: EvalConfig, run_dir: Path | None = None,
             baseline: str = "zero_shot") -> dict:
    """The trained run in run_dir (its run.json names the method), else the untrained model
    as `baseline`."""
    from peftsum import methods
    from peftsum.evaluation import generate as evaluate_module

    method, weights, seed = None, None, None
    if run_dir is not None:
        run = records.read_run(paths.run_json(Path(run_dir)), needs=("name", "method", "seed"))
        method = methods.from_config(run.name, run.method)
        weights, seed = paths.weights(Path(run_dir)), run.seed
    return evaluate_module.run_model(Path(model_dir), Path(tokenized_test), Path(split_test),
                                     decoding, Path(out_dir), method, weights, seed, baseline)


def lead3(split_test: Path, out_dir: Path) -> dict:
    from peftsum.evaluation import generate as evaluate_module

    return evaluate_module.run_lead3(Path(split_test), Path(out_dir))


def aggregate(metrics: list[Path], predictions: list[Path], runs: list[Path],
              outputs: dict[str, Path]) -> list:
    """outputs: the paths of the rule's tsv, json, by_method(_json), significance(_json)."""
    from peftsum.analysis import aggregate as aggregate_module

    return aggregate_module.run([Path(p) for p in metrics], [Path(p) for p in runs],
                                {k: Path(v) for k, v in outputs.items()},
                                predictions=[Path(p) for p in predictions])


def aggregate_curve(metrics: list[Path], runs: list[Path], out_json: Path, out_tsv: Path
                    ) -> dict:
    """The learning curves' table and crossovers from their evaluations and runs."""
    from peftsum.analysis import curve

    return curve.run([Path(p) for p in metrics], [Path(p) for p in runs], Path(out_json),
                     Path(out_tsv))


def report(metrics_json: Path, significance: Path, by_method: Path, runs: list[Path],
           predictions: list[Path], model_dir: Path, split_stats: Path, tokenize_stats: Path,
           articles: Path, templates_dir: Path, data: dict, out_md: Path, out_html: Path,
           out_explorer: Path | None = None, selections: list[Path] = (),
           curve: Path | None = None) -> None:
    """Render the report (and the explorer of every summary) from result files only: no model
    is loaded here.

    runs: the trained runs' run.json files (their steps.jsonl lie beside them; hyperparameters,
    hardware and versions come from them); predictions: every evaluation's predictions.jsonl
    (its metrics.json beside it); data: the data source's identity and sampling, as configured;
    selections: the sweeps' select files; curve: the learning curves' curve.json.
    """
    from peftsum.report import explorer
    from peftsum.report import render as report_module

    evaluations = [records.read_metrics(paths.metrics_json(Path(p).parent), needs=("name",))
                   for p in predictions]
    tokenized = json.loads(Path(tokenize_stats).read_text())
    setup = {
        "model": json.loads((Path(model_dir) / "model_info.json").read_text()),
        "data": {**data, **json.loads(Path(split_stats).read_text())},
        "tokenize": {k: v for k, v in tokenized.items() if k != "template"},
        "template": tokenized.get("template"),
        "decoding": next((e.decoding for e in evaluations if e.decoding is not None), None),
    }
    first_seed = {}
    for path, evaluation in zip(predictions, evaluations):
        first_seed.setdefault(evaluation.name, Path(path))
    report_module.render(Path(metrics_json),
                         {paths.run_label(p): paths.steps(Path(p).parent) for p in runs},
                         first_seed,
                         Path(articles), setup, Path(out_md), Path(out_html),
                         significance=Path(significance), by_method=Path(by_method),
                         templates_dir=Path(templates_dir),
                         runs={paths.run_label(p): Path(p) for p in runs},
                         explorer=out_explorer is not None,
                         selections=[Path(p) for p in selections],
                         curve=Path(curve) if curve else None)
    if out_explorer is not None:
        explorer.build([Path(p).parent for p in predictions], Path(articles), Path(out_explorer))


def track(tracking: dict, run_dirs: list[Path], eval_dirs: list[Path], artifacts: list[Path],
          tensorboard_dir: Path, record: Path) -> dict:
    """Send the finished runs to TensorBoard and MLflow (the `tracking:` config) from their files."""
    from peftsum.report import tracking as tracking_module

    return tracking_module.export(tracking_module.TrackingConfig.from_dict(tracking),
                                  [Path(d) for d in run_dirs], [Path(d) for d in eval_dirs],
                                  [Path(p) for p in artifacts], Path(tensorboard_dir),
                                  Path(record))
