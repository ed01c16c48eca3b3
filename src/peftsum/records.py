"""The results contract: what a training run records (run.json) and what an evaluation records
(metrics.json), written and read only here.

Each file is a frozen dataclass whose fields are its keys, in the order they are written: the
JSON on disk keeps its keys, values and order, so results written before this module still
read. Every field has a default, so that partial files (an older version's, one written by
hand) read too; each reader names the fields it needs, and a needed key the file lacks is a
one-line UserError naming the file. Keys this version does not know are skipped. No torch: the
analysis and the report read these files on any machine.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from peftsum.errors import UserError
from peftsum.files import write_json

# Written only when set: the key is absent from files that have no value for it (a run trained
# outside the workflow has no base_model; lead3's evaluation decodes nothing).
WHEN_SET = {"when_set": True}


@dataclass(frozen=True)
class RunRecord:
    """One training run, written last by the training loop: its presence means the run is
    complete."""

    WHAT = "a trained run"

    name: str | None = None  # the method's name in the config
    kind: str | None = None  # the method's kind (lora, prompt_tuning, ...)
    seed: int | None = None
    trains: str | None = None  # what trains, in words
    method: dict | None = None  # the method's resolved hyperparameters (methods.from_config)
    params: dict | None = None  # parameter counts: trainable, added, total, base_total, formula
    train_examples: int | None = None
    resources: dict | None = None  # time, throughput, memory, device, precision, FLOPs
    best: dict | None = None  # step and validation loss of the weights saved
    stopped_early: bool | None = None
    hparams: dict | None = None  # method and training settings, seed, world size
    # From the workflow's train stage, for restoring the run on its own (evaluation.restore):
    # the base model's model_info.json and folder, the template, the soft prompt's room.
    base_model: dict | None = field(default=None, metadata=WHEN_SET)
    template: dict | None = field(default=None, metadata=WHEN_SET)
    reserved_positions: int | None = field(default=None, metadata=WHEN_SET)
    # Hardware, versions and commit (runtime.provenance).
    provenance: dict | None = field(default=None, metadata=WHEN_SET)


@dataclass(frozen=True)
class MetricsRecord:
    """One evaluation on the test split (or a grid point's on validation articles): the means
    of the per-article scores in predictions.jsonl beside it."""

    WHAT = "an evaluation"

    name: str | None = None  # the method's name, or the baseline's
    kind: str | None = None  # the method's kind, or "baseline"
    seed: int | None = None  # the training run's; None for a baseline
    test_loss: float | None = None
    perplexity: float | None = None
    gen_wall_s: float | None = None
    gen_tokens_per_s: float | None = field(default=None, metadata=WHEN_SET)
    hit_max_new_tokens: float | None = None  # share of summaries cut at max_new_tokens
    decoding: dict | None = field(default=None, metadata=WHEN_SET)  # a model's EvalConfig
    # ROUGE F1 x 100 (metrics.ROUGE)
    rouge1: float | None = None
    rouge2: float | None = None
    rougeL: float | None = None
    rougeLsum: float | None = None
    n_test: int | None = None
    mean_pred_words: float | None = None
    mean_ref_words: float | None = None


Record = TypeVar("Record", RunRecord, MetricsRecord)


def to_json(record: RunRecord | MetricsRecord) -> dict:
    """The record as its file holds it: every field in order, those written only when set
    left out when unset."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)
            if getattr(record, f.name) is not None or not f.metadata.get("when_set")}


def from_json(cls: type[Record], data: dict) -> Record:
    """A record of the keys of `data` that cls knows; the others are skipped."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def read_run(path: str | Path, needs: Iterable[str] = ()) -> RunRecord:
    """The run.json at path; `needs`: the fields the caller reads that have no use as None."""
    return _read(RunRecord, Path(path), needs)


def read_metrics(path: str | Path, needs: Iterable[str] = ()) -> MetricsRecord:
    """The metrics.json at path; `needs`: the fields the caller reads that have no use as
    None."""
    return _read(MetricsRecord, Path(path), needs)


def write_run(path: str | Path, record: RunRecord) -> None:
    write_json(path, to_json(record))


def write_metrics(path: str | Path, record: MetricsRecord) -> None:
    write_json(path, to_json(record))


def _read(cls: type[Record], path: Path, needs: Iterable[str]) -> Record:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: {path.parent} is not {cls.WHAT}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}): it is corrupt or cut short; rerun "
                        "the job that writes it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds no JSON object: it is not {cls.WHAT}'s record")
    fields = dataclasses.fields(cls)
    unknown = set(needs) - {f.name for f in fields}
    if unknown:  # a caller's typo, not the file's fault
        raise ValueError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    missing = [k for k in needs if k not in data]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it is not {cls.WHAT}'s record as "
                        "peftsum writes it")
    return from_json(cls, data)
