"""The functions the workflow's scripts call: one per rule, from the validated config and paths.

`guarded` gives every stage the same start and end: logging to the rule's log file, the thread
count, and a one-line error (not a traceback) for problems a user can fix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

from peftsum import gpu
from peftsum.config import EvalConfig, TemplateConfig, TrainingConfig
from peftsum.errors import UserError
from peftsum.io import write_json

log = logging.getLogger("peftsum")


def setup_logging(log_file: str | Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def guarded(log_file: str | Path | None, threads: int | None = None, gpus: int | None = None):
    """Run a stage: log to log_file, lease `gpus` GPUs (before CUDA starts), set the CPU threads;
    exit 1 with one line on UserError, with a logged traceback on anything else."""
    setup_logging(log_file)
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


def download_model(config: dict, out_dir: Path) -> dict:
    from peftsum import models

    return models.materialise(config["model"], Path(out_dir))


def download_data(config: dict, out_dir: Path) -> dict:
    from peftsum.data import sources

    return sources.materialise(config["data"], Path(out_dir))


def split(config: dict, source_dir: Path, out_dir: Path) -> dict:
    from peftsum.data import split as split_module

    data = config["data"]
    return split_module.run(Path(source_dir), Path(out_dir), data["sizes"], data["seed"])


def _encoding(config: dict, model_dir: Path) -> tuple:
    """What every tokenization needs: tokenizer, context length, template, soft-prompt room."""
    from peftsum import methods, models

    reserved = methods.reserved_positions(methods.all_from_config(config))
    return (models.load_tokenizer(model_dir), models.model_info(model_dir)["context_length"],
            TemplateConfig.from_dict(config["template"]), reserved)


def tokenize(config: dict, model_dir: Path, split_dir: Path, out_dir: Path) -> dict:
    from peftsum.data import tokenize as tokenize_module

    tokenizer, context, template, reserved = _encoding(config, model_dir)
    return tokenize_module.run(tokenizer, context, Path(split_dir), Path(out_dir), template,
                               reserved)


def tokenize_chat(config: dict, model_dir: Path, split_test: Path, out_file: Path) -> dict:
    from peftsum.data import tokenize as tokenize_module

    tokenizer, context, template, reserved = _encoding(config, model_dir)
    return tokenize_module.run_chat(tokenizer, context, Path(split_test), Path(out_file),
                                    template, reserved, config["evaluation"]["chat_instruction"])


def train(config: dict, method_name: str, seed: int, model_dir: Path, data_dir: Path,
          out_dir: Path, checkpoint_dir: Path | None = None, processes: int = 1) -> dict | None:
    """Train in this process, or data-parallel over `processes` ranks through torchrun."""
    if processes > 1:
        return _torchrun(config, method_name, seed, model_dir, data_dir, out_dir, checkpoint_dir,
                         processes)
    from peftsum import methods, models
    from peftsum import train as train_module

    method = methods.from_config(method_name, config["methods"][method_name])
    # Stored with the weights, so that the run can be restored on its own (python -m peftsum
    # summarize) and refuses a base model other than the one it was trained on.
    provenance = {
        "base_model": {**models.model_info(model_dir), "dir": str(model_dir)},
        "template": config["template"],
        "reserved_positions": json.loads((Path(data_dir) / "stats.json").read_text())[
            "reserved_positions"],
        "decoding": config["evaluation"],
    }
    summary = train_module.run(Path(model_dir), Path(data_dir), method,
                               TrainingConfig.from_dict(config["training"]), seed, Path(out_dir),
                               Path(checkpoint_dir) if checkpoint_dir else None, provenance)
    if summary:  # rank 0
        write_json(Path(out_dir) / "run_info.json", run_info(config, seed))
    return summary


def run_info(config: dict, seed: int) -> dict:
    """Versions, commit, config hash, hardware and seed: what a reader needs to reproduce a run."""
    import platform
    import subprocess

    import torch

    from peftsum.config import config_hash

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False, cwd=Path(__file__).parent)
    return {
        "versions": _versions(), "python": platform.python_version(),
        "git_commit": commit.stdout.strip() or None, "config_hash": config_hash(config),
        "hardware": {"machine": _hardware(), "gpus": [torch.cuda.get_device_name(i) for i in
                                                       range(torch.cuda.device_count())]},
        "seed": seed,
    }


def _torchrun(config, method_name, seed, model_dir, data_dir, out_dir, checkpoint_dir,
              processes) -> None:
    import subprocess

    # The ranks read the resolved config from a file beside the checkpoint (not an output).
    config_file = Path(checkpoint_dir or out_dir) / "config.json"
    write_json(config_file, config)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", "peftsum", "train",
               "--config", str(config_file), "--method", method_name, "--seed", str(seed),
               "--model", str(model_dir), "--data", str(data_dir), "--out", str(out_dir)]
    if checkpoint_dir:
        command += ["--checkpoint-dir", str(checkpoint_dir)]
    log.info("data-parallel over %d processes: %s", processes, " ".join(command))
    # Every rank's output (rank 0's log, the others' warnings, any traceback) into this job's
    # log file: the same open file, so the lines follow this process's own.
    log_file = next((h.stream for h in logging.getLogger().handlers
                     if isinstance(h, logging.FileHandler)), None)
    if subprocess.run(command, check=False, stdout=log_file, stderr=log_file).returncode:
        raise UserError(f"torchrun training of {method_name} failed (see the log above)")


def evaluate(config: dict, model_dir: Path, tokenized_test: Path, split_test: Path, out_dir: Path,
             method_name: str | None = None, weights: Path | None = None,
             seed: int | None = None, baseline: str = "zero_shot") -> dict:
    """A trained method when method_name is given, else the untrained model as `baseline`."""
    from peftsum import evaluate as evaluate_module
    from peftsum import methods

    method = methods.from_config(method_name, config["methods"][method_name]) if method_name else None
    return evaluate_module.run_model(Path(model_dir), Path(tokenized_test), Path(split_test),
                                     EvalConfig.from_dict(config["evaluation"]), Path(out_dir),
                                     method, weights, seed, baseline)


def lead3(split_test: Path, out_dir: Path) -> dict:
    from peftsum import evaluate as evaluate_module

    return evaluate_module.run_lead3(Path(split_test), Path(out_dir))


def aggregate(eval_dirs: list[Path], run_dirs: list[Path], out_tsv: Path, out_json: Path) -> list:
    from peftsum import aggregate as aggregate_module

    return aggregate_module.run([Path(d) / "metrics.json" for d in eval_dirs],
                                [Path(d) / "run.json" for d in run_dirs], Path(out_tsv),
                                Path(out_json),
                                predictions=[Path(d) / "predictions.jsonl" for d in eval_dirs])


def _versions() -> dict:
    from importlib.metadata import version

    names = ("peftsum", "torch", "transformers", "peft", "snakemake", "rouge-score")
    return {name: version(name) for name in names}


def _hardware() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPU cores ({platform.processor() or 'cpu'})"


# The data keys that matter for each source; the others hold unused defaults.
_SOURCE_KEYS = {"hf": ("id", "config_name", "columns"), "csv": ("path", "columns"),
                "jsonl": ("path", "columns"), "aclsum": ()}


def _source_settings(data: dict) -> dict:
    keep = ("name", "source", "seed", *_SOURCE_KEYS[data["source"]])
    return {k: v for k, v in data.items() if k in keep}


def report(config: dict, metrics_json: Path, run_dirs: list[Path], eval_dirs: list[Path],
           model_dir: Path, split_stats: Path, tokenize_stats: Path, articles: Path,
           out_md: Path, out_html: Path, significance: Path, by_method: Path) -> None:
    """Render the report from result files only: no model is loaded here."""
    from peftsum import report as report_module

    def label(path: Path) -> str:  # results/train/lora/seed0 -> lora/seed0
        return "/".join(Path(path).parts[2:])

    setup = {
        "model": json.loads((Path(model_dir) / "model_info.json").read_text()),
        "data": {**_source_settings(config["data"]), **json.loads(Path(split_stats).read_text())},
        "tokenize": json.loads(Path(tokenize_stats).read_text()),
        "template": config["template"], "decoding": config["evaluation"],
        "training": config["training"], "hardware": _hardware(), "versions": _versions(),
    }
    first_seed = {}
    for d in eval_dirs:
        name = json.loads((Path(d) / "metrics.json").read_text())["name"]
        first_seed.setdefault(name, Path(d) / "predictions.jsonl")
    report_module.render(Path(metrics_json), {label(d): Path(d) / "steps.jsonl" for d in run_dirs},
                         first_seed, Path(articles), setup, Path(out_md), Path(out_html),
                         significance=Path(significance), by_method=Path(by_method))
