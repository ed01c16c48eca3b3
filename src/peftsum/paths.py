"""Where every result lies: the layout of results/, logs/, benchmarks/ and resources/, declared
once. The workflow's rules take their patterns from here (Snakemake wildcards in braces), and
the package derives one path from another with the functions below, never by position.

Every output of a config lies under results/<experiment>/ (logs/ and benchmarks/ alike). A
folder function takes a pattern (str, for a rule) or a path (Path) and returns the same kind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

Folder = TypeVar("Folder", str, Path)

# Downloads, shared by every experiment.
MODEL = "resources/models/{model}"
SOURCE_SPLIT = "resources/data/{dataset}/{split}.jsonl"

RESULTS = "results/{experiment}"
SPLIT = RESULTS + "/data/split"
TOKENIZED = RESULTS + "/data/tokenized"
TOKENIZED_CHAT_TEST = RESULTS + "/data/tokenized_chat/test.jsonl"
# A learning curve's nested subset of the training split.
SUBSET = RESULTS + "/data/subsets/n{size}"
# The validation articles each grid point summarises when selection is by ROUGE-L.
SELECT_TOKENIZED = RESULTS + "/data/select/validation_tokenized.jsonl"
SELECT_SPLIT = RESULTS + "/data/select/validation.jsonl"

# A training run and its evaluation, inside the experiment's folder or a learning curve's point.
_TRAINED = "train/{method}/seed{seed}"
_EVALUATED = "eval/{method}/seed{seed}"
TRAIN_RUN = f"{RESULTS}/{_TRAINED}"
EVALUATION = f"{RESULTS}/{_EVALUATED}"
BASELINE = RESULTS + "/eval/{baseline}"
CURVE = RESULTS + "/curve/n{size}"
CURVE_RUN = f"{CURVE}/{_TRAINED}"
CURVE_EVALUATION = f"{CURVE}/{_EVALUATED}"
# A grid point of a swept method, trained with the selection seed; its summaries of validation
# articles lie inside it.
SWEEP_RUN = RESULTS + "/sweep/{method}/{point}/seed{seed}"
SWEEP_VALIDATION = SWEEP_RUN + "/validation"
SELECT_GRID = RESULTS + "/select/{method}.json"
SELECT_CHOSEN = RESULTS + "/select/{method}.chosen.json"
# Resume state of a training job: not an output (Snakemake deletes a failed job's outputs).
CHECKPOINT = RESULTS + "/checkpoints/{method}/seed{seed}"
SWEEP_CHECKPOINT = RESULTS + "/checkpoints/sweep/{method}/{point}/seed{seed}"
CURVE_CHECKPOINT = RESULTS + "/checkpoints/curve/n{size}/{method}/seed{seed}"

# Tables and the report.
TABLE_TSV = RESULTS + "/metrics.tsv"
TABLE_JSON = RESULTS + "/metrics.json"
SIGNIFICANCE_TSV = RESULTS + "/significance.tsv"
SIGNIFICANCE_JSON = RESULTS + "/significance.json"
BY_METHOD_TSV = RESULTS + "/metrics_by_method.tsv"
BY_METHOD_JSON = RESULTS + "/metrics_by_method.json"
CURVE_JSON = RESULTS + "/curve.json"
CURVE_TSV = RESULTS + "/curve.tsv"
REPORT = RESULTS + "/report"
REPORT_MD = REPORT + "/report.md"
REPORT_HTML = REPORT + "/report.html"
EXPLORER_HTML = REPORT + "/explorer.html"
FIGURES = REPORT + "/figures"
TRACKED = RESULTS + "/tracking/tracked.json"
TENSORBOARD = RESULTS + "/tracking/tensorboard"


def log(stage: str, job: str) -> str:
    """A job's log: logs/<experiment>/<stage>/<job>.log."""
    return f"logs/{{experiment}}/{stage}/{job}.log"


def benchmark(stage: str, job: str) -> str:
    """A job's benchmark TSV: benchmarks/<experiment>/<stage>/<job>.tsv."""
    return f"benchmarks/{{experiment}}/{stage}/{job}.tsv"


def download_log(stage: str, job: str) -> str:
    """A download's log, shared by every experiment: logs/<stage>/<job>.log."""
    return f"logs/{stage}/{job}.log"


def download_benchmark(stage: str, job: str) -> str:
    return f"benchmarks/{stage}/{job}.tsv"


# ------------------------------------------------------------------ files inside a folder


def _inside(folder: Folder, name: str) -> Folder:
    return folder / name if isinstance(folder, Path) else f"{folder}/{name}"


def split_file(folder: Folder, split: str = "{split}") -> Folder:
    """One split's JSON lines in a data folder (SPLIT, TOKENIZED, SUBSET)."""
    return _inside(folder, f"{split}.jsonl")


def stats(folder: Folder) -> Folder:
    """A data folder's stats.json."""
    return _inside(folder, "stats.json")


def run_json(run: Folder) -> Folder:
    """A training run's record (records.RunRecord); written last, it means the run is complete."""
    return _inside(run, "run.json")


def weights(run: Folder) -> Folder:
    return _inside(run, "trainable.safetensors")


def steps(run: Folder) -> Folder:
    return _inside(run, "steps.jsonl")


def metrics_json(evaluation: Folder) -> Folder:
    """An evaluation's record (records.MetricsRecord)."""
    return _inside(evaluation, "metrics.json")


def predictions(evaluation: Folder) -> Folder:
    """An evaluation's summaries and per-article scores."""
    return _inside(evaluation, "predictions.jsonl")


# ------------------------------------------------------------------ one path from another


def _tail(pattern: str) -> re.Pattern:
    """pattern's wildcards as named groups, matched at the end of a path."""
    parts = re.split(r"\{(\w+)\}", pattern)
    body = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)"
                   for i, p in enumerate(parts))
    return re.compile(f"(?:^|(?P<root>.*)/){body}$")


def _trained(run: Path) -> re.Match | None:
    return _tail(_TRAINED).match(Path(run).as_posix())


def evaluation_dir(run: Path) -> Path | None:
    """Where the workflow evaluates the training run in folder `run` (train/M/seedS ->
    eval/M/seedS beside it, in the experiment's folder or a curve's point); None for a run
    folder outside that layout (copied elsewhere)."""
    found = _trained(Path(run).resolve())
    if found is None:
        return None
    return Path("/", found["root"]) / _EVALUATED.format(**found.groupdict())


def run_label(run_file: Path) -> str:
    """A training run's label in the report, from its run.json's path: lora/seed0 (its method
    names its colour in every figure), wherever its experiment's folder lies."""
    found = _trained(Path(run_file).parent)
    if found is None:
        raise ValueError(f"{run_file} is not a run.json in a {_TRAINED} folder")
    return f"{found['method']}/seed{found['seed']}"
