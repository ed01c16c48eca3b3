"""Nested training subsets for learning curves, and the validation articles of a selection by
ROUGE-L.

A subset of size n is the first n examples of one seeded permutation of the tokenized training
split, so every smaller subset lies inside every larger one, whatever sizes are asked for and in
whatever order. The examples keep the split's file order.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from peftsum.errors import UserError
from peftsum.files import read_json, read_jsonl, write_json, write_jsonl


def nested_indices(n_rows: int, size: int, seed: int) -> list[int]:
    """Indices of the size-n subset, in file order: a prefix of the seeded permutation."""
    if not 1 <= size <= n_rows:
        raise UserError(f"data.train_sizes: {size} is not between 1 and the {n_rows} examples "
                        f"of the training split")
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return sorted(order[:size])


def write_train_subset(tokenized_dir: Path, out_dir: Path, size: int, seed: int) -> dict:
    """out_dir: a tokenized-data folder (train.jsonl, validation.jsonl, stats.json) whose
    training split is the size-n subset; validation and the tokenizer stats are the full
    data's, so a training run reads it like the full folder."""
    tokenized_dir, out_dir = Path(tokenized_dir), Path(out_dir)
    rows = read_jsonl(tokenized_dir / "train.jsonl")
    indices = nested_indices(len(rows), size, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "train.jsonl", (rows[i] for i in indices))
    shutil.copy(tokenized_dir / "validation.jsonl", out_dir / "validation.jsonl")
    stats = {**read_json(tokenized_dir / "stats.json"),
             "train_subset": {"size": size, "of": len(rows), "seed": seed}}
    write_json(out_dir / "stats.json", stats)
    return stats["train_subset"]


def write_first_articles(tokenized: Path, split: Path, n: int, out_tokenized: Path,
                         out_split: Path) -> int:
    """The first n validation examples, tokenized and as text (matched by id), for choosing a
    sweep point by validation ROUGE-L; fewer when the split holds fewer. Returns the count."""
    rows = read_jsonl(split)[:n]
    wanted = {row["id"] for row in rows}
    encoded = [row for row in read_jsonl(tokenized) if row["id"] in wanted]
    if len(encoded) != len(rows):
        raise ValueError(f"{tokenized} and {split} hold different validation examples")
    write_jsonl(out_split, rows)
    write_jsonl(out_tokenized, encoded)
    return len(rows)
